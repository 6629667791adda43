"""Auto-tune the DALI loader on this machine and write the result as a YAML preset.

A full grid is too slow to be useful, so the search goes one knob at a time (coordinate descent):
DALI threads, prefetch depth, batch size and, on GPU, the hardware decoder's share; each knob keeps
its best value before the next is swept, and the threads are revisited once at the end because
the best thread count moves with the batch size. Every trial is a short loader measurement on the
benchmark's shards; a value must beat the current one by more than ``min_gain`` (noise on a
shared machine) to be taken.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from ..config import load_preset
from ..loaders.config import LoaderConfig, resolve_config
from .stages import StageContext, loader_rate


def candidates(ctx: StageContext, cores: int) -> dict[str, list[Any]]:
    gpu = ctx.cuda
    threads = sorted({max(1, t) for t in ((cores // 4, cores // 2, cores, cores + cores // 2) if gpu
                                         else (max(1, cores - 1), cores, cores + 1, 2 * cores))})
    out: dict[str, list[Any]] = {
        "num_threads": threads,
        "prefetch": [1, 2, 3, 4],
        "batch_size": [128, 256, 512] if gpu else [32, 64, 128, 256],
    }
    if gpu:
        out["hw_decoder_load"] = [0.0, 0.5, 0.65, 0.8, 0.9, 1.0]
    return out


def autotune(ctx: StageContext, cores: int, *, base_preset: str | Path, out_path: str | Path | None = None,
             space: dict[str, list[Any]] | None = None, min_gain: float = 0.03, confirm: int = 3,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Sweep, pick, confirm, write ``out_path`` (a preset ``build_loader(..., preset=out_path)`` accepts).

    Short trials on a shared machine can crown a lucky setting, so the winner is measured again
    against the starting settings, alternately, ``confirm`` times each; it is kept only if its
    median still beats the start by ``min_gain``, else the starting settings are written."""
    space = space or candidates(ctx, cores)
    best_cfg: LoaderConfig = replace(ctx.cfg, num_threads=ctx.cfg.threads)
    trials: list[dict[str, Any]] = []

    def trial(cfg: LoaderConfig) -> float:
        rate = loader_rate(replace(ctx, cfg=cfg), min_batches=ctx.warmup + 2)
        if rate is None:  # too few batches in a pass to time anything
            return 0.0
        trials.append({**{k: getattr(cfg, k) for k in space}, "img_s": round(rate, 1)})
        log(f"  tune {', '.join(f'{k}={getattr(cfg, k)}' for k in space)}: {rate:,.0f} img/s")
        return rate

    best = trial(best_cfg)
    order = [*space, "num_threads"] if "num_threads" in space else list(space)
    for knob in order:
        for value in space[knob]:
            if getattr(best_cfg, knob) == value:
                continue
            cfg = replace(best_cfg, **{knob: value})
            rate = trial(cfg)
            if rate > best * (1 + min_gain):
                best, best_cfg = rate, cfg
    start_cfg = replace(ctx.cfg, num_threads=ctx.cfg.threads)
    confirmation = None
    if confirm and best_cfg != start_cfg:
        runs: dict[str, list[float]] = {"start": [], "chosen": []}
        for _ in range(confirm):
            runs["start"].append(loader_rate(replace(ctx, cfg=start_cfg)) or 0.0)
            runs["chosen"].append(loader_rate(replace(ctx, cfg=best_cfg)) or 0.0)
        start_rate, best = statistics.median(runs["start"]), statistics.median(runs["chosen"])
        held = best > start_rate * (1 + min_gain)
        confirmation = {"start_img_s": [round(r, 1) for r in runs["start"]],
                        "chosen_img_s": [round(r, 1) for r in runs["chosen"]], "held": held}
        log(f"  confirm: start {start_rate:,.0f} img/s, chosen {best:,.0f} img/s -> "
            f"{'keep the chosen settings' if held else 'gain did not hold: keep the starting settings'}")
        if not held:
            best_cfg, best = start_cfg, start_rate
    chosen = {k: getattr(best_cfg, k) for k in space}
    result: dict[str, Any] = {"base_preset": str(base_preset), "chosen": chosen, "img_s": round(best, 1),
                              "trials": trials, "min_gain": min_gain, "confirmation": confirmation}
    if out_path is not None:
        write_preset(out_path, base_preset, best_cfg, list(space), note=f"{best:,.0f} img/s in the tuning run")
        resolve_config(out_path)  # the loader must accept what was written
        result["preset"] = str(out_path)
    return result


def write_preset(path: str | Path, base_preset: str | Path, cfg: LoaderConfig, tuned: list[str],
                 note: str = "") -> Path:
    """The base preset's options plus the tuned ones, with a header saying where they came from."""
    from .machine import cpu_model

    path = Path(path)
    values = dict(load_preset(base_preset))
    full = asdict(cfg)
    for key in tuned:
        values[key] = full[key]
    if cfg.device != "auto":
        values["device"] = cfg.device
    if "num_threads" in tuned:
        values["num_workers"] = full["num_threads"]  # the baseline loader, measured beside it, gets as many
    for key, value in list(values.items()):
        if isinstance(value, tuple):
            values[key] = list(value)
    header = (f"# Tuned by `imagenet-pipe bench --tune` from preset {base_preset} on "
              f"{datetime.now(timezone.utc):%Y-%m-%d}, {cpu_model()}, device {cfg.device}.\n"
              f"# {note}. Machine-specific: re-tune on other hardware.\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(values, sort_keys=False, default_flow_style=None))
    return path
