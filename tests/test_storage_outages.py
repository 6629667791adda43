"""The endpoint going away: a SeaweedFS server of the test's own, killed (kill -9) mid-download and
restarted (the download resumes and completes, verified), or killed for good (a named error once
the retry budget is spent: no hang, nothing partial left behind)."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time

import pytest

from imagenet_pipe.cli import main as cli_main
from imagenet_pipe.storage import S3Client, S3Url, ShardCache, TransferError, sync

from .s3server import point_aws_env_at, running_server


@pytest.fixture
def private_s3(tmp_path_factory, monkeypatch):
    """A server this test may stop; the AWS environment points at it."""
    with running_server(tmp_path_factory.mktemp("seaweedfs-private")) as server:
        point_aws_env_at(server, monkeypatch)
        yield server


def big_object(tmp_path, client: S3Client, bucket: str):
    client.make_bucket(bucket)
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(64 << 20))  # far more than the socket buffers hold when the server dies
    url = S3Url.parse(f"s3://{bucket}/big.bin")
    client.upload(src, url)
    return src, url


def test_server_killed_and_restarted_mid_download_the_download_resumes(private_s3, tmp_path, caplog):
    client = S3Client(retry_s=60, connect_timeout=1, read_timeout=10)
    src, url = big_object(tmp_path, client, "outage")
    restarter = threading.Thread(target=lambda: (time.sleep(1), private_s3.start()), daemon=True)

    def progress(_: int) -> None:
        if not restarter.is_alive() and private_s3.starts == 1:
            private_s3.stop()  # kill -9 after the first MiB arrived, back a second later
            restarter.start()

    with caplog.at_level(logging.WARNING, logger="imagenet_pipe.storage"):
        info = client.download(url, tmp_path / "copy.bin", progress=progress)
    restarter.join(timeout=120)
    assert private_s3.starts == 2 and private_s3.proc.poll() is None
    assert any("download failed" in r.getMessage() and "retrying" in r.getMessage() for r in caplog.records)
    assert info.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert (tmp_path / "copy.bin").read_bytes() == src.read_bytes()

    client = S3Client(retry_s=2, connect_timeout=1, read_timeout=2)  # now killed for good, mid-download
    with pytest.raises(TransferError, match=re.escape(f"{url}: download failed")):
        client.download(url, tmp_path / "again.bin", progress=lambda _: private_s3.stop())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.bin", "copy.bin"]  # no partial file


def test_server_gone_for_good_gives_a_named_error_within_the_retry_budget(private_s3, shards1k, tmp_path,
                                                                           monkeypatch, capsys):
    client = S3Client(retry_s=2, connect_timeout=1, read_timeout=2)
    client.make_bucket("gone")
    sync(shards1k, "s3://gone/ds", progress=False, client=client)
    cache = ShardCache("s3://gone/ds", tmp_path / "cache", client=client)
    private_s3.stop()
    with pytest.raises(TransferError, match=r"s3://gone/ds/imagenet1k-train-0\.tar: download failed \d+ time\(s\) "
                                            r"within 2 s, last: .*Error"):
        cache.path("imagenet1k-train-0.tar")
    assert cache.cached() == [] and not list(cache.dir.glob("*.partial*"))
    cache.close()

    monkeypatch.setenv("IMAGENET_PIPE_S3_RETRY_S", "1")
    assert cli_main(["verify", "s3://gone/ds", "--quiet"]) == 2
    assert "s3://gone/ds/manifest.json: download failed" in capsys.readouterr().err
