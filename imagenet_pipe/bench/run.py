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
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from ..errors import OptionsError
from ..loaders.config import LoaderConfig, resolve_config
from ..loaders.shardset import ShardSet
from . import report, stages
from .machine import available_cpus, load_average, machine_record
from .options import BenchOptions
from .stages import StageContext, TimedLoader


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
    timed: dict[str, TimedLoader] = {}

    def build(name: str, backend: str, overrides: dict[str, Any]) -> dict[str, Any]:
        timed[name] = TimedLoader(ctx, backend, **overrides)
        return {"backend": backend, "build_s": round(timed[name].build_s, 3)}

    def one_pass(name: str) -> dict[str, Any]:
        timed[name].time_passes(1)
        return timed[name].summary()

    try:
        for name, (backend, overrides) in variants.items():
            rec.stage(f"{preset}/{name}", lambda n=name, b=backend, o=overrides: build(n, b, o), st, name)
        for _ in range(ctx.repeats):
            for name in variants:
                if name in timed and rec.stage(f"{preset}/{name}", lambda n=name: one_pass(n), st, name) is None:
                    timed.pop(name).close()
        for name in timed:
            rec.log(f"  {name}: {st[name]['img_s']['median']:,.0f} img/s")
    finally:
        for loader in timed.values():
            loader.close()


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


def run_preset(ctx: StageContext, options: BenchOptions, rec: Recorder, name: str) -> None:
    """Every wanted stage of one preset, into ``rec.result["presets"][name]``."""
    wanted = options.wanted
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
    variants = _loader_variants(ctx, wanted, options.parity)
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
    if options.model_step and "model" in wanted:
        out["model"] = []
        model, kind = options.model, options.model_step
        kind = kind if kind != "auto" else ("fwdbwd" if ctx.cfg.mode == "train" else "fwd")
        for backend in options.model_backends:
            rec.stage(f"{name}/model {backend}", lambda b=backend: stages.model_step(ctx, b, model, kind),
                      out["model"], None,
                      lambda m: f"  model {model} {kind} alone {m['model_alone_img_s']['median']:,.0f} img/s, fed "
                                f"by {m['backend']} {m['fed_img_s']['median']:,.0f} img/s")


def _cfg_json(cfg) -> dict[str, Any]:
    d = asdict(cfg)
    d["threads"] = cfg.threads
    return d


def _space(given: Mapping[str, Sequence[Any]], ctx: StageContext, cores: int) -> dict[str, list[Any]]:
    """The default sweep with the given knobs replaced (a knob given an empty list is not swept)."""
    from .autotune import candidates

    space = candidates(ctx, cores)
    for knob, values in given.items():
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


def _contexts(shards: ShardSet, options: BenchOptions, dev: str, n_cores: int) -> dict[str, StageContext]:
    """Each preset's resolved config, all before anything is measured (a bad preset fails at once).
    Thread counts: given > the preset's own (a tuned preset) > the cores; baseline workers default to
    the DALI threads, so that both loaders get the same cores and as many workers."""
    from ..loaders.common import resolve_device

    contexts = {}
    for preset in options.presets:
        base = resolve_config(preset)
        n_threads = options.threads or base.num_threads or n_cores
        n_workers = options.workers or base.num_workers or n_threads
        cfg = resolve_config(preset, device=dev, num_threads=n_threads, num_workers=n_workers,
                             batch_size=options.batch_size, prefetch=options.prefetch,
                             hw_decoder_load=options.hw_decoder_load)
        if options.batch_size is None:  # a small shard set: keep some timed batches per pass
            cfg = _fit_batch_size(shards, cfg, options.warmup + 2)
        contexts[preset] = StageContext(shards, cfg, resolve_device(cfg, 0), warmup=options.warmup,
                                        batches=options.batches, repeats=options.repeats)
    return contexts


def _fit_batch_size(shards: ShardSet, cfg: LoaderConfig, min_batches: int) -> LoaderConfig:
    """``cfg`` with its batch size capped at a ``min_batches``-th of the split, so that a small shard
    set still holds ``min_batches`` full batches (how many a pass yields is the loaders' business:
    the timing windows are sized from ``len(loader)``)."""
    cap = max(1, shards.num_samples // min_batches)
    return replace(cfg, batch_size=cap) if cfg.batch_size > cap else cfg


def _first_batch(rec: Recorder, ctx: StageContext, root: str | Path, options: BenchOptions) -> None:
    from .first_batch import time_to_first_batch

    def measure() -> dict[str, Any]:
        work = Path(tempfile.mkdtemp(prefix="imagenet-pipe-ttfb-"))  # thousands of tiny files: not in out_dir
        try:
            return time_to_first_batch(work, root, options.split, ctx.cfg, count=options.ttfb_shards,
                                       per_shard=options.ttfb_per_shard, repeats=options.ttfb_repeats,
                                       tiny_images=options.ttfb_tiny_images)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    rec.log(f"time to first batch: {options.ttfb_shards} shards x {options.ttfb_per_shard} samples")
    rec.stage("first_batch", measure, rec.result, "first_batch")


def _autotune(rec: Recorder, contexts: dict[str, StageContext], cores: int, repeats: int,
              space: Mapping[str, Sequence[Any]], destination: Callable[[str], Path]) -> None:
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


def run_bench(root: str | Path, options: BenchOptions | None = None, *, log: Callable[[str], None] = print
              ) -> dict[str, Any]:
    """Benchmark the loaders on the shards in ``root`` as :class:`BenchOptions` say, and return every
    result (also written to ``bench.json``, see the module docstring). ``log``: progress lines."""
    options = options or BenchOptions()
    wanted = options.wanted
    shards = ShardSet.open(root, options.split, options.cache_dir, options.cache_limit)
    dev = _device(options.device)
    n_cores, pinned = _pin(options.cores)
    out_path = Path(options.out_dir) if options.out_dir is not None else None
    try:
        contexts = _contexts(shards, options, dev, n_cores)
        rec = Recorder({
            "schema": "imagenet-pipe-bench/2", "command": options.command,
            "machine": machine_record(shards.root, n_cores),  # a bucket's: the disk of its shard cache
            "settings": {"root": str(root), "split": options.split, "samples": shards.num_samples,
                         "shards": len(shards.names), "device": dev, "cores": n_cores, "repeats": options.repeats,
                         "warmup_batches": options.warmup, "timed_batches": options.batches,
                         "stages": sorted(wanted), "parity": options.parity,
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
            run_preset(ctx, options, rec, Path(preset).stem)
        if "ttfb" in wanted and options.ttfb_shards > 0:
            _first_batch(rec, next(iter(contexts.values())), root, options)
        if "tune" in wanted:
            _autotune(rec, contexts, n_cores, options.tune_repeats, options.tune_space,
                      lambda name: _tune_path(options.tune_out, out_path or Path("bench-out"), name, dev,
                                              len(contexts) > 1))
        return _finish(rec, out_path, options.plot, options.print_table)
    finally:
        _unpin(pinned)
        shards.close()
