"""Convert into a s3prefix, verify s3://, sync both ways, resume a killed upload: against a real
SeaweedFS server, the bucket compared byte for byte with a local conversion of the same input."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imagenet_pipe.cli import main as cli_main
from imagenet_pipe.conversion import convert
from imagenet_pipe.storage import IntegrityError, S3Client, S3Url, StorageError, sync

from .conftest import quiet
from .test_resume_verify import _kill_when


def objects(url: str) -> dict[str, bytes]:
    client, base = S3Client(), S3Url.parse(url)
    return {base.relative(o.url.key): client.get(o.url) for o in client.list(base)}


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def convert_cli(raw: Path, out: str, staging: Path, shard_size: int = 8) -> list[str]:
    return ["convert", "imagenet1k", str(raw), "--out", out, "--staging", str(staging), "--shard-size",
            str(shard_size), "--workers", "2", "--quiet"]


def test_convert_into_a_bucket_then_verify_and_sync_both_ways(s3prefix, raw1k, shards1k, tmp_path, capsys):
    url, staging = f"{s3prefix}/imagenet1k", tmp_path / "staging"
    assert cli_main(convert_cli(raw1k("official"), url, staging)) == 0
    assert list(staging.iterdir()) == []  # its subfolder for this URL is gone
    reference = files(shards1k)  # the same conversion into a local folder
    assert objects(url) == reference
    assert cli_main(["verify", url, "--decode", "--workers", "2", "--quiet"]) == 0
    assert "verified 8 shards, 59 samples, 59 images decoded: OK" in capsys.readouterr().out

    assert cli_main(convert_cli(raw1k("official"), url, staging)) == 0
    assert "already holds this conversion" in capsys.readouterr().err

    local = tmp_path / "local"
    assert cli_main(["sync", url, str(local), "--quiet"]) == 0
    assert files(local) == reference
    again = sync(url, local, progress=False)
    assert again.copied == [] and sorted(again.skipped) == sorted(reference)

    (local / "imagenet1k-train-2.tar").unlink()  # a missing file is copied again, nothing else
    (local / "notes.txt").write_text("mine")  # and nothing at the destination is deleted
    assert sync(url, local, progress=False).copied == ["imagenet1k-train-2.tar"]
    assert files(local) == {**reference, "notes.txt": b"mine"}
    (local / "notes.txt").unlink()

    copy = f"{s3prefix}/copy"
    assert sorted(sync(local, copy, progress=False).copied) == sorted(reference)
    assert objects(copy) == reference
    assert sync(local, copy, progress=False).copied == []


def test_a_different_conversion_needs_overwrite_which_leaves_no_stale_shard(s3prefix, raw1k, shards1k, tmp_path,
                                                                          capsys):
    url, staging = f"{s3prefix}/imagenet1k", tmp_path / "staging"
    assert cli_main(convert_cli(raw1k("official"), url, staging, shard_size=5)) == 0  # 13 shards
    assert cli_main(convert_cli(raw1k("official"), url, staging, shard_size=8)) == 2
    assert f"{url} holds a different conversion" in capsys.readouterr().err
    assert cli_main([*convert_cli(raw1k("official"), url, staging, shard_size=8), "--overwrite"]) == 0
    assert objects(url) == files(shards1k)  # 8 shards; the other 5 and their .idx are gone


def test_verify_s3_reports_damage_and_sync_refuses_it(s3prefix, shards1k, tmp_path, capsys):
    url = f"{s3prefix}/damaged"
    sync(shards1k, url, progress=False)
    client, base = S3Client(), S3Url.parse(url)
    data = bytearray((shards1k / "imagenet1k-train-1.tar").read_bytes())
    data[2000] ^= 0xFF
    client.put(base / "imagenet1k-train-1.tar", bytes(data))  # uploaded as such: only the manifest disagrees
    client.delete(base / "imagenet1k-train-3.tar")
    assert cli_main(["verify", url, "--workers", "2", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "imagenet1k-train-1.tar: sha256" in err and "imagenet1k-train-3.tar: missing" in err

    with pytest.raises(StorageError, match=f"{url}: 1 shard.* missing, e.g. imagenet1k-train-3.tar; nothing copied"):
        sync(url, tmp_path / "local", progress=False)
    assert not (tmp_path / "local").exists()
    client.upload(shards1k / "imagenet1k-train-3.tar", base / "imagenet1k-train-3.tar")
    with pytest.raises(IntegrityError, match=f"{url}/imagenet1k-train-1.tar: .* sha256"):
        sync(url, tmp_path / "local", progress=False)
    assert not (tmp_path / "local" / "manifest.json").exists()  # an incomplete copy never has a manifest

    damaged = tmp_path / "damaged-local"
    damaged.mkdir()
    for name, blob in files(shards1k).items():
        (damaged / name).write_bytes(bytes(data) if name == "imagenet1k-train-1.tar" else blob)
    with pytest.raises(IntegrityError, match=f"{damaged / 'imagenet1k-train-1.tar'}: sha256 .* not uploaded"):
        sync(damaged, f"{s3prefix}/other", progress=False)
    (damaged / "imagenet1k-train-1.tar").unlink()
    with pytest.raises(StorageError, match=f"{damaged}: 1 shard.* missing, e.g. imagenet1k-train-1.tar"):
        sync(damaged, f"{s3prefix}/other", progress=False)


def test_errors_name_the_bucket(s3prefix, raw1k, tmp_path, capsys, monkeypatch):
    assert cli_main(["verify", "s3://no-such-bucket-x/imagenet1k", "--quiet"]) == 2
    assert "s3://no-such-bucket-x/imagenet1k/manifest.json: bucket 'no-such-bucket-x' does not exist" in \
        capsys.readouterr().err
    assert cli_main(convert_cli(raw1k("official"), "s3://no-such-bucket-x/p", tmp_path / "st")) == 2
    assert "bucket 'no-such-bucket-x' does not exist" in capsys.readouterr().err
    assert not (tmp_path / "st").exists()  # refused before any work
    assert cli_main([*convert_cli(raw1k("official"), str(tmp_path / "local"), tmp_path / "st")]) == 2
    assert "--staging applies to --out s3://... only" in capsys.readouterr().err
    assert cli_main(["sync", str(tmp_path), str(tmp_path / "x")]) == 2
    assert "one side must be a local folder and the other an s3:// URL" in capsys.readouterr().err
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    assert cli_main(["sync", s3prefix, str(tmp_path / "y"), "--quiet"]) == 2
    assert f"{s3prefix}: access denied (SignatureDoesNotMatch)" in capsys.readouterr().err


@pytest.mark.slow
def test_kill_9_mid_upload_and_resume(s3prefix, raw1k, tmp_path):
    src = raw1k("official")
    reference = tmp_path / "reference"
    convert("imagenet1k", src, reference, workers=2, shard_size=5, progress=False, log=quiet)
    url, staging = f"{s3prefix}/resume", tmp_path / "staging"
    client, base = S3Client(), S3Url.parse(url)

    def start(slow: float) -> subprocess.Popen:
        env = {**os.environ, "IMAGENET_PIPE_SLOW_READ_S": str(slow)}
        return subprocess.Popen([sys.executable, "-m", "imagenet_pipe", *convert_cli(src, url, staging, 5)], env=env,
                                start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def uploaded() -> list[str]:
        return [o.url.name for o in client.list(base) if o.url.name.endswith(".tar")]

    proc = start(slow=0.03)
    _kill_when(proc, lambda: len(uploaded()) >= 2)
    want = files(reference)
    got = objects(url)
    assert "manifest.json" not in got and 2 <= len(got) < len(want)
    for name, blob in got.items():  # whatever is visible is complete
        assert blob == want[name], f"{name} is visible but incomplete"

    proc = start(slow=0)
    assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()
    assert "resuming" in proc.stderr.read().decode()
    assert objects(url) == want
    assert list(staging.iterdir()) == []
    sha = {name: hashlib.sha256(blob).hexdigest() for name, blob in want.items()}
    assert all(client.head(base / name).sha256 == sha[name] for name in want)
