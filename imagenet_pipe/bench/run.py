"""``run_bench``: every stage for every preset in one run, at equal cores, with the machine record.

Every stage runs isolated: one that raises (a GPU-only model step, a first-batch or tuning run, a
missing optional library) is recorded in ``bench.json`` -- at its own place and in ``errors`` -- and
the run goes on. ``bench.json`` is rewritten (atomically) after every stage, marked ``partial``
until the run ends, so a run cut short by a time limit or Ctrl-C keeps everything measured before.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import traceback
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
from .timing import time_epochs


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


class Recorder:
    """The result being built, and its ``bench.json`` rewritten after every stage."""

    def __init__(self, result: dict[str, Any], out_path: Path | None, log: Callable[[str], None]) -> None:
        self.result, self.out_path, self.log = result, out_path, log
        result.setdefault("errors", [])

    def stage(self, name: str, measure: Callable[[], Any], into: dict | list | None = None, key: str | None = None,
              say: Callable[[Any], str] | None = None) -> Any:
        """Run one stage and store its result at ``into[key]`` (appended to a list ``into``). If it
        raises, store ``{"error": ...}`` there instead, list it in ``errors`` and return None."""
        try:
            value = measure()
        except Exception as e:  # isolation is the point: any failure of one stage is recorded, not fatal
            message = f"{type(e).__name__}: {e}".strip().splitlines()[0]
            self.result["errors"].append({"stage": name, "error": message,
                                          "traceback": traceback.format_exc(limit=-6)})
            self.log(f"  {name}: FAILED ({message}); the run goes on")
            value, stored = None, {"error": message}
        else:
            stored = value
            if say is not None:
                self.log(say(value))
        if isinstance(into, list):
            into.append(stored)
        elif into is not None:
            into[key] = stored
        self.checkpoint()
        return value

    def checkpoint(self, partial: bool = True) -> None:
        if self.out_path is not None:
            report.write_json({**self.result, "partial": partial}, self.out_path / "bench.json")


def _interleaved_loaders(ctx: StageContext, variants: dict[str, tuple[str, dict[str, Any]]], rec: Recorder,
                         preset: str, st: dict[str, Any]) -> None:
    """Full-loader passes, alternating between variants repeat by repeat, so that a slow spell on a
    shared machine lands on all of them rather than on one. A variant that fails is recorded and
    dropped; the others go on."""
    loaders: dict[str, Any] = {}
    built_s: dict[str, float] = {}
    rates: dict[str, list[float]] = {name: [] for name in variants}

    def build(name: str, backend: str, overrides: dict[str, Any]) -> dict[str, Any]:
        start = time.perf_counter()
        loaders[name] = stages.make_loader(ctx, backend, **overrides)
        built_s[name] = time.perf_counter() - start
        return {"backend": backend, "build_s": round(built_s[name], 3)}

    def one_pass(name: str, backend: str, overrides: dict[str, Any]) -> dict[str, Any]:
        ldr, cfg = loaders[name], replace(ctx.cfg, **overrides)
        window = stages.loader_window(ctx, backend, cfg, len(ldr))
        rates[name] += time_epochs(lambda: (b.images.shape[0] for b in ldr), warmup=window.warmup_batches,
                                   batches=window.timed_batches, repeats=1, sync=ctx.sync)
        return stages.loader_summary(backend, cfg, rates[name], window, built_s[name])

    try:
        for name, (backend, overrides) in variants.items():
            rec.stage(f"{preset}/{name}", lambda n=name, b=backend, o=overrides: build(n, b, o), st, name)
        for _ in range(ctx.repeats):
            for name, (backend, overrides) in variants.items():
                if name in loaders and rec.stage(f"{preset}/{name}", lambda n=name, b=backend, o=overrides:
                                                 one_pass(n, b, o), st, name) is None:
                    loaders.pop(name).close()
        for name in loaders:
            rec.log(f"  {name}: {st[name]['img_s']['median']:,.0f} img/s")
    finally:
        for ldr in loaders.values():
            ldr.close()


def _loader_variants(ctx: StageContext, wanted: set[str], parity: str) -> dict[str, tuple[str, dict[str, Any]]]:
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
    return variants


def run_preset(ctx: StageContext, wanted: set[str], rec: Recorder, name: str, *, parity: str = "both",
               model: str = "small", model_step: str | None = None, model_backends: Sequence[str] = ("dali",)) -> None:
    """Every wanted stage of one preset, into ``rec.result["presets"][name]``."""
    out: dict[str, Any] = {"config": _cfg_json(ctx.cfg), "stages": {}, "ratios": {}}
    rec.result["presets"][name] = out
    st = out["stages"]
    if "read" in wanted:
        rec.stage(f"{name}/read_files", lambda: stages.read_files(ctx), st, "read_files",
                  lambda r: f"  read: files {r['mb_s']['median']:,.0f} MB/s")
        rec.stage(f"{name}/read_dali", lambda: stages.read_dali(ctx), st, "read_dali",
                  lambda r: f"  read: DALI reader {r['img_s']['median']:,.0f} samples/s")
    if "decode" in wanted:
        rec.stage(f"{name}/decode", lambda: stages.decode(ctx), st, "decode",
                  lambda r: f"  decode only: {r['img_s']['median']:,.0f} img/s")
    if "resize" in wanted:
        rec.stage(f"{name}/decode_resize", lambda: stages.decode_resize(ctx), st, "decode_resize",
                  lambda r: f"  decode + crop/resize: {r['img_s']['median']:,.0f} img/s")
    variants = _loader_variants(ctx, wanted, parity)
    if variants:
        _interleaved_loaders(ctx, variants, rec, name, st)
    out["ratios"], out["ratios_withheld"] = report.ratios(st), report.withheld_ratios(st)
    if "memory" in wanted:
        from .memory import loader_memory

        rec.stage(f"{name}/memory", lambda: loader_memory(ctx), out, "memory",
                  lambda m: f"  DALI loader memory (running): host RSS {m['running']['rss_mb']:+,.0f} MiB")
    if "ops" in wanted:
        from .ops import op_costs

        rec.stage(f"{name}/ops", lambda: op_costs(ctx), out, "ops",
                  lambda r: f"  ops: {len(r.get('rows', {}))} pipelines profiled")
    if model_step and "model" in wanted:
        out["model"] = []
        kind = model_step if model_step != "auto" else ("fwdbwd" if ctx.cfg.mode == "train" else "fwd")
        for backend in model_backends:
            rec.stage(f"{name}/model {backend}", lambda b=backend: stages.model_step(ctx, b, model, kind),
                      out["model"], None,
                      lambda m: f"  model {model} {kind} alone {m['model_alone_img_s']['median']:,.0f} img/s, fed "
                                f"by {m['backend']} {m['fed_img_s']['median']:,.0f} img/s")


def _cfg_json(cfg) -> dict[str, Any]:
    d = asdict(cfg)
    d["threads"] = cfg.threads
    return d


TUNABLE = ("num_threads", "prefetch", "batch_size", "hw_decoder_load")


def _space(given: dict[str, list[Any]] | None, ctx: StageContext, cores: int) -> dict[str, list[Any]]:
    """The default sweep with the given knobs replaced (a knob given an empty list is not swept)."""
    from .autotune import candidates

    space = candidates(ctx, cores)
    for knob, values in (given or {}).items():
        if values and (knob != "hw_decoder_load" or ctx.cuda):  # no hardware decoder on CPU pipelines
            space[knob] = list(values)
        else:
            space.pop(knob, None)
    return space


def _tune_path(tune_out: str | Path | None, out_dir: Path, preset: str, device: str, several: bool) -> Path:
    if tune_out is None:
        return out_dir / f"tuned-{preset}-{device}.yaml"
    text = str(tune_out)
    if "{preset}" in text:
        return Path(text.format(preset=preset, device=device))
    path = Path(text)
    return path.with_name(f"{path.stem}-{preset}{path.suffix}") if several else path


def _contexts(presets: Sequence[str], shards: ShardSet, dev: str, n_cores: int, *, threads: int | None,
              workers: int | None, batch_size: int | None, prefetch: int | None, hw_decoder_load: float | None,
              warmup: int, batches: int, repeats: int) -> dict[str, StageContext]:
    """Each preset's resolved config, all before anything is measured (a bad preset fails at once).
    Thread counts: given > the preset's own (a tuned preset) > the cores; baseline workers default to
    the DALI threads, so that both loaders get the same cores and as many workers."""
    from ..loaders.common import resolve_device

    contexts = {}
    for preset in presets:
        base = resolve_config(preset)
        n_threads = threads or base.num_threads or n_cores
        n_workers = workers or base.num_workers or n_threads
        cfg = resolve_config(preset, device=dev, num_threads=n_threads, num_workers=n_workers,
                             batch_size=batch_size, prefetch=prefetch, hw_decoder_load=hw_decoder_load)
        fits = max(1, shards.num_samples // (warmup + 2))
        if batch_size is None and cfg.batch_size > fits:  # a small shard set: keep some timed batches per pass
            cfg = replace(cfg, batch_size=fits)
        contexts[preset] = StageContext(shards, cfg, resolve_device(cfg, 0), warmup=warmup, batches=batches,
                                        repeats=repeats)
    return contexts


def _first_batch(rec: Recorder, ctx: StageContext, root: str | Path, split: str, count: int, per_shard: int,
                 repeats: int, tiny_images: bool) -> None:
    from .first_batch import time_to_first_batch

    def measure() -> dict[str, Any]:
        work = Path(tempfile.mkdtemp(prefix="imagenet-pipe-ttfb-"))  # thousands of tiny files: not in out_dir
        try:
            return time_to_first_batch(work, root, split, ctx.cfg, count=count, per_shard=per_shard,
                                       repeats=repeats, tiny_images=tiny_images)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    rec.log(f"time to first batch: {count} shards x {per_shard} samples")
    rec.stage("first_batch", measure, rec.result, "first_batch")


def _autotune(rec: Recorder, contexts: dict[str, StageContext], cores: int, repeats: int,
              space: dict[str, list[Any]] | None, destination: Callable[[str], Path]) -> None:
    from .autotune import autotune

    rec.result["autotune"] = {}
    for preset, ctx in contexts.items():
        name = Path(preset).stem
        rec.log(f"auto-tune {preset}")
        rec.stage(f"autotune {name}", lambda p=preset, c=ctx: autotune(
            replace(c, repeats=repeats), cores, base_preset=p, out_path=destination(Path(p).stem),
            space=_space(space, c, cores), log=rec.log), rec.result["autotune"], name)


def _finish(rec: Recorder, out_path: Path | None, plot: bool, print_table: bool) -> dict[str, Any]:
    """The final bench.json first, then the plot (optional: matplotlib is an extra), then the table."""
    result = rec.result
    result["machine"]["load_average_end"] = load_average()
    if out_path is not None:
        result["outputs"] = {"json": str(out_path / "bench.json")}
        rec.checkpoint(partial=False)
        if plot:
            png = rec.stage("plot", lambda: report.plot(result, out_path / "bench.png"))
            if png is not None:
                result["outputs"]["png"] = str(png)
            elif not any(e["stage"] == "plot" for e in result["errors"]):
                result["outputs"]["png_skipped"] = "matplotlib is not installed (pip install 'imagenet-pipe[plot]')"
        rec.checkpoint(partial=False)
    result["partial"] = False
    if print_table:
        print(report.table(result))
        if result.get("outputs"):
            print("\nwritten: " + ", ".join(v for k, v in result["outputs"].items() if k != "png_skipped"))
        if "png_skipped" in result.get("outputs", {}):
            print(f"no plot: {result['outputs']['png_skipped']}")
    return result


def run_bench(root: str | Path, *, presets: Sequence[str] = ("train-224", "eval-224"), split: str = "train",
              device: str = "auto", cores: int | None = None, batch_size: int | None = None,
              threads: int | None = None, workers: int | None = None, prefetch: int | None = None,
              hw_decoder_load: float | None = None, repeats: int = 3, warmup: int = 3, batches: int = 20,
              stages_wanted: Sequence[str] = DEFAULT_STAGES, parity: str = "both", model: str = "small",
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
    ``cores`` unless ``threads`` / ``workers`` say otherwise. Loaders are timed in steady state:
    ``warmup`` and ``batches`` are raised to drain each loader's prefetch queue and to span
    several queues (:func:`timing.steady_window`); a split too small for that gets no ratios.
    ``tune_space`` narrows the auto-tune sweep (``{"num_threads": [4, 8], "batch_size": [256]}``;
    default: :func:`autotune.candidates`). With ``out_dir``, writes ``bench.json`` after every stage,
    ``bench.png`` (``plot``, when matplotlib is installed) and tuned presets there; ``print_table``
    prints the result table on stdout at the end. A stage that raises is recorded (``errors``) and
    skipped.

    Conveniences: ``mode`` / ``size`` instead of ``presets`` (``mode="train", size=224``), ``out``
    for ``out_dir``, ``quick=True`` for a short look (2 repeats of 5 batches, 256 first-batch shards).
    Without ``batch_size``, a preset's batch size is lowered where a pass would hold fewer than
    ``warmup`` + 2 batches (small shard sets).
    """
    if mode is not None or size is not None:
        presets = resolve_presets(None, [mode] if isinstance(mode, str) else mode,
                                  [size] if isinstance(size, int) else size)
    out_dir = out if out is not None else out_dir
    if quick:
        repeats, warmup, batches, ttfb_shards = min(repeats, 2), min(warmup, 1), min(batches, 5), min(ttfb_shards, 256)
    wanted = set(stages_wanted) | ({"tune"} if tune else set()) | ({"model"} if model_step else set())
    unknown = wanted - set(STAGES)
    if unknown:
        raise OptionsError(f"unknown stage(s) {sorted(unknown)}; known: {', '.join(STAGES)}")
    if parity not in PARITY:
        raise OptionsError(f"parity must be one of {PARITY}")
    if set(tune_space or {}) - set(TUNABLE):
        raise OptionsError(f"cannot tune {sorted(set(tune_space or {}) - set(TUNABLE))}; tunable: {', '.join(TUNABLE)}")
    shards = ShardSet.open(root, split)
    dev = _device(device)
    n_cores, pinned = _pin(cores)
    out_path = Path(out_dir) if out_dir is not None else None
    try:
        contexts = _contexts(presets, shards, dev, n_cores, threads=threads, workers=workers, batch_size=batch_size,
                             prefetch=prefetch, hw_decoder_load=hw_decoder_load, warmup=warmup, batches=batches,
                             repeats=repeats)
        rec = Recorder({
            "schema": "imagenet-pipe-bench/2", "command": command, "machine": machine_record(root, n_cores),
            "settings": {"root": str(root), "split": split, "samples": shards.num_samples, "shards": len(shards.names),
                         "device": dev, "cores": n_cores, "repeats": repeats, "warmup_batches": warmup,
                         "timed_batches": batches, "stages": sorted(wanted), "parity": parity,
                         "jpeg_bytes_per_sample": round(stages.jpeg_bytes_per_sample(shards))},
            "decoder_backends": None, "presets": {}, "first_batch": None, "autotune": None}, out_path, log)
        rec.checkpoint()
        if "backends" in wanted:
            from .backends import decoder_backends

            log("decoder backends")
            rec.stage("decoder_backends", lambda: decoder_backends(next(iter(contexts.values()))), rec.result,
                      "decoder_backends", lambda r: f"  ran: {', '.join(r['ran'])}"
                                                    + "".join(f"; FALLBACK: {f}" for f in r["fallback"]))
        for preset, ctx in contexts.items():
            log(f"{preset} on {dev}, {n_cores} cores, batch {ctx.cfg.batch_size}, DALI threads {ctx.cfg.threads}, "
                f"baseline workers {ctx.cfg.num_workers}")
            run_preset(ctx, wanted, rec, Path(preset).stem, parity=parity, model=model, model_step=model_step,
                       model_backends=model_backends)
        if "ttfb" in wanted and ttfb_shards > 0:
            _first_batch(rec, next(iter(contexts.values())), root, split, ttfb_shards, ttfb_per_shard, ttfb_repeats,
                         ttfb_tiny_images)
        if "tune" in wanted:
            _autotune(rec, contexts, n_cores, tune_repeats, tune_space,
                      lambda name: _tune_path(tune_out, out_path or Path("bench-out"), name, dev, len(contexts) > 1))
        return _finish(rec, out_path, plot, print_table)
    finally:
        _unpin(pinned)
