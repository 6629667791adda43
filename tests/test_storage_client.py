"""The S3 client against a real SeaweedFS server: every operation, multipart uploads, and errors
that name the URL (missing bucket or object, wrong credentials, damaged bytes)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys

import pytest

from imagenet_pipe.storage import (
    AccessError,
    BucketNotFoundError,
    IntegrityError,
    NotFoundError,
    S3Client,
    S3Url,
    StorageError,
    is_s3_url,
    parse_size,
)


def test_urls():
    url = S3Url.parse("s3://my-bucket/some/prefix/")
    assert (url.bucket, url.key) == ("my-bucket", "some/prefix")
    assert str(url / "a.tar") == "s3://my-bucket/some/prefix/a.tar"
    assert (url / "a.tar").name == "a.tar"
    assert url.relative("some/prefix/x/y.idx") == "x/y.idx"
    assert str(S3Url.parse("s3://bkt") / "x") == "s3://bkt/x"
    assert is_s3_url("s3://b/x") and not is_s3_url("shards/x")
    for bad in ("http://b/x", "s3://B/x", "s3://ab/x", "s3://bkt/a//b", "s3://bkt/a/../b"):
        with pytest.raises(StorageError, match=re.escape(bad)):
            S3Url.parse(bad)


def test_sizes():
    assert parse_size("50GB") == 50 * 10**9
    assert parse_size("1.5 GiB") == 3 * 2**29
    assert parse_size("200mb") == 200 * 10**6
    assert parse_size(1234) == 1234 and parse_size("1234") == 1234 and parse_size(None) is None
    with pytest.raises(StorageError, match="50 parsecs"):
        parse_size("50 parsecs")


def test_without_boto3_only_bucket_urls_fail_and_say_what_to_install():
    code = ("import sys; sys.modules['boto3'] = None  # as if not installed\n"
            "from imagenet_pipe.cli import main\n"
            "sys.exit(main(['verify', 's3://some-bucket/shards', '--quiet']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "s3:// URLs need boto3: pip install 'imagenet-pipe[s3]'" in out.stderr


def test_put_get_head_list_delete(s3prefix):
    client = S3Client()
    url = S3Url.parse(s3prefix) / "p"
    data = os.urandom(100_000)
    client.put(url / "a.bin", data)
    client.put(url / "sub/b.bin", b"b")
    info = client.head(url / "a.bin")
    assert info.size == len(data) and info.sha256 == hashlib.sha256(data).hexdigest()
    assert client.get(url / "a.bin") == data
    assert client.get(url / "a.bin", 1000, 1010) == data[1000:1010]
    assert client.get(url / "a.bin", 99_990) == data[99_990:]
    assert [(url.relative(o.url.key), o.size) for o in client.list(url)] == [("a.bin", len(data)), ("sub/b.bin", 1)]
    client.delete(url / "a.bin")
    assert client.head(url / "a.bin") is None
    assert [o.url.name for o in client.list(url)] == ["b.bin"]


def test_multipart_upload_and_verified_download(s3prefix, tmp_path):
    client = S3Client(multipart_threshold=5 << 20, multipart_chunksize=5 << 20)  # S3's smallest part
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(12 << 20))
    url = S3Url.parse(s3prefix) / "big.bin"
    info = client.upload(src, url)
    assert info.etag.strip('"').endswith("-3")  # three parts: the object appeared once, complete
    assert info.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    dest = tmp_path / "copy.bin"
    got = client.download(url, dest, size=src.stat().st_size)
    assert dest.read_bytes() == src.read_bytes() and got.sha256 == info.sha256


def test_errors_name_the_url(s3prefix, tmp_path, monkeypatch):
    client = S3Client()
    url = S3Url.parse(s3prefix)
    missing = "s3://no-such-bucket-here/x.tar: bucket 'no-such-bucket-here' does not exist"
    with pytest.raises(BucketNotFoundError, match=re.escape(missing)):
        client.head("s3://no-such-bucket-here/x.tar")
    with pytest.raises(BucketNotFoundError, match="does not exist"):
        client.get("s3://no-such-bucket-here/x.tar")
    with pytest.raises(NotFoundError, match=f"{url}/missing.tar: no such object"):
        client.download(url / "missing.tar", tmp_path / "missing.tar")
    assert not list(tmp_path.iterdir())  # no partial file left behind

    client.put(url / "x.bin", b"payload")
    with pytest.raises(IntegrityError, match=f"{url}/x.bin: 7 bytes with sha256"):
        client.download(url / "x.bin", tmp_path / "x.bin", sha256="0" * 64)
    with pytest.raises(IntegrityError, match="expected 8 bytes"):
        client.download(url / "x.bin", tmp_path / "x.bin", size=8)
    assert not list(tmp_path.iterdir())

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(AccessError, match=f"{url}/x.bin: access denied .*AWS_SECRET_ACCESS_KEY"):
        S3Client().get(url / "x.bin")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    with pytest.raises(AccessError, match="InvalidAccessKeyId"):
        list(S3Client().list(url))
