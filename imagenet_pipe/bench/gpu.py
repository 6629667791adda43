"""What the machine did while the bench ran, seen from outside DALI: GPU and JPEG-engine
utilisation (NVML through ``pynvml`` from nvidia-ml-py, else ``nvidia-smi dmon``), whether libnvjpeg
loads and has a hardware decoder, and how much host and device memory the process holds.

DALI 2.4 exposes no memory or decoder-backend statistics of its own (``executor_statistics`` covers
operator outputs only, and not under the dynamic executor), hence these outside views. Each one
degrades to ``None`` rather than failing: a missing NVML must not cost the rest of a benchmark.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import statistics
import subprocess
import threading
from pathlib import Path
from typing import Any

MB = 2**20


# --- utilisation --------------------------------------------------------------------------------

def _nvml_handle(device_id: int):
    """NVML handle of CUDA device ``device_id`` (NVML counts every GPU; CUDA only the visible ones)."""
    import pynvml

    pynvml.nvmlInit()
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if not visible:
        return pynvml.nvmlDeviceGetHandleByIndex(device_id)
    chosen = visible[device_id]
    if chosen.isdigit():
        return pynvml.nvmlDeviceGetHandleByIndex(int(chosen))
    return pynvml.nvmlDeviceGetHandleByUUID(chosen)


def _nvml_reading(handle) -> tuple[float | None, float | None]:
    """(GPU busy %, JPEG engine %) now; JPEG is None where the driver does not report it."""
    import pynvml

    busy = float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    try:
        jpg = float(pynvml.nvmlDeviceGetJpgUtilization(handle)[0])
    except (pynvml.NVMLError, AttributeError):  # old driver or old nvidia-ml-py
        jpg = None
    return busy, jpg


def _percent(text: str | None) -> float | None:
    return float(text) if text and text.replace(".", "", 1).isdigit() else None  # "-": not reported


def parse_dmon(text: str) -> list[tuple[float | None, float | None]]:
    """(``sm`` %, ``jpg`` %) rows of ``nvidia-smi dmon -s u`` output (its header names the columns)."""
    columns: list[str] = []
    rows = []
    for line in text.splitlines():
        fields = line.split()
        if line.startswith("#") and "sm" in fields:
            columns = fields[1:]
        elif columns and fields and not line.startswith("#"):
            values = dict(zip(columns, fields, strict=False))
            rows.append((_percent(values.get("sm")), _percent(values.get("jpg"))))
    return rows


class UtilisationSampler:
    """GPU busy % and JPEG-engine % of one CUDA device, sampled while a ``with`` block runs: NVML
    every ``interval_s`` in a thread, else ``nvidia-smi dmon`` (1 s samples) in a subprocess.
    ``summary()`` says which source answered (``None``: neither)."""

    def __init__(self, device_id: int, interval_s: float = 0.1) -> None:
        self.device_id, self.interval_s = device_id, interval_s
        self.samples: list[tuple[float | None, float | None]] = []
        self.source: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dmon: subprocess.Popen | None = None

    def __enter__(self) -> UtilisationSampler:
        try:
            handle = _nvml_handle(self.device_id)
            _nvml_reading(handle)
        except Exception:  # no nvidia-ml-py, no driver library, or no such device
            self._start_dmon()
        else:
            self.source = "nvml"
            self._thread = threading.Thread(target=self._poll, args=(handle,), daemon=True)
            self._thread.start()
        return self

    def _poll(self, handle) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.samples.append(_nvml_reading(handle))
            except Exception:  # the driver stopped answering: keep the samples taken so far
                return

    def _start_dmon(self) -> None:
        try:
            self._dmon = subprocess.Popen(["nvidia-smi", "dmon", "-s", "u", "-d", "1", "-i", str(self.device_id)],
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self.source = "nvidia-smi dmon"
        except OSError:
            self.source = None

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._dmon is not None:
            self._dmon.terminate()
            out, _ = self._dmon.communicate(timeout=10)
            self.samples = parse_dmon(out)

    def summary(self) -> dict[str, Any]:
        def stats(values: list[float | None]) -> dict[str, float] | None:
            known = [v for v in values if v is not None]
            return {"mean": round(statistics.mean(known), 1), "max": max(known)} if known else None

        busy, jpeg = [s[0] for s in self.samples], [s[1] for s in self.samples]
        return {"source": self.source, "samples": len(self.samples), "gpu_busy_pct": stats(busy),
                "jpeg_engine_pct": stats(jpeg)}


# --- libnvjpeg ----------------------------------------------------------------------------------

NVJPEG_BACKEND_HARDWARE = 3
NVJPEG_STATUS = {6: "execution failed (no usable CUDA device?)", 7: "this GPU has no hardware JPEG decoder",
                 9: "hardware decoding not supported here"}


def _load_nvjpeg() -> tuple[ctypes.CDLL | None, str]:
    """libnvjpeg as the dynamic linker finds it, else from the nvidia-nvjpeg-cu* wheel DALI installs."""
    names = ["libnvjpeg.so.13", "libnvjpeg.so.12", "libnvjpeg.so"]
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        names += [str(p) for p in sorted(Path(root).glob("*/lib/libnvjpeg.so*"))]
    for name in names:
        try:
            return ctypes.CDLL(name), name
        except OSError:
            continue
    return None, "not found (tried " + ", ".join(names[:3]) + " and the nvidia-nvjpeg wheels)"


def nvjpeg_probe() -> dict[str, Any]:
    """Does libnvjpeg load, which version, and can it create a hardware-decoder handle (A100, H100,
    H200 ... have a JPEG engine; most other GPUs do not)."""
    lib, where = _load_nvjpeg()
    if lib is None:
        return {"loaded": False, "library": where, "hardware_decoder": False}
    version = []
    for part in range(3):  # MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL
        value = ctypes.c_int()
        lib.nvjpegGetProperty(part, ctypes.byref(value))
        version.append(str(value.value))
    out: dict[str, Any] = {"loaded": True, "library": where, "version": ".".join(version)}
    handle = ctypes.c_void_p()
    status = lib.nvjpegCreateEx(NVJPEG_BACKEND_HARDWARE, None, None, 0, ctypes.byref(handle))
    out["hardware_decoder"] = status == 0
    if status == 0:
        engines, cores = ctypes.c_uint(), ctypes.c_uint()
        if lib.nvjpegGetHardwareDecoderInfo(handle, ctypes.byref(engines), ctypes.byref(cores)) == 0:
            out.update(engines=engines.value, cores_per_engine=cores.value)
        lib.nvjpegDestroy(handle)
    else:
        out["why"] = NVJPEG_STATUS.get(status, f"nvjpegCreateEx status {status}")
    return out


# --- memory -------------------------------------------------------------------------------------

def _rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def driver_mapped_host_mb() -> float | None:
    """Resident host memory the process maps through ``/dev/nvidia*`` (the CUDA driver's pinned
    buffers live there; 0 without a GPU). From ``/proc/self/smaps``; None where it does not exist."""
    total_kb, current = 0, ""
    try:
        with open("/proc/self/smaps") as f:
            for line in f:
                head = line.split()
                if head and "-" in head[0] and len(head) >= 5:  # a mapping's header line
                    current = head[5] if len(head) > 5 else ""
                elif head and head[0] == "Rss:" and current.startswith("/dev/nvidia"):
                    total_kb += int(head[1])
    except OSError:
        return None
    return total_kb / 1024


def memory_snapshot(device_id: int | None) -> dict[str, float | None]:
    """Process RSS and driver-mapped host memory (MiB); on GPU also device memory in use (all
    processes), this process's share by NVML, and what torch's allocator holds."""
    snap: dict[str, float | None] = {"rss_mb": _rss_mb(), "driver_mapped_host_mb": driver_mapped_host_mb()}
    if device_id is None:
        return snap
    import torch

    free, total = torch.cuda.mem_get_info(device_id)
    snap.update(gpu_used_mb=(total - free) / MB, process_gpu_mb=_nvml_process_mb(device_id),
                torch_allocated_mb=torch.cuda.memory_allocated(device_id) / MB,
                torch_reserved_mb=torch.cuda.memory_reserved(device_id) / MB)
    return snap


def _nvml_process_mb(device_id: int) -> float | None:
    try:
        import pynvml

        procs = pynvml.nvmlDeviceGetComputeRunningProcesses(_nvml_handle(device_id))
        used = [p.usedGpuMemory for p in procs if p.pid == os.getpid() and p.usedGpuMemory is not None]
        return used[0] / MB if used else None
    except Exception:  # no nvidia-ml-py / driver library, or a container hiding process ids
        return None
