"""``convert --executor ray`` on a real local Ray cluster: a head node without CPUs and two worker
nodes (``ray.cluster_utils.Cluster``: each node its own raylet and worker processes, sharing this
machine's file system as cluster nodes share a network file system). The driver is the command
line in a subprocess, as a user runs it. The shards are byte-identical to a local run's; a worker
node killed mid-run loses nothing (Ray reruns its tasks elsewhere); a killed driver resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imagenet_pipe.fakes.imagenet1k import make_imagenet1k, plan
from imagenet_pipe.fakes.imagenet21k import make_imagenet21k
from imagenet_pipe.fakes.imagenet21k import plan as plan21k
from imagenet_pipe.format import WORK_DIR
from imagenet_pipe.verification import verify

pytestmark = pytest.mark.slow  # a cluster starts in about 5 s; each driver connects in about 2 s

# every address of the cluster on the loopback interface: Ray's own switch for single-machine use
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
# a node that stops answering is declared dead within about 2 s (Ray's default: about 15 s)
FAST_FAILURE_DETECTION = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                          "health_check_timeout_ms": 500, "health_check_failure_threshold": 3}


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    saved = {k: os.environ.get(k) for k in LOOPBACK}
    os.environ.update(LOOPBACK)  # the nodes, and the drivers started below, inherit it
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "_system_config": FAST_FAILURE_DETECTION})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.update({k: v})


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


def local(dataset: str, src: Path, out: Path) -> None:
    """The same conversion with the local executor, 2 processes. In a process of its own: this one
    holds the cluster's gRPC threads, which a forked pool worker must not inherit."""
    subprocess.run([sys.executable, "-m", "imagenet_pipe", "convert", dataset, str(src), "--out", str(out),
                    "--shard-size", "10", "--workers", "2", "--quiet"], check=True, capture_output=True, timeout=120)


def files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def driver(cluster, dataset: str, src: Path, out: Path, slow: float = 0) -> subprocess.Popen:
    """``imagenet-pipe convert ... --executor ray --ray-address <cluster>`` in a new process group."""
    env = {**os.environ, "IMAGENET_PIPE_SLOW_READ_S": str(slow)}  # passed on to the Ray workers
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


def writing_node(cluster, files: list[Path]):
    """The worker node one of whose processes is writing one of ``files`` (temporary files, whose
    names end with the writer's process id; its parent is the node's raylet), or None."""
    raylets = {node.all_processes["raylet"][0].process.pid: node for node in cluster.worker_nodes}
    for partial in files:
        try:
            stat = Path(f"/proc/{partial.name.rsplit('-', 1)[1]}/stat").read_text()
        except (FileNotFoundError, ValueError):
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent in raylets:
            return raylets[parent]
    return None


# where a task of each phase keeps its unfinished output: an inspection chunk's repaired bytes, a shard
UNFINISHED = {"inspect": f"{WORK_DIR}/inspect/*.fix.partial-*", "write": "*.tar.partial-*"}


@pytest.mark.parametrize("phase", ["inspect", "write"])
def test_a_worker_node_killed_mid_task_loses_nothing(cluster, raw, reference, tmp_path, phase):
    out = tmp_path / "out"
    proc = driver(cluster, "imagenet1k", raw, out, slow=0.01)
    wait_for(proc, lambda: writing_node(cluster, list(out.glob(UNFINISHED[phase]))) is not None)
    victim = writing_node(cluster, list(out.glob(UNFINISHED[phase])))
    cluster.remove_node(victim, allow_graceful=False)  # SIGKILL: its raylet and its workers, mid-task
    try:
        assert list(out.glob(UNFINISHED[phase]))  # what its task was writing, left unfinished
        log = finish(proc)  # Ray reruns the lost task on the other node
    finally:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
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
