"""``convert --executor ray`` on a real local Ray cluster: a head node without CPUs and two worker
nodes (``tests/ray_cluster.py``, in a process of its own: each node its own raylet and worker
processes, sharing this machine's file system as cluster nodes share a network file system). The
driver is the command line in a subprocess, as a user runs it. The shards are byte-identical to a
local run's; a damaged archive stops both with the same one-line error; a worker node killed
mid-task loses nothing (Ray reruns its tasks elsewhere); a killed driver resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imagenet_pipe.fakes import damage
from imagenet_pipe.fakes.imagenet1k import make_imagenet1k, plan
from imagenet_pipe.fakes.imagenet21k import make_imagenet21k
from imagenet_pipe.fakes.imagenet21k import plan as plan21k
from imagenet_pipe.format import WORK_DIR
from imagenet_pipe.verification import verify

pytestmark = pytest.mark.slow  # a cluster starts in about 5 s; each driver connects in about 2 s

# every address of the cluster on the loopback interface: Ray's own switch for single-machine use
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


class RayCluster:
    """``tests/ray_cluster.py`` running: its address and its worker nodes' raylet process ids."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("ray_cluster.py"))],
                                     env={**os.environ, **LOOPBACK}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self.read()

    def read(self) -> None:
        line = self.proc.stdout.readline()
        assert line, "the Ray cluster process ended"
        state = json.loads(line)
        self.address, self.raylets = state["address"], state["raylets"]

    def send(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        self.read()

    def close(self) -> None:
        try:
            self.proc.communicate("quit\n", timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture(scope="module")
def cluster():
    cluster = RayCluster()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """An official-layout 1K fake of 320 images: two inspection chunks, 32 shards."""
    root = tmp_path_factory.mktemp("raw-ray")
    make_imagenet1k(root, "official", fake=plan(num_classes=10, train_per_class=30, val_images=20, style="small"))
    return root


@pytest.fixture(scope="module")
def reference(tmp_path_factory, raw) -> dict[str, bytes]:
    """The local executor's output for ``raw``."""
    out = tmp_path_factory.mktemp("local")
    local("imagenet1k", raw, out)
    return files(out)


def local(dataset: str, src: Path, out: Path, check: bool = True) -> subprocess.CompletedProcess:
    """The same conversion with the local executor, 2 processes, through the command line."""
    return subprocess.run([sys.executable, "-m", "imagenet_pipe", "convert", dataset, str(src), "--out", str(out),
                           "--shard-size", "10", "--workers", "2", "--quiet"], check=check, capture_output=True,
                          text=True, timeout=120)


def files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def driver(cluster, dataset: str, src: Path, out: Path, slow: float = 0) -> subprocess.Popen:
    """``imagenet-pipe convert ... --executor ray --ray-address <cluster>`` in a new process group."""
    env = {**os.environ, **LOOPBACK, "IMAGENET_PIPE_SLOW_READ_S": str(slow)}  # passed on to the Ray workers
    cmd = [sys.executable, "-m", "imagenet_pipe", "convert", dataset, str(src), "--out", str(out), "--shard-size",
           "10", "--executor", "ray", "--ray-address", cluster.address, "--quiet"]
    return subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return err


def wait_for(proc: subprocess.Popen, ready, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"conversion ended before the point it was waited for: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "conversion did not reach the point it was waited for"
        time.sleep(0.02)


def assert_complete(out: Path, reference: dict[str, bytes]) -> None:
    got = files(out)
    assert got.keys() == reference.keys()
    assert [name for name in reference if got[name] != reference[name]] == []
    assert not (out / WORK_DIR).exists() and not list(out.glob("*.partial*"))
    report = verify(out, workers=1, progress=False)
    assert report.ok, report.problems


def test_ray_writes_the_bytes_of_a_local_run_with_tasks_on_both_nodes(cluster, raw, reference, tmp_path):
    # reads slowed a little, so that a task lasts longer than it takes to hand out the next one
    log = finish(driver(cluster, "imagenet1k", raw, tmp_path / "out", slow=0.005))
    assert_complete(tmp_path / "out", reference)
    assert "Ray cluster: 3 node(s), 2 CPUs; up to 2 tasks at a time" in log
    assert "scan: 10 task(s) ran on" in log  # one listing per class tar
    assert "inspect: 2 task(s) ran on 2 Ray node(s)" in log
    assert "write: 32 task(s) ran on 2 Ray node(s)" in log, log


def test_ray_converts_21k_to_the_bytes_of_a_local_run(cluster, tmp_path):
    src = tmp_path / "raw"
    make_imagenet21k(src, "fall11", fake=plan21k(num_classes=9, max_per_class=8, style="small", seed=3))
    local("imagenet21k", src, tmp_path / "local")
    log = finish(driver(cluster, "imagenet21k", src, tmp_path / "ray"))
    assert_complete(tmp_path / "ray", files(tmp_path / "local"))
    assert "scan: 9 task(s) ran on 2 Ray node(s)" in log


def test_a_damaged_class_tar_stops_a_ray_run_with_the_local_one_line_error(cluster, tmp_path):
    src = tmp_path / "raw"
    make_imagenet1k(src, "official", fake=plan(num_classes=8, train_per_class=4, val_images=8, style="small"))
    train = src / "ILSVRC2012_img_train.tar"
    order = [name for name, _ in damage.read_members(train)]
    damage.edit_member(train, order[2], lambda tar: damage.break_header_checksum(tar, 1))
    damage.edit_member(train, order[5], lambda tar: damage.cut_in_data(tar, 1))
    want = local("imagenet1k", src, tmp_path / "local", check=False)
    proc = driver(cluster, "imagenet1k", src, tmp_path / "ray")
    _, err = proc.communicate(timeout=120)
    assert want.returncode == proc.returncode == 2
    assert err.strip().splitlines()[-1] == want.stderr.strip().splitlines()[-1]  # the first damage in archive order
    assert f"ILSVRC2012_img_train.tar/{order[2]}: damaged tar header" in want.stderr


# a program that manages its own Ray connection: the executor uses it as it is, and local workers
# convert after it (started by a fork server: a fork of a process holding Ray's gRPC threads can hang)
RAY_THEN_LOCAL = """
import sys
import ray
from imagenet_pipe.conversion import convert
src, out, address = sys.argv[1:]
ray.init(address=address)
for name, how in (("ray", {"executor": "ray"}), ("local", {"workers": 2})):
    convert("imagenet1k", src, f"{out}/{name}", shard_size=10, progress=False, log=lambda _: None, **how)
"""


def test_a_program_connected_to_ray_converts_with_local_workers_too(cluster, raw, reference, tmp_path):
    done = subprocess.run([sys.executable, "-c", RAY_THEN_LOCAL, str(raw), str(tmp_path), cluster.address],
                          env={**os.environ, **LOOPBACK}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert_complete(tmp_path / "ray", reference)
    assert_complete(tmp_path / "local", reference)


def writing_node(cluster: RayCluster, files: list[Path]) -> int | None:
    """The raylet process id of the worker node one of whose processes is writing one of ``files``
    (temporary files, whose names end with the writer's process id; its parent is the node's
    raylet), or None."""
    for partial in files:
        try:
            stat = Path(f"/proc/{partial.name.rsplit('-', 1)[1]}/stat").read_text()
        except (FileNotFoundError, ValueError):
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent in cluster.raylets:
            return parent
    return None


# where a task of each phase keeps its unfinished output: an inspection chunk's repaired bytes, a shard
UNFINISHED = {"inspect": f"{WORK_DIR}/inspect/*.fix.partial-*", "write": "*.tar.partial-*"}


@pytest.mark.parametrize("phase", ["inspect", "write"])
def test_a_worker_node_killed_mid_task_loses_nothing(cluster, raw, reference, tmp_path, phase):
    out = tmp_path / "out"
    proc = driver(cluster, "imagenet1k", raw, out, slow=0.01)
    victim: list[int | None] = [None]

    def found() -> bool:
        victim[0] = writing_node(cluster, list(out.glob(UNFINISHED[phase])))
        return victim[0] is not None

    wait_for(proc, found)
    cluster.send(f"kill {victim[0]}")  # SIGKILL: its raylet and its workers, while one of them writes
    try:
        assert victim[0] not in cluster.raylets and len(cluster.raylets) == 1
        log = finish(proc)  # Ray reruns the lost task on the other node
    finally:
        cluster.send("add")
    assert_complete(out, reference)
    assert "write: 32 task(s) ran on" in log


def test_a_killed_driver_resumes_to_the_same_bytes(cluster, raw, reference, tmp_path):
    out = tmp_path / "out"
    proc = driver(cluster, "imagenet1k", raw, out, slow=0.01)
    wait_for(proc, lambda: len(list(out.glob("*-train-*.tar"))) >= 2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists()
    log = finish(driver(cluster, "imagenet1k", raw, out))
    assert "resuming: " in log and " shards already written" in log
    assert_complete(out, reference)
