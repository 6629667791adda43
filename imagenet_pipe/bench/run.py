"""``run_bench``: every stage for every preset in one run, at equal cores, with the machine record."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from ..errors import OptionsError
from ..loaders.config import resolve_config
from ..loaders.shardset import ShardSet
from . import report, stages
from .machine import available_cpus, load_average, machine_record
from .options import DEFAULT_STAGES, PARITY, STAGES
from .stages import StageContext
from .timing import summary, time_epochs


def resolve_presets(presets: Sequence[str] | None, modes: Sequence[str] | None, sizes: Sequence[int] | None
                    ) -> list[str]:
    """Preset names from ``--preset`` or from ``--mode`` x ``--size`` (``train-224``, ``eval-384``, ...)."""
    if presets:
        return list(presets)
    return [f"{m}-{s}" for m in (modes or ("train", "eval")) for s in (sizes or (224,))]


def _device(device: str) -> str:
    """auto -> gpu or cpu, decided like the loaders decide (an error for gpu without CUDA)."""
    from ..loaders import resolve_config
    from ..loaders.common import resolve_device

    return "cpu" if resolve_device(resolve_config(None, device=device), 0) is None else "gpu"


def _pin(cores: int | None) -> tuple[int, tuple[set[int] | None, int]]:
    """Restrict this process (DALI's threads, DataLoader workers it forks, torch's pool) to
    ``cores`` CPUs, so that both loaders get exactly the same cores. Returns (cores, what to restore)."""
    cpus = available_cpus()
    n = len(cpus) if not cores else min(cores, len(cpus))
    if cores and cores > len(cpus):
        raise OptionsError(f"--cores {cores}: only {len(cpus)} CPUs are available to this process")
    old_mask, old_threads = None, torch.get_num_threads()
    if hasattr(os, "sched_setaffinity") and n < len(cpus):
        old_mask = set(cpus)
        os.sched_setaffinity(0, set(cpus[:n]))
    torch.set_num_threads(n)
    return n, (old_mask, old_threads)


def _unpin(old: tuple[set[int] | None, int]) -> None:
    mask, threads = old
    if mask is not None:
        os.sched_setaffinity(0, mask)
    torch.set_num_threads(threads)


def _interleaved_loaders(ctx: StageContext, variants: dict[str, tuple[str, dict[str, Any]]], log) -> dict[str, Any]:
    """Full-loader passes, alternating between variants repeat by repeat, so that a slow spell on a
    shared machine lands on all of them rather than on one."""
    built: dict[str, Any] = {}
    out: dict[str, Any] = {}
    try:
        for name, (backend, overrides) in variants.items():
            start = time.perf_counter()
            built[name] = stages.make_loader(ctx, backend, **overrides)
            out[name] = {"backend": backend, "build_s": round(time.perf_counter() - start, 3)}
        rates: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(ctx.repeats):
            for name, ldr in built.items():
                steps = len(ldr)
                warmup = min(ctx.warmup, max(0, steps - 1))
                batches = max(1, min(ctx.batches, steps - warmup))
                rates[name] += time_epochs(lambda ldr=ldr: (b.images.shape[0] for b in ldr), warmup=warmup,
                                           batches=batches, repeats=1, sync=ctx.sync)
                out[name]["timed_batches"] = batches
        for name, (backend, overrides) in variants.items():
            cfg = replace(ctx.cfg, **overrides)
            workers = cfg.num_workers if cfg.num_workers is not None else cfg.threads
            out[name].update(img_s=summary(rates[name]), batch_size=cfg.batch_size, prefetch=cfg.prefetch,
                             threads_or_workers=cfg.threads if backend == "dali" else workers)
            if cfg.mode == "eval":
                out[name]["pil_parity"] = cfg.pil_parity
            log(f"  {name}: {out[name]['img_s']['median']:,.0f} img/s")
    finally:
        for ldr in built.values():
            ldr.close()
    return out


def run_preset(ctx: StageContext, wanted: set[str], *, parity: str = "both", model: str = "tiny",
               model_step: str | None = None, model_backends: Sequence[str] = ("dali",),
               log: Callable[[str], None] = print) -> dict[str, Any]:
    st: dict[str, Any] = {}
    if "read" in wanted:
        st["read_files"] = stages.read_files(ctx)
        st["read_dali"] = stages.read_dali(ctx)
        log(f"  read: files {st['read_files']['mb_s']['median']:,.0f} MB/s, "
            f"DALI reader {st['read_dali']['img_s']['median']:,.0f} samples/s")
    if "decode" in wanted:
        st["decode"] = stages.decode(ctx)
        log(f"  decode only: {st['decode']['img_s']['median']:,.0f} img/s")
    if "resize" in wanted:
        st["decode_resize"] = stages.decode_resize(ctx)
        log(f"  decode + crop/resize: {st['decode_resize']['img_s']['median']:,.0f} img/s")
    variants: dict[str, tuple[str, dict[str, Any]]] = {}
    if "loader" in wanted:
        eval_mode = ctx.cfg.mode == "eval"
        if not eval_mode or parity in ("both", "on"):
            variants["loader_dali"] = ("dali", {"pil_parity": True} if eval_mode else {})
        if eval_mode and parity in ("both", "off"):
            key = "loader_dali_no_parity" if parity == "both" else "loader_dali"
            variants[key] = ("dali", {"pil_parity": False})
    if "baseline" in wanted:
        variants["loader_baseline"] = ("baseline", {})
    if variants:
        st.update(_interleaved_loaders(ctx, variants, log))
    out: dict[str, Any] = {"config": _cfg_json(ctx.cfg), "stages": st, "ratios": report.ratios(st)}
    if "ops" in wanted:
        from .ops import op_costs

        out["ops"] = op_costs(ctx)
        log(f"  ops: {len(out['ops'].get('rows', {}))} pipelines profiled")
    if model_step and "model" in wanted:
        out["model"] = []
        kind = model_step if model_step != "auto" else ("fwdbwd" if ctx.cfg.mode == "train" else "fwd")
        for backend in model_backends:
            m = stages.model_step(ctx, backend, model, kind)
            log(f"  model {model} {kind} alone {m['model_alone_img_s']['median']:,.0f} img/s, fed by "
                f"{backend} {m['fed_img_s']['median']:,.0f} img/s")
            out["model"].append(m)
    return out


def _cfg_json(cfg) -> dict[str, Any]:
    d = asdict(cfg)
    d["threads"] = cfg.threads
    return d


def _space(given: dict[str, list[Any]] | None, ctx: StageContext, cores: int) -> dict[str, list[Any]]:
    """The default sweep with the given knobs replaced (a knob given an empty list is not swept)."""
    from .autotune import candidates

    space = candidates(ctx, cores)
    for knob, values in (given or {}).items():
        if knob not in ("num_threads", "prefetch", "batch_size", "hw_decoder_load"):
            raise OptionsError(f"cannot tune {knob!r}")
        if values and (knob != "hw_decoder_load" or ctx.cuda):  # no hardware decoder on CPU pipelines
            space[knob] = list(values)
        else:
            space.pop(knob, None)
    return space


def _checkpoint(result: dict[str, Any], out_path: Path | None) -> None:
    """Write what is measured so far: a run cut short (a time limit) still leaves its numbers."""
    if out_path is not None:
        report.write_json({**result, "partial": True}, out_path / "bench.json")


def _tune_path(tune_out: str | Path | None, out_dir: Path, preset: str, device: str, several: bool) -> Path:
    if tune_out is None:
        return out_dir / f"tuned-{preset}-{device}.yaml"
    text = str(tune_out)
    if "{preset}" in text:
        return Path(text.format(preset=preset, device=device))
    path = Path(text)
    return path.with_name(f"{path.stem}-{preset}{path.suffix}") if several else path


def run_bench(root: str | Path, *, presets: Sequence[str] = ("train-224", "eval-224"), split: str = "train",
              device: str = "auto", cores: int | None = None, batch_size: int | None = None,
              threads: int | None = None, workers: int | None = None, prefetch: int | None = None,
              hw_decoder_load: float | None = None, repeats: int = 3, warmup: int = 3, batches: int = 20,
              stages_wanted: Sequence[str] = DEFAULT_STAGES, parity: str = "both", model: str = "tiny",
              model_step: str | None = None, model_backends: Sequence[str] = ("dali",), ttfb_shards: int = 1024,
              ttfb_per_shard: int = 4, ttfb_repeats: int = 3, ttfb_tiny_images: bool = False, tune: bool = False,
              tune_repeats: int = 2,
              tune_space: dict[str, list[Any]] | None = None, tune_out: str | Path | None = None,
              out_dir: str | Path | None = "bench-out", plot: bool = True, print_table: bool = True,
              log: Callable[[str], None] = print, command: str | None = None, mode: str | Sequence[str] | None = None,
              size: int | Sequence[int] | None = None, quick: bool = False, out: str | Path | None = None
              ) -> dict[str, Any]:
    """Benchmark the loaders on the shards in ``root`` (one ``split``) and return every result.

    Each preset (``train-224``, ``eval-224``, ``eval-384``, or a YAML path) is measured stage by
    stage at ``cores`` CPUs (default: all this process may use), DALI threads = baseline workers =
    ``cores`` unless ``threads`` / ``workers`` say otherwise. ``tune_space`` narrows the auto-tune
    sweep (``{"num_threads": [4, 8], "batch_size": [256]}``; default: :func:`autotune.candidates`).
    With ``out_dir``, writes ``bench.json``, ``bench.png`` (``plot``) and tuned presets there;
    ``print_table`` prints the result table on stdout at the end.

    Conveniences: ``mode`` / ``size`` instead of ``presets`` (``mode="train", size=224``), ``out``
    for ``out_dir``, ``quick=True`` for a short look (2 repeats of 5 batches, 256 first-batch shards).
    Without ``batch_size``, a preset's batch size is lowered where a pass would hold fewer than
    ``warmup`` + 2 batches (small shard sets).
    """
    if mode is not None or size is not None:
        modes = [mode] if isinstance(mode, str) else mode
        sizes = [size] if isinstance(size, int) else size
        presets = resolve_presets(None, modes, sizes)
    out_dir = out if out is not None else out_dir
    if quick:
        repeats, warmup, batches, ttfb_shards = min(repeats, 2), min(warmup, 1), min(batches, 5), min(ttfb_shards, 256)
    wanted = set(stages_wanted)
    unknown = wanted - set(STAGES)
    if unknown:
        raise OptionsError(f"unknown stage(s) {sorted(unknown)}; known: {', '.join(STAGES)}")
    if tune:
        wanted.add("tune")
    if model_step:
        wanted.add("model")
    if parity not in PARITY:
        raise OptionsError(f"parity must be one of {PARITY}")
    shards = ShardSet.open(root, split)
    dev = _device(device)
    n_cores, pinned = _pin(cores)
    out_path = Path(out_dir) if out_dir is not None else None
    try:
        machine = machine_record(root, n_cores)
        result: dict[str, Any] = {
            "schema": "imagenet-pipe-bench/1", "command": command, "machine": machine,
            "settings": {"root": str(root), "split": split, "samples": shards.num_samples, "shards": len(shards.names),
                         "device": dev, "cores": n_cores, "repeats": repeats, "warmup_batches": warmup,
                         "timed_batches": batches, "stages": sorted(wanted), "parity": parity,
                         "jpeg_bytes_per_sample": round(stages.jpeg_bytes_per_sample(shards))},
            "presets": {}, "first_batch": None, "autotune": None}
        contexts: dict[str, StageContext] = {}
        for preset in presets:
            # thread counts: given > the preset's own (a tuned preset) > the cores; baseline workers
            # default to the DALI threads, so that both loaders get the same cores and as many workers
            base = resolve_config(preset)
            n_threads = threads or base.num_threads or n_cores
            n_workers = workers or base.num_workers or n_threads
            cfg = resolve_config(preset, device=dev, num_threads=n_threads, num_workers=n_workers,
                                 batch_size=batch_size, prefetch=prefetch, hw_decoder_load=hw_decoder_load)
            fits = max(1, shards.num_samples // (warmup + 2))
            if batch_size is None and cfg.batch_size > fits:  # a small shard set: keep some timed batches per pass
                cfg = replace(cfg, batch_size=fits)
            from ..loaders.common import resolve_device

            ctx = StageContext(shards, cfg, resolve_device(cfg, 0), warmup=warmup, batches=batches, repeats=repeats)
            contexts[preset] = ctx
            log(f"{preset} on {dev}, {n_cores} cores, batch {cfg.batch_size}, DALI threads {cfg.threads}, "
                f"baseline workers {cfg.num_workers}")
            result["presets"][Path(preset).stem] = run_preset(ctx, wanted, parity=parity, model=model,
                                                              model_step=model_step, model_backends=model_backends,
                                                              log=log)
            _checkpoint(result, out_path)
        if "ttfb" in wanted and ttfb_shards > 0 and contexts:
            from .first_batch import time_to_first_batch

            ctx = next(iter(contexts.values()))
            work = Path(tempfile.mkdtemp(prefix="imagenet-pipe-ttfb-"))  # thousands of tiny files: not in out_dir
            log(f"time to first batch: {ttfb_shards} shards x {ttfb_per_shard} samples")
            try:
                result["first_batch"] = time_to_first_batch(work, root, split, ctx.cfg, count=ttfb_shards,
                                                            per_shard=ttfb_per_shard, repeats=ttfb_repeats,
                                                            tiny_images=ttfb_tiny_images)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            _checkpoint(result, out_path)
        if "tune" in wanted:
            from .autotune import autotune

            result["autotune"] = {}
            for preset, ctx in contexts.items():
                log(f"auto-tune {preset}")
                dest = _tune_path(tune_out, out_path or Path("bench-out"), Path(preset).stem, dev, len(contexts) > 1)
                result["autotune"][Path(preset).stem] = autotune(replace(ctx, repeats=tune_repeats), n_cores,
                                                                 base_preset=preset, out_path=dest,
                                                                 space=_space(tune_space, ctx, n_cores), log=log)
        machine["load_average_end"] = load_average()
        result["goals"] = report.goals(result)
        if out_path is not None:
            result["outputs"] = {"json": str(out_path / "bench.json")}
            if plot:
                result["outputs"]["png"] = str(report.plot(result, out_path / "bench.png"))
            report.write_json(result, out_path / "bench.json")
        if print_table:
            print(report.table(result))
            if result.get("outputs"):
                print("\nwritten: " + ", ".join(result["outputs"].values()))
        return result
    finally:
        _unpin(pinned)
