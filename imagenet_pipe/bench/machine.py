"""The machine record stored with every benchmark result: CPU, cores used, memory, GPU and driver,
library versions, the storage the shards live on, and the load around the run."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def available_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return None
    names = {"dali": ["nvidia-dali-cuda120", "nvidia-dali-cuda130", "nvidia-dali-cuda110", "nvidia-dali"]}
    for name in names.get(module, [module]):
        try:
            return f"{version(name)} ({name})" if module == "dali" else version(name)
        except PackageNotFoundError:
            continue
    if module == "dali":  # carried onto a machine without pip metadata (see tools/gpu_bench.sh)
        try:
            import nvidia.dali

            return nvidia.dali.__version__
        except ImportError:
            return None
    return None


def _gpus() -> dict[str, Any]:
    info: dict[str, Any] = {"cuda_available": False}
    try:
        import torch

        info["torch_cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            info["cuda_available"] = True
            info["devices"] = [{"name": torch.cuda.get_device_name(i),
                                "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1),
                                "multiprocessors": torch.cuda.get_device_properties(i).multi_processor_count}
                               for i in range(torch.cuda.device_count())]
    except Exception as e:  # a broken CUDA install must not stop a CPU benchmark
        info["error"] = str(e)
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        if out.returncode == 0:
            info["nvidia_smi"] = [line.strip() for line in out.stdout.splitlines() if line.strip()]
            info["driver"] = info["nvidia_smi"][0].split(",")[1].strip() if info["nvidia_smi"] else None
    except (OSError, subprocess.TimeoutExpired):
        pass
    return info


def storage(path: str | Path) -> dict[str, Any]:
    """Filesystem, block device and whether it spins, for the folder the shards are read from.
    Reads go through the page cache: small shard sets are served from memory after the first pass."""
    path = Path(path).resolve()
    best: tuple[str, str, str] | None = None
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            dev, mnt, fstype = line.split()[:3]
            under = str(path).startswith(mnt.rstrip("/") + "/") or str(path) == mnt or mnt == "/"
            if under and (best is None or len(mnt) > len(best[1])):
                best = (dev, mnt, fstype)
    except OSError:
        pass
    out: dict[str, Any] = {"path": str(path)}
    if best:
        dev, mnt, fstype = best
        out.update(device=dev, mount=mnt, fstype=fstype)
        name = Path(dev).name
        for candidate in (name, name.rstrip("0123456789"), name.split("p")[0] if "nvme" in name else name):
            rot = Path(f"/sys/block/{candidate}/queue/rotational")
            if rot.exists():
                out["rotational"] = rot.read_text().strip() == "1"
                break
    try:
        st = os.statvfs(path)
        out["free_gib"] = round(st.f_bavail * st.f_frsize / 2**30, 1)
    except OSError:
        pass
    return out


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_record(shards_root: str | Path | None = None, cores: int | None = None) -> dict[str, Any]:
    """Everything needed to read a number later: what ran, on what, with which libraries."""
    cpus = available_cpus()
    record: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "cpu_model": cpu_model(),
        "cpu_logical": os.cpu_count(),
        "cpus_available": len(cpus),
        "cores_used": cores or len(cpus),
        "memory_gib": _mem_gib(),
        "load_average_start": load_average(),
        "gpu": _gpus(),
        "versions": {m: _version(m) for m in ("dali", "torch", "torchvision", "timm", "webdataset", "pillow",
                                              "numpy")},
    }
    try:
        from PIL import features

        record["versions"]["libjpeg_turbo"] = features.version("libjpeg_turbo")
    except Exception:
        pass
    if shards_root is not None:
        record["storage"] = storage(shards_root)
    return record
