"""Raw download -> globally shuffled, equal-sized WebDataset shards plus every consumer's index.

:func:`convert` runs four resumable phases, each a module of plain functions over typed records,
all state kept in ``<out>/.imagenet-pipe-work/`` (:mod:`.workdir`):

1. :mod:`.scan`: the layout's reader lists every sample into a catalog sorted by (split, key);
2. :mod:`.inspection` (parallel, chunked): every image read once and passed through
   :mod:`.hygiene`; repaired bytes kept, undecodable files quarantined with a reason;
3. :mod:`.plan`: per split, the good samples permuted with the seed and cut into shards whose
   lengths differ by at most one;
4. :mod:`.write` (parallel, one shard per task): each shard a pure function of the plan.

So the bytes depend only on the inputs, the options and the seed: not on ``--workers``, and not
on whether the run was interrupted (``kill -9``) and resumed. Finally the indexes for timm
(``_info.json``), wids, open_clip (``sizes.json``), the class table, the dataset card
(:mod:`.indexes`) and ``manifest.json`` (:mod:`.manifest`) are written from the shard records,
without re-reading any shard.

Dataset presets (``configs/datasets/<dataset>.yaml``) may also set ``image_flags`` (pixel facts
that inspection reports into each sample's json, e.g. ``all_black``) and ``alt_splits`` (extra
timm splits over the same shards that train/evaluate on another int json field, e.g.
``validation_200`` with ``alt_label: label_200``). A reader may choose the label space itself
(:attr:`Source.class_list`, e.g. from a ``class_list`` dataset option).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..classes import ClassTable
from ..config import load_preset
from ..files import atomic_write
from ..format import MANIFEST, TRASH_DIR, WORK_DIR, shard_pattern
from ..sources import SourceError, source_fingerprint
from .executors import make_executor
from .indexes import write_indexes
from .inspection import inspect
from .manifest import build_manifest, log_summary
from .options import ConvertError, ConvertOptions, resolve_options
from .plan import plan_shards
from .scan import scan
from .workdir import discard_work, output_lock, prepare_work, read_previous, remove_previous
from .workers import Executor
from .write import WriteTask, write_shards
from .writer import ShardSink


@dataclass(frozen=True)
class RunSettings:
    """How a run goes, as opposed to what it writes (:class:`ConvertOptions`)."""

    executor: Executor  # where the scan's listings, inspect and write tasks run
    progress: bool = True
    log: Callable[[str], None] = print
    strict: bool = False  # the reader's warnings are errors
    allow_empty_splits: bool = False  # write the other splits when every sample of one is quarantined
    keep_work: bool = False  # keep the work folder of a finished conversion
    sink: ShardSink | None = None  # where finished shards go (e.g. a bucket)


def convert(dataset: str, source: Path | str, out: Path | str, *, workers: int | None = None,
            executor: str | Executor = "local", ray_address: str | None = None, overwrite: bool = False,
            progress: bool = True, keep_work: bool = False, strict: bool = False, allow_empty_splits: bool = False,
            log: Callable[[str], None] | None = None, sink: ShardSink | None = None, **options: Any) -> dict[str, Any]:
    """Convert a raw download in ``source`` into shards in ``out``; returns the manifest.

    ``options`` are those of :func:`resolve_options` (splits, seed, shard_size, num_shards, layout,
    real_labels, hygiene). Rerunning after an interruption resumes (from scratch if the source
    changed meanwhile); rerunning a finished conversion with the same options does nothing.
    ``strict``: refuse archives with warnings (a tar without its end-of-archive blocks);
    ``allow_empty_splits``: write the other splits when every sample of one is quarantined.
    ``sink``: each finished shard is handed to it (and leaves ``out``); on a rerun, shards the
    sink holds are not written again. ``executor``: where the tasks run, ``"local"`` processes
    (``workers`` of them, default one per CPU) or ``"ray"``, the Ray cluster at ``ray_address``
    (``workers`` tasks at a time, default the cluster's CPUs; source and ``out`` at the same path
    on every node), or an :class:`~.workers.Executor`; the output bytes are the same.
    """
    log = log or _to_stderr
    with make_executor(executor, workers=workers, address=ray_address, log=log) as chosen:
        settings = RunSettings(chosen, progress, log, strict, allow_empty_splits, keep_work, sink)
        return _convert(dataset, Path(source), Path(out).absolute(), overwrite, settings, options)


def _convert(dataset: str, source: Path, out: Path, overwrite: bool, settings: RunSettings,
             options: dict[str, Any]) -> dict[str, Any]:
    opts = resolve_options(dataset, source, **options)
    preset = load_preset(dataset, "datasets")
    out.mkdir(parents=True, exist_ok=True)
    work = out / WORK_DIR
    with output_lock(out):
        shutil.rmtree(out / TRASH_DIR, ignore_errors=True)  # a clean-up killed part-way
        if not Path(opts.source).is_dir():
            raise SourceError(f"source {opts.source} is not a directory: pass the folder holding the download")
        files = source_fingerprint(Path(opts.source), exclude=out)
        previous = None
        if (out / MANIFEST).exists() and not work.exists():
            previous = read_previous(out, overwrite, preset)
            if not overwrite:
                return _unchanged(previous, opts, files, out, settings.log)
        prepare_work(work, opts, files, overwrite, settings.log)
        remove_previous(out, work, previous)
        return _run(opts, preset, out, files, settings)


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _unchanged(previous: dict[str, Any], opts: ConvertOptions, files: dict[str, str], out: Path,
               log: Callable[[str], None]) -> dict[str, Any]:
    """The finished conversion in ``out`` when it is this one (nothing to do), else an error."""
    if previous.get("options") != opts.to_json():
        raise ConvertError(f"{out} holds a different conversion ({MANIFEST}); pass --overwrite to replace it")
    if previous.get("source_files", files) != files:
        raise ConvertError(f"{out} holds this conversion, but files in {opts.source} changed since "
                           f"({MANIFEST}); pass --overwrite to convert them again")
    log(f"{out} already holds this conversion ({MANIFEST}); nothing to do")
    return previous


def _run(opts: ConvertOptions, preset: dict[str, Any], out: Path, files: dict[str, str],
         settings: RunSettings) -> dict[str, Any]:
    """The phases, in a prepared work folder; the manifest."""
    work, log, timings = out / WORK_DIR, settings.log, {}
    started = time.perf_counter()
    catalog, scanned = scan(opts, work, preset["class_list"], executor=settings.executor, strict=settings.strict,
                            progress=settings.progress, log=log)
    classes = ClassTable.load(scanned.class_list)  # the reader may choose it (21K)
    timings["scan"] = time.perf_counter() - started
    inspections = inspect(catalog, opts.hygiene, work, executor=settings.executor, progress=settings.progress,
                          log=log)
    timings["inspect"] = time.perf_counter() - started - timings["scan"]
    plan = plan_shards(catalog, inspections, opts, preset["prefix"], allow_empty_splits=settings.allow_empty_splits,
                       log=log)
    task = WriteTask(catalog, inspections, classes.wnids, out, work / "shards")
    write_started = time.perf_counter()
    records = write_shards(plan, task, shard_pattern(preset["prefix"], preset["splits"]), executor=settings.executor,
                           sink=settings.sink, progress=settings.progress, log=log)
    timings["write"] = time.perf_counter() - write_started
    manifest = build_manifest(opts=opts, preset=preset, classes=classes, scan=scanned, catalog=catalog,
                              inspections=inspections, plan=plan, records=records, source_files=files)
    write_indexes(out, manifest, classes)
    atomic_write(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    log_summary(manifest, log)
    if not settings.keep_work:
        discard_work(out, work)
    total = time.perf_counter() - started
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
    log(f"done in {total:.1f} s ({phases}; {len(catalog) / max(total, 1e-9):.0f} images/s, "
        f"{sum(r.bytes for r in records) / max(total, 1e-9) / 1e6:.0f} MB/s written)")
    return manifest
