"""Interrupted conversions resume to identical bytes; verify catches every kind of damage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imagenet_pipe.cli import main as cli_main
from imagenet_pipe.conversion import convert
from imagenet_pipe.format import WORK_DIR
from imagenet_pipe.verification import verify

from .conftest import quiet


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def _start(src: Path, out: Path, slow: float, extra: tuple[str, ...] | list[str] = ()) -> subprocess.Popen:
    env = {**os.environ, "IMAGENET_PIPE_SLOW_READ_S": str(slow)}
    cmd = [sys.executable, "-m", "imagenet_pipe", "convert", "imagenet1k", str(src), "--out", str(out),
           "--shard-size", "5", "--workers", "2", "--quiet", *extra]
    return subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"conversion ended before it could be killed: {proc.stderr.read().decode()}"
        assert time.monotonic() < deadline, "conversion did not reach the kill point"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_kill_9_and_resume_gives_identical_bytes(tmp_path, raw1k):
    src = raw1k("official")
    ref = tmp_path / "ref"
    convert("imagenet1k", src, ref, workers=2, shard_size=5, progress=False, log=quiet)

    out = tmp_path / "out"
    # 1st run killed while inspecting (some chunks persisted, none written)
    proc = _start(src, out, slow=0.02)
    _kill_when(proc, lambda: len(list((out / WORK_DIR / "inspect").glob("*.npz"))) >= 1)
    assert not (out / "manifest.json").exists()
    # 2nd run killed while writing shards (some final shards exist)
    proc = _start(src, out, slow=0.02)
    _kill_when(proc, lambda: len(list(out.glob("*-train-*.tar"))) >= 2)
    assert not (out / "manifest.json").exists()
    # 3rd run completes
    proc = _start(src, out, slow=0)
    assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()

    assert not (out / WORK_DIR).exists()
    assert not list(out.glob("*.partial*"))
    got, want = _files(out), _files(ref)
    assert got.keys() == want.keys()
    for name in want:
        assert got[name] == want[name], f"{name} differs after kill -9 and resume"


def test_verify_accepts_a_good_conversion(shards1k):
    report = verify(shards1k, decode=True, workers=2, progress=False)
    assert report.ok, report.problems
    assert report.samples == report.decoded > 0


def _bytes_read() -> int:
    """Bytes this process has read through read() calls so far, page cache included (Linux)."""
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
def test_verify_reads_each_shard_once(shards1k):
    import json

    from imagenet_pipe.format import idx_name
    from imagenet_pipe.verification import check_shard

    verify(shards1k, decode=True, workers=1, progress=False)  # imports and lazy set-up out of the way
    noise = 4096  # the read of /proc/self/io itself; a second pass would add a whole shard (>= 10 KiB)
    for shard in json.loads((shards1k / "manifest.json").read_text())["shards"]:
        once = shard["bytes"] + (shards1k / idx_name(shard["name"])).stat().st_size
        before = _bytes_read()
        assert check_shard(shards1k, shard, decode=True).problems == []
        read = _bytes_read() - before
        assert once <= read < once + noise, f"{shard['name']}: {read} bytes read, {once} in the shard and its .idx"
    folder = sum(p.stat().st_size for p in shards1k.iterdir() if p.is_file())
    before = _bytes_read()
    assert verify(shards1k, workers=1, progress=False).ok
    assert _bytes_read() - before < folder + noise  # every file of the folder read at most once


@pytest.mark.parametrize("damage", ["flip_byte", "idx_offset", "drop_shard", "sizes", "manifest_count", "bad_json"])
def test_verify_detects_damage(tmp_path, shards1k, damage):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(shards1k, out)
    tar = out / "imagenet1k-train-1.tar"
    if damage == "flip_byte":
        data = bytearray(tar.read_bytes())
        data[2000] ^= 0xFF
        tar.write_bytes(bytes(data))
        expect = "sha256"
    elif damage == "idx_offset":
        idx = out / "imagenet1k-train-1.idx"
        lines = idx.read_text().splitlines()
        parts = lines[1].split()
        parts[1] = str(int(parts[1]) + 512)
        lines[1] = " ".join(parts)
        idx.write_text("\n".join(lines) + "\n")
        expect = "does not match the offsets"
    elif damage == "drop_shard":
        tar.unlink()
        expect = "missing"
    elif damage == "bad_json":  # the first sample's json is not json: reported, and the rest still checked
        from imagenet_pipe.conversion.writer import ShardWriter
        from imagenet_pipe.format import iter_samples

        samples = list(iter_samples(tar))
        samples[0][1]["json"] = b"{not json"
        writer = ShardWriter(out, tar.name, "train")
        for key, sample in samples:
            writer.write(key, sample)
        writer.close()
        expect = "bad cls/json"
    elif damage == "sizes":
        (out / "sizes.json").write_text('{"imagenet1k-train-0.tar": 1}')
        expect = "sizes.json"
    else:
        import json

        m = json.loads((out / "manifest.json").read_text())
        m["splits"]["train"]["quarantined"] += 1
        (out / "manifest.json").write_text(json.dumps(m))
        expect = "samples in"
    report = verify(out, workers=1, progress=False, decode=True)
    assert not report.ok
    assert any(expect in p for p in report.problems), report.problems
    assert cli_main(["verify", str(out), "--quiet"]) == 1


def test_cli_convert_and_verify(tmp_path, raw1k, capsys):
    out = tmp_path / "cli"
    assert cli_main(["convert", "imagenet1k", str(raw1k("folder", "flat")), "--out", str(out),
                     "--shard-size", "train=10,validation=4", "--workers", "2", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "train: samples in 48 = written 47 + quarantined 1" in err
    assert "total: samples in 60 = written 59 + quarantined 1" in err
    assert cli_main(["verify", str(out), "--decode", "--quiet"]) == 0
    assert cli_main(["convert", "imagenet1k", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "x")]) == 2
    assert "not a directory" in capsys.readouterr().err
