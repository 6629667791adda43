"""Which JPEG decoder backends actually ran (``--stages backends``).

A ``"mixed"`` decoder is nvImageCodec with three backends: the hardware JPEG engine (A100, H100,
H200: the ``hw_decoder_load`` share of the images), the CUDA (hybrid) nvJPEG decoder and a CPU one.
If libnvjpeg does not load or the hardware decoder cannot be created, decoding silently continues on
what is left, and every figure is quietly a CPU figure. So the bench decodes the same shards three
ways and looks at what each cost:

* ``mixed, hw_decoder_load 1.0`` / ``0.0``: CPU time per image (process CPU time, all threads) and
  the GPU's and its JPEG engine's utilisation (NVML or ``nvidia-smi dmon``) while decoding;
* ``cpu decoder``: the same images on DALI's CPU decoder, the cost of a full fallback.

The hardware engine ran if its utilisation rose (or, without NVML, if handing it every image cut
the CPU time to under half of the CUDA path's); the CUDA decoder ran if the mixed decoder at
``hw_decoder_load`` 0 cost the CPU clearly less than the CPU decoder. A fallback is flagged in the
table and in ``bench.json``. On a CPU pipeline only the CPU decoder exists: the report says "cpu".
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from .stages import StageContext
from .timing import steady_window

HW_CPU_SHARE = 0.5  # all images to the JPEG engine: under half the CPU time of the CUDA path
FALLBACK_CPU_SHARE = 0.8  # a mixed decoder costing the CPU this much of the CPU decoder's time ran on the CPU
MIN_SECONDS_GPU = 2.0  # NVML reports utilisation over sampling periods of up to a second

ROWS = {"hw": "mixed, hw_decoder_load 1.0", "cuda": "mixed, hw_decoder_load 0.0", "cpu": "cpu decoder"}


def _decode_cost(ctx: StageContext, decoder: dict[str, Any], sampler=None, min_seconds: float = 0.0
                 ) -> dict[str, Any]:
    """CPU ms per image and img/s of reading + whole-image decoding with ``decoder`` options, timed
    in a steady window of at least ``min_seconds`` (``sampler`` runs during the timed part only)."""
    from nvidia.dali import fn, types

    from ..loaders.dali import StagePipeline

    pipe = StagePipeline(ctx.shards, ctx.cfg, ctx.device_id, lambda x: fn.decoders.image(
        x["jpegs"], output_type=types.RGB, adjust_orientation=False, **decoder))
    window = steady_window(ctx.cfg.prefetch, ctx.warmup, ctx.batches)
    try:
        for _ in range(window.warmup_batches):
            pipe.run()
        with sampler or contextlib.nullcontext():
            cpu, wall, batches, images = time.process_time(), time.perf_counter(), 0, 0
            while batches < window.timed_batches or time.perf_counter() - wall < min_seconds:
                images += pipe.run()
                batches += 1
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        pipe.close()
    row = {"cpu_ms_per_img": round(cpu / images * 1e3, 4), "img_s": round(images / wall, 1), "batches": batches}
    if sampler is not None:
        row["utilisation"] = sampler.summary()
    return row


def judge_backends(rows: dict[str, dict[str, Any]], nvjpeg: dict[str, Any]) -> dict[str, Any]:
    """Which backends ran and which fallbacks happened, from the three decode rows of a GPU run."""
    hw, cuda, cpu = (rows.get(ROWS[k], {}) for k in ("hw", "cuda", "cpu"))
    ran, fallback = [], []
    jpeg_engine = ((hw.get("utilisation") or {}).get("jpeg_engine_pct") or {}).get("max")
    if jpeg_engine is not None:
        hw_ran = jpeg_engine > 0
        evidence = f"JPEG engine utilisation up to {jpeg_engine:g} % with hw_decoder_load 1.0"
    elif hw.get("cpu_ms_per_img") and cuda.get("cpu_ms_per_img"):
        hw_ran = hw["cpu_ms_per_img"] < HW_CPU_SHARE * cuda["cpu_ms_per_img"]
        evidence = (f"CPU ms/img {hw['cpu_ms_per_img']:.3f} with hw_decoder_load 1.0 vs {cuda['cpu_ms_per_img']:.3f}"
                    " with 0.0 (no JPEG-engine utilisation available)")
    else:
        hw_ran, evidence = False, "not measured"
    cuda_ran = bool(cuda.get("cpu_ms_per_img") and cpu.get("cpu_ms_per_img")
                    and cuda["cpu_ms_per_img"] < FALLBACK_CPU_SHARE * cpu["cpu_ms_per_img"])
    if hw_ran:
        ran.append("hardware")
    if cuda_ran:
        ran.append("cuda")
    if not nvjpeg.get("loaded", True):
        fallback.append(f"libnvjpeg did not load: {nvjpeg.get('library')}")
    if not cuda_ran:
        ran.append("cpu")
        fallback.append("the mixed decoder ran on the CPU: with hw_decoder_load 0.0 it cost the CPU "
                        f"{cuda.get('cpu_ms_per_img')} ms/img against the CPU decoder's {cpu.get('cpu_ms_per_img')}")
    if nvjpeg.get("hardware_decoder") and not hw_ran:
        fallback.append(f"the GPU has a hardware JPEG decoder but it did not decode ({evidence})")
    return {"ran": ran, "fallback": fallback, "hardware_evidence": evidence}


def decoder_backends(ctx: StageContext) -> dict[str, Any]:
    """The report described in the module docstring, for the decoder options of ``ctx``'s preset."""
    if not ctx.cuda:
        rows = {ROWS["cpu"]: _decode_cost(ctx, {"device": "cpu"})}
        return {"device": "cpu", "ran": ["cpu"], "fallback": [], "rows": rows}
    from .gpu import UtilisationSampler, nvjpeg_probe

    probe = nvjpeg_probe()
    from ..loaders.dali_graph import decoder_options

    mixed = decoder_options(ctx.cfg, ctx.cuda)
    rows = {}
    for key, decoder in (("hw", {**mixed, "hw_decoder_load": 1.0}), ("cuda", {**mixed, "hw_decoder_load": 0.0}),
                         ("cpu", {"device": "cpu"})):
        rows[ROWS[key]] = _decode_cost(ctx, decoder, UtilisationSampler(ctx.device_id), MIN_SECONDS_GPU)
    return {"device": "gpu", "nvjpeg": probe, "rows": rows, **judge_backends(rows, probe)}
