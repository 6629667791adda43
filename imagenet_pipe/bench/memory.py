"""What one DALI loader holds in memory (``--stages memory``): process RSS, host memory mapped by the
CUDA driver (pinned buffers), device memory in use and torch's share of it, read before the loader
is built, once it is built, after a steady run of batches, and after it is closed. Reported as
differences from before, per preset, so that "GPU and pinned host memory per pipeline" can be read
off (evaluation holds two loaders: twice that)."""

from __future__ import annotations

import gc
from typing import Any

from .gpu import memory_snapshot
from .stages import StageContext, loader_window, make_loader


def _minus(after: dict[str, float | None], before: dict[str, float | None]) -> dict[str, float | None]:
    return {k: (None if v is None or before.get(k) is None else round(v - before[k], 1)) for k, v in after.items()}


def loader_memory(ctx: StageContext) -> dict[str, Any]:
    gc.collect()
    before = memory_snapshot(ctx.device_id)
    ldr = make_loader(ctx, "dali")
    try:
        built = memory_snapshot(ctx.device_id)
        window = loader_window(ctx, "dali", ctx.cfg, len(ldr))
        batches = min(len(ldr), window.warmup_batches + window.timed_batches)
        it = iter(ldr)
        for _ in range(batches):
            next(it)
        ctx.sync()
        running = memory_snapshot(ctx.device_id)
        close = getattr(it, "close", None)
        if close:
            close()
    finally:
        ldr.close()
    gc.collect()
    closed = memory_snapshot(ctx.device_id)
    return {"unit": "MiB", "batches": batches, "batch_size": ctx.cfg.batch_size, "threads": ctx.cfg.threads,
            "prefetch": ctx.cfg.prefetch, "before": {k: None if v is None else round(v, 1) for k, v in before.items()},
            "built": _minus(built, before), "running": _minus(running, before), "closed": _minus(closed, before)}
