"""Raw download -> globally shuffled, equal-sized WebDataset shards plus every consumer's index.

The conversion runs in four resumable steps, all state kept in ``<out>/.imagenet-pipe-work/``:

1. **scan**: the layout's reader lists every sample (label + byte location, no image bytes) into a
   columnar catalog sorted by (split, key), so nothing depends on archive member order;
2. **inspect** (parallel, chunked): every image is read once and passed through :mod:`hygiene`;
   changed bytes go to per-chunk fixup files, undecodable files are quarantined with a reason;
3. **plan**: per split, the good samples are permuted with the seed and cut into shards whose
   lengths differ by at most one;
4. **write** (parallel, one shard per task): each shard is a pure function of the plan, written
   under a temporary name and renamed when complete, with its DALI ``.idx``.

So the bytes depend only on the inputs, the options and the seed: not on ``--workers``, and not
on whether the run was interrupted (``kill -9``) and resumed. Finally the indexes for timm
(``_info.json``), wids, open_clip (``sizes.json``), the class table and ``manifest.json`` are
written from the shard records, without re-reading any shard.

Dataset presets (``configs/datasets/<dataset>.yaml``) may also set ``image_flags`` (pixel facts
that inspection reports into each sample's json, e.g. ``all_black``) and ``alt_splits`` (extra
timm splits over the same shards that train/evaluate on another int json field, e.g.
``validation_200`` with ``alt_label: label_200``). A reader may choose the label space itself
(:attr:`Source.class_list`, e.g. from a ``class_list`` dataset option).
"""

from __future__ import annotations

import ctypes
import fcntl
import fnmatch
import json
import math
import multiprocessing as mp
import os
import re
import shutil
import signal
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .. import __version__
from ..classes import ClassTable
from ..config import load_preset
from ..errors import ArchiveError, ImagenetPipeError, ShardError
from ..files import atomic_write
from ..format import (
    CARD_FILE,
    CLASSES_FILE,
    INFO_FILES,
    MANIFEST,
    SIZES_FILE,
    TRASH_DIR,
    WORK_DIR,
    ShardRecord,
    idx_name,
    read_json,
    shard_name,
    shard_pattern,
    wids_name,
)
from ..sources import SourceError, open_source, source_fingerprint
from ..sources.archive import KIND_FILE, ByteReader, TooLarge
from .catalog import Catalog
from .hygiene import BadImage, HygienePolicy, clean
from .writer import ShardSink, ShardWriter

CHUNK = 256  # samples per inspection task
OK, BAD = 1, 2
# split names end up in shard, index and DALI .idx file names: no dots (DALI cuts names at the first
# dot), no spaces; '-' and '_' are fine (e.g. ImageNet-C's 'gaussian_noise-3')
SAFE_SPLIT = re.compile(r"^[A-Za-z0-9_-]+$")


class ConvertError(ImagenetPipeError):
    """A conversion cannot start or finish; the message says what to do."""


@dataclass(frozen=True)
class ConvertOptions:
    """Everything that determines the output bytes (``--workers`` deliberately does not)."""

    dataset: str
    source: str
    splits: tuple[str, ...]
    seed: int = 0
    shard_size: dict[str, int] = field(default_factory=dict)
    num_shards: dict[str, int] = field(default_factory=dict)
    layout: str | None = None
    real_labels: bool = True
    hygiene: HygienePolicy = field(default_factory=HygienePolicy)
    dataset_options: dict[str, Any] = field(default_factory=dict)  # passed to the layout's reader

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["splits"] = list(self.splits)
        d["hygiene"]["flags"] = list(self.hygiene.flags)  # compared with the JSON read back on reruns
        return d


def resolve_options(dataset: str, source: Path, *, splits: Iterable[str] | None = None, seed: int = 0,
                    shard_size: int | dict[str, int] | None = None,
                    num_shards: int | dict[str, int] | None = None, layout: str | None = None,
                    real_labels: bool = True, hygiene: HygienePolicy | None = None,
                    dataset_options: dict[str, Any] | None = None) -> ConvertOptions:
    """Merge the dataset preset (``configs/datasets/<dataset>.yaml``) with explicit options."""
    preset = load_preset(dataset, "datasets")
    chosen = _expand_splits(list(splits), preset["splits"]) if splits else tuple(preset["splits"])
    unknown = [s for s in chosen if s not in preset["splits"]]
    if unknown:
        raise ConvertError(f"{dataset} has no split(s) {unknown}; known: {preset['splits']}")
    unsafe = [s for s in chosen if not SAFE_SPLIT.match(s)]
    if unsafe:
        raise ConvertError(f"split name(s) {unsafe} are not usable in file names: use [A-Za-z0-9_-] only")
    per_split_size = _per_split(shard_size, chosen, "shard_size") if shard_size is not None else {}
    per_split_count = _per_split(num_shards, chosen, "num_shards") if num_shards is not None else {}
    preset_size = _per_split(preset["shard_size"], chosen)  # one number, or one per split
    for split in chosen:  # splits given neither a size nor a count keep the preset's size
        if split not in per_split_size and split not in per_split_count:
            per_split_size[split] = preset_size[split]
    for name, table in (("shard size", per_split_size), ("number of shards", per_split_count)):
        if any(v < 1 for v in table.values()):
            raise ConvertError(f"{name} must be at least 1, got {table}")
    hygiene = hygiene or HygienePolicy()
    if not hygiene.flags and preset.get("image_flags"):
        hygiene = replace(hygiene, flags=tuple(preset["image_flags"]))
    return ConvertOptions(dataset, str(Path(source).resolve()), chosen, seed, per_split_size, per_split_count,
                          layout, real_labels, hygiene, dict(dataset_options or {}))


def _expand_splits(requested: list[str], known: list[str]) -> tuple[str, ...]:
    """Split names, where a glob pattern stands for the matching preset splits in preset order
    (ImageNet-C: ``gaussian_noise-*`` for the five severities of one corruption)."""
    out: list[str] = []
    for name in requested:
        if any(ch in name for ch in "*?["):
            matches = [s for s in known if fnmatch.fnmatchcase(s, name)]
            if not matches:
                raise ConvertError(f"split pattern {name!r} matches none of {known}")
            out += [m for m in matches if m not in out]
        elif name not in out:
            out.append(name)
    return tuple(out)


def _per_split(value: int | dict[str, int], splits: tuple[str, ...], what: str | None = None) -> dict[str, int]:
    """One number for every split, or ``{split: number}`` for some of them. With ``what`` (a user's
    option, not the preset), naming a split that is not converted is an error: most likely a typo."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(splits))
        if unknown and what:
            raise ConvertError(f"{what} names split(s) {unknown} that are not being converted ({list(splits)})")
        return {s: int(value[s]) for s in splits if s in value}
    return {s: int(value) for s in splits}


# --- worker side ------------------------------------------------------------------------------
# Pool workers are forked after the state below is set, so the catalog is shared copy-on-write.

_STATE: dict[str, Any] = {}


def _worker_init() -> None:
    # die with the parent: an orphan still writing a shard would race a resumed run
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _reader() -> ByteReader:
    containers = _STATE["catalog"].containers
    # one reader per process and per container list (fixup files are added between phases)
    key = (os.getpid(), id(containers), len(containers.entries))
    if _STATE.get("reader_key") != key:
        if "reader" in _STATE and _STATE.get("reader_key", (None,))[0] == os.getpid():
            _STATE["reader"].close()
        _STATE["reader"], _STATE["reader_key"] = ByteReader(containers), key
    return _STATE["reader"]


# testing knob: slow every read down so that tests can kill a conversion part-way (DEVELOPERS.md)
_SLOW_READ_S = float(os.environ.get("IMAGENET_PIPE_SLOW_READ_S", "0"))


def _read_raw(i: int, max_bytes: int | None = None) -> bytes:
    if _SLOW_READ_S:
        time.sleep(_SLOW_READ_S)
    c = _STATE["catalog"].columns
    return _reader().read(int(c["cid"][i]), int(c["offset"][i]), int(c["size"][i]), c["member"][i], max_bytes)


def _inspect_chunk(chunk_id: int) -> tuple[int, int, int]:
    """Inspect one chunk; persist its results (and fixed bytes) atomically. -> (id, samples, bytes)."""
    idx = _STATE["chunks"][chunk_id]
    policy: HygienePolicy = _STATE["policy"]
    inspect_dir: Path = _STATE["work"] / "inspect"
    n = len(idx)
    status = np.zeros(n, np.int8)
    width, height = np.zeros(n, np.int32), np.zeros(n, np.int32)
    fix_off, fix_size = np.full(n, -1, np.int64), np.zeros(n, np.int64)
    notes = [""] * n  # json list of hygiene actions, or the quarantine reason
    flags = [""] * n  # json object of image flags (policy.flags), if any
    tag = f"{chunk_id:06d}"
    fix_tmp = inspect_dir / f"{tag}.fix.partial-{os.getpid()}"
    nbytes = 0
    with open(fix_tmp, "wb") as fix:
        for j, i in enumerate(idx):
            try:
                data = _read_raw(int(i), policy.max_file_bytes)
            except TooLarge as e:  # memory stays bounded whatever the input
                status[j], notes[j] = BAD, f"too large: {e}"
                continue
            except ArchiveError as e:  # e.g. a zip member failing its CRC, a file without read permission
                status[j], notes[j] = BAD, f"unreadable: {e}"
                continue
            nbytes += len(data)
            try:
                img = clean(data, policy)
            except BadImage as e:
                status[j], notes[j] = BAD, str(e)
                continue
            status[j], width[j], height[j] = OK, img.width, img.height
            if img.flags:
                flags[j] = json.dumps(img.flags, sort_keys=True)
            if img.changed:
                fix_off[j], fix_size[j] = fix.tell(), len(img.data)
                fix.write(img.data)
                notes[j] = json.dumps(img.actions)
        has_fixes = fix.tell() > 0
    if has_fixes:
        os.replace(fix_tmp, inspect_dir / f"{tag}.fix")
    else:
        fix_tmp.unlink()
    npz_tmp = inspect_dir / f"{tag}.partial-{os.getpid()}.npz"
    np.savez(npz_tmp, idx=idx, status=status, width=width, height=height, fix_off=fix_off,
             fix_size=fix_size, notes=np.frombuffer(json.dumps(notes).encode(), np.uint8),
             flags=np.frombuffer(json.dumps(flags).encode(), np.uint8))
    os.replace(npz_tmp, inspect_dir / f"{tag}.npz")
    return chunk_id, n, nbytes


def _write_shard(task: tuple[str, str, np.ndarray]) -> ShardRecord:
    split, name, indices = task
    cat: Catalog = _STATE["catalog"]
    c = cat.columns
    res = _STATE["results"]
    classes: ClassTable = _STATE["classes"]
    out: Path = _STATE["out"]
    writer = ShardWriter(out, name, split, tmp_suffix=f".partial-{os.getpid()}")
    try:
        for i in indices:
            i = int(i)
            if res["fix_cid"][i] >= 0:
                data = _reader().read(int(res["fix_cid"][i]), int(res["fix_off"][i]), int(res["fix_size"][i]), "")
            else:
                data = _read_raw(i)
            label = int(c["label"][i])
            meta: dict[str, Any] = {"label": label, "wnid": classes.wnids[label] if label >= 0 else None,
                                    "width": int(res["width"][i]), "height": int(res["height"][i]),
                                    "filename": c["filename"][i]}
            extra = c["extra"][i]
            if extra:
                meta.update(json.loads(extra))
            meta.update(res["flags"].get(i, {}))
            meta["hygiene"] = res["actions"].get(i, [])  # always there: one schema for every sample (HF)
            writer.write(c["key"][i], {"cls": str(label).encode(), "jpg": data, "json": json.dumps(meta).encode()})
        record = writer.close()
    except BaseException:
        writer.abort()
        raise
    atomic_write(_STATE["work"] / "shards" / f"{name}.json", json.dumps(asdict(record)))
    return record


# --- parent side --------------------------------------------------------------------------------

def convert(dataset: str, source: Path | str, out: Path | str, *, workers: int | None = None,
            overwrite: bool = False, progress: bool = True, keep_work: bool = False, strict: bool = False,
            allow_empty_splits: bool = False, log: Callable[[str], None] | None = None, sink: ShardSink | None = None,
            **options) -> dict[str, Any]:
    """Convert a raw download in ``source`` into shards in ``out``; returns the manifest.

    ``options`` are those of :func:`resolve_options` (splits, seed, shard_size, num_shards, layout,
    real_labels, hygiene). Rerunning after an interruption resumes (from scratch if the source
    changed meanwhile); rerunning a finished conversion with the same options does nothing.
    ``strict``: refuse archives with warnings (a tar without its end-of-archive blocks);
    ``allow_empty_splits``: write the other splits when every sample of one is quarantined.
    ``sink``: each finished shard is handed to it (and leaves ``out``); on a rerun, shards the
    sink holds are not written again.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    opts = resolve_options(dataset, Path(source), **options)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / WORK_DIR
    workers = max(1, workers or os.cpu_count() or 1)
    with _lock(out):
        shutil.rmtree(out / TRASH_DIR, ignore_errors=True)  # a clean-up killed part-way
        if not Path(opts.source).is_dir():
            raise SourceError(f"source {opts.source} is not a directory: pass the folder holding the download")
        files = source_fingerprint(Path(opts.source), exclude=out)
        manifest_path = out / MANIFEST
        previous = None
        if manifest_path.exists() and not work.exists():
            previous = _previous_manifest(manifest_path, overwrite, load_preset(dataset, "datasets"))
            if previous.get("options") == opts.to_json() and not overwrite:
                if previous.get("source_files", files) != files:
                    raise ConvertError(f"{out} holds this conversion, but files in {opts.source} changed since "
                                       f"({MANIFEST}); pass --overwrite to convert them again")
                log(f"{out} already holds this conversion ({MANIFEST}); nothing to do")
                return previous
            if not overwrite:
                raise ConvertError(f"{out} holds a different conversion ({MANIFEST}); pass --overwrite to replace it")
        _prepare_work(work, opts, files, overwrite, log)
        _remove_previous(out, work, previous)
        run = _Run(opts, out, work, workers, progress, log, files, strict=strict, allow_empty_splits=allow_empty_splits,
                   sink=sink)
        return run.execute(keep_work)


class _Run:
    def __init__(self, opts: ConvertOptions, out: Path, work: Path, workers: int, progress: bool,
                 log: Callable[[str], None], source_files: dict[str, str], strict: bool = False,
                 allow_empty_splits: bool = False, sink: ShardSink | None = None) -> None:
        self.opts, self.out, self.work, self.workers, self.progress, self.log = opts, out, work, workers, progress, log
        self.source_files, self.strict, self.allow_empty_splits = source_files, strict, allow_empty_splits
        self.sink = sink
        self.preset = load_preset(opts.dataset, "datasets")
        self.timings: dict[str, float] = {}

    def execute(self, keep_work: bool) -> dict[str, Any]:
        t0 = time.perf_counter()
        catalog, scan_info = self.scan()
        self.classes = ClassTable.load(scan_info["class_list"])  # the reader may choose it (21K)
        self.timings["scan"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        results = self.inspect(catalog)
        self.timings["inspect"] = time.perf_counter() - t1
        plan = self.plan(catalog, results)
        t2 = time.perf_counter()
        records = self.write(catalog, results, plan)
        self.timings["write"] = time.perf_counter() - t2
        manifest = self.finalize(catalog, results, plan, records, scan_info)
        if not keep_work:
            # rename first: a clean-up killed part-way must not leave a work folder that looks unfinished
            os.replace(self.work, self.out / TRASH_DIR)
            shutil.rmtree(self.out / TRASH_DIR)
        total = time.perf_counter() - t0
        written = sum(r.bytes for r in records)
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items())
        self.log(f"done in {total:.1f} s ({phases}; {len(catalog) / max(total, 1e-9):.0f} images/s, "
                 f"{written / max(total, 1e-9) / 1e6:.0f} MB/s written)")
        return manifest

    # 1. scan ------------------------------------------------------------------------------------
    def scan(self) -> tuple[Catalog, dict]:
        catalog_path, info_path = self.work / "catalog.npz", self.work / "scan.json"
        if catalog_path.exists() and info_path.exists():
            self.log(f"resuming: catalog of {self.opts.source} already scanned")
            return Catalog.load(catalog_path), self._check_warnings(json.loads(info_path.read_text()))
        src = open_source(self.opts.dataset, Path(self.opts.source), self.work, self.opts.layout,
                          real_labels=self.opts.real_labels, **self.opts.dataset_options)
        self.log(f"scanning {self.opts.source} ({self.opts.dataset}, {src.layout} layout) ...")
        from ..sources.archive import Containers

        containers = Containers()
        entries = src.scan(list(self.opts.splits), containers)
        if self.progress:
            entries = tqdm(entries, desc="scan", unit=" files", mininterval=1.0, disable=not self.progress)
        catalog = Catalog.build(entries, containers, list(self.opts.splits))
        if len(catalog) == 0:
            raise ConvertError(f"no samples found in {self.opts.source} for splits {list(self.opts.splits)}")
        info = {"layout": src.layout, "ignored": [{"file": f, "reason": r} for f, r in src.ignored],
                "warnings": src.warnings, "dataset_info": src.dataset_info(),
                "class_list": src.class_list or self.preset["class_list"]}
        catalog.save(catalog_path)
        atomic_write(info_path, json.dumps(info))
        counts = Counter(catalog.splits[int(s)] for s in catalog.columns["split"])
        self.log("found " + ", ".join(f"{n} {s}" for s, n in counts.items()) +
                 (f"; {len(src.ignored)} non-sample files ignored" if src.ignored else ""))
        return catalog, self._check_warnings(info)

    def _check_warnings(self, info: dict) -> dict:
        warnings = info.get("warnings", [])
        for message in warnings:
            self.log(f"warning: {message}")
        if self.strict and warnings:
            more = f" (and {len(warnings) - 1} more warnings)" if len(warnings) > 1 else ""
            raise ConvertError(f"--strict: {warnings[0]}{more}")
        return info

    # 2. inspect ---------------------------------------------------------------------------------
    def inspect(self, catalog: Catalog) -> dict[str, Any]:
        inspect_dir = self.work / "inspect"
        inspect_dir.mkdir(exist_ok=True)
        c = catalog.columns
        read_order = np.lexsort((c["offset"], c["cid"]))  # sequential within each archive
        chunks = [read_order[i : i + CHUNK] for i in range(0, len(read_order), CHUNK)]
        pending = [k for k in range(len(chunks)) if not (inspect_dir / f"{k:06d}.npz").exists()]
        if len(pending) < len(chunks):
            self.log(f"resuming: {len(chunks) - len(pending)} of {len(chunks)} inspection chunks done")
        _STATE.update(catalog=catalog, chunks=chunks, policy=self.opts.hygiene, work=self.work)
        todo = sum(len(chunks[k]) for k in pending)
        with tqdm(total=todo, desc="inspect", unit="img", disable=not self.progress or not todo,
                  smoothing=0.1) as bar:
            start, nbytes = time.perf_counter(), 0
            for _, n, b in self._map(_inspect_chunk, pending):
                nbytes += b
                bar.update(n)
                bar.set_postfix_str(f"{nbytes / max(time.perf_counter() - start, 1e-9) / 1e6:.0f} MB/s", refresh=False)
        return self._load_inspection(catalog, chunks)

    def _load_inspection(self, catalog: Catalog, chunks: list[np.ndarray]) -> dict[str, Any]:
        n = len(catalog)
        res: dict[str, Any] = {"status": np.zeros(n, np.int8), "width": np.zeros(n, np.int32),
                               "height": np.zeros(n, np.int32), "fix_cid": np.full(n, -1, np.int32),
                               "fix_off": np.zeros(n, np.int64), "fix_size": np.zeros(n, np.int64),
                               "actions": {}, "reasons": {}, "flags": {}}
        for k in range(len(chunks)):
            with np.load(self.work / "inspect" / f"{k:06d}.npz") as z:
                chunk = {name: z[name] for name in z.files}  # each access would re-read the member
            idx = chunk["idx"]
            for name in ("status", "width", "height", "fix_off", "fix_size"):
                res[name][idx] = chunk[name]
            fixed = chunk["fix_off"] >= 0
            if fixed.any():
                fix_file = self.work / "inspect" / f"{k:06d}.fix"
                res["fix_cid"][idx[fixed]] = catalog.containers.add(KIND_FILE, fix_file)
            for j, note in enumerate(json.loads(chunk["notes"].tobytes().decode())):
                if note:
                    target = res["reasons"] if chunk["status"][j] == BAD else res["actions"]
                    target[int(idx[j])] = note if chunk["status"][j] == BAD else json.loads(note)
            for j, flag in enumerate(json.loads(chunk["flags"].tobytes().decode())):
                if flag:
                    res["flags"][int(idx[j])] = json.loads(flag)
        if (res["status"] == 0).any():
            raise ConvertError("internal error: some samples were not inspected")
        return res

    # 3. plan ------------------------------------------------------------------------------------
    def plan(self, catalog: Catalog, res: dict[str, Any]) -> list[tuple[str, str, np.ndarray]]:
        """(split, shard name, catalog indices in shard order) for every shard."""
        shards = []
        for split in self.opts.splits:
            idx = catalog.split_indices(split)
            good = idx[res["status"][idx] == OK]  # canonical (sorted-key) order
            if len(good) == 0:
                if len(idx) and not self.allow_empty_splits:
                    example = res["reasons"][int(idx[0])]
                    raise ConvertError(f"split {split!r}: all {len(idx)} samples were quarantined (e.g. "
                                       f"{catalog.columns['filename'][int(idx[0])]}: {example}); fix the source, "
                                       "or pass --allow-empty-splits to write the other splits")
                self.log(f"warning: split {split!r} has no usable samples")
                continue
            rng = np.random.default_rng(np.random.SeedSequence([self.opts.seed, zlib.crc32(split.encode())]))
            ordered = good[rng.permutation(len(good))]
            count = self.opts.num_shards.get(split) or math.ceil(len(good) / self.opts.shard_size[split])
            count = min(count, len(good))
            for j, part in enumerate(np.array_split(ordered, count)):  # lengths differ by <= 1
                shards.append((split, shard_name(self.preset["prefix"], split, j, count), part))
        return shards

    # 4. write -----------------------------------------------------------------------------------
    def write(self, catalog: Catalog, res: dict[str, Any], plan: list) -> list[ShardRecord]:
        (self.work / "shards").mkdir(exist_ok=True)
        for stale in self.out.glob("*.partial*"):
            stale.unlink()
        self._remove_stray_shards({name for _, name, _ in plan})
        records: dict[str, ShardRecord] = {}
        pending = []
        for task in plan:
            rec_path = self.work / "shards" / f"{task[1]}.json"
            if rec_path.exists():
                rec = ShardRecord(**json.loads(rec_path.read_text()))
                if self._finished(rec):
                    records[rec.name] = rec
                    continue
            pending.append(task)
        if records:
            self.log(f"resuming: {len(records)} of {len(plan)} shards already written")
        _STATE.update(catalog=catalog, results=res, classes=self.classes, out=self.out, work=self.work)
        todo = sum(len(t[2]) for t in pending)
        with tqdm(total=todo, desc="write", unit="img", disable=not self.progress or not todo, smoothing=0.1) as bar:
            start, nbytes = time.perf_counter(), 0
            for rec in self._map(_write_shard, pending):
                if self.sink:
                    self.sink.put(rec, self.out / rec.name)
                records[rec.name] = rec
                nbytes += rec.bytes
                bar.update(rec.samples)
                bar.set_postfix_str(f"{nbytes / max(time.perf_counter() - start, 1e-9) / 1e6:.0f} MB/s", refresh=False)
        return [records[name] for _, name, _ in plan]

    def _remove_stray_shards(self, planned: set[str]) -> None:
        """Shards of this dataset's name pattern that the plan does not write (an interrupted
        run over a source that changed since, or a killed --overwrite): no reader may see them."""
        pattern = shard_pattern(self.preset["prefix"], self.preset["splits"])
        keep = planned | {idx_name(n) for n in planned}
        for path in self.out.iterdir():
            if pattern.match(path.name) and path.name not in keep:
                path.unlink()

    def _finished(self, rec: ShardRecord) -> bool:
        """Written by an earlier run: its .idx is here, and the tar complete here or in the sink."""
        tar = self.out / rec.name
        if not (self.out / idx_name(rec.name)).exists():
            return False
        if tar.exists() and tar.stat().st_size == rec.bytes:
            if self.sink:  # written, but maybe not handed over before the interruption
                self.sink.put(rec, tar)
            return True
        return self.sink is not None and self.sink.has(rec)

    def _map(self, fn, tasks):
        if self.workers == 1 or len(tasks) <= 1:
            return map(fn, tasks)
        return _pool_imap(fn, tasks, self.workers)

    # 5. indexes and manifest --------------------------------------------------------------------
    def finalize(self, catalog: Catalog, res: dict[str, Any], plan: list, records: list[ShardRecord],
                 scan_info: dict) -> dict[str, Any]:
        from .indexes import sample_fields, write_indexes

        c = catalog.columns
        quarantine = [{"split": catalog.splits[int(c["split"][i])], "key": c["key"][i],
                       "filename": c["filename"][i], "reason": reason}
                      for i, reason in sorted(res["reasons"].items())]
        split_counts = {}
        for split in self.opts.splits:
            idx = catalog.split_indices(split)
            written = sum(r.samples for r in records if r.split == split)
            bad = int((res["status"][idx] == BAD).sum())
            if len(idx) != written + bad:
                raise ConvertError(f"count mismatch in {split}: {len(idx)} in != {written} written + {bad} quarantined")
            split_counts[split] = {"samples_in": len(idx), "written": written, "quarantined": bad,
                                   "shards": sum(1 for r in records if r.split == split)}
        hygiene = Counter(a.split(":", 1)[0] for acts in res["actions"].values() for a in acts)
        manifest = {
            "tool": "imagenet-pipe", "version": __version__, "dataset": self.opts.dataset,
            "prefix": self.preset["prefix"], "class_list": self.classes.name,
            "num_classes": len(self.classes), "layout": scan_info["layout"], "options": self.opts.to_json(),
            "source_fingerprint": catalog.fingerprint(), "splits": split_counts,
            "totals": {k: sum(v[k] for v in split_counts.values()) for k in ("samples_in", "written", "quarantined")},
            "dataset_info": scan_info.get("dataset_info", {}),
            "hygiene": dict(sorted(hygiene.items())), "quarantine": quarantine, "ignored": scan_info["ignored"],
            "warnings": scan_info.get("warnings", []), "source_files": self.source_files,
            "shards": [asdict(r) for r in records],
        }
        firsts = [catalog.split_indices(s)[:1] for s in self.opts.splits]
        manifest["sample_fields"] = sample_fields((json.loads(c["extra"][int(i[0])] or "{}") for i in firsts if len(i)),
                                                  self.opts.hygiene.flags)
        if self.opts.hygiene.flags:  # how many written (= inspected OK) samples have each flag set
            flags = Counter(k for i, fl in res["flags"].items() if res["status"][i] == OK for k, v in fl.items() if v)
            manifest["image_flags"] = {f: flags.get(f, 0) for f in self.opts.hygiene.flags}
        alt_splits = self.alt_splits(catalog, plan)
        if alt_splits:
            manifest["alt_splits"] = alt_splits
        write_indexes(self.out, manifest, self.classes)
        atomic_write(self.out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
        for split, n in split_counts.items():
            self.log(f"{split}: samples in {n['samples_in']} = written {n['written']} + quarantined "
                     f"{n['quarantined']} -> {n['shards']} shards")
        t = manifest["totals"]
        self.log(f"total: samples in {t['samples_in']} = written {t['written']} + quarantined {t['quarantined']}")
        for q in quarantine:
            self.log(f"  quarantined {q['split']}/{q['filename']}: {q['reason']}")
        if hygiene:
            self.log("hygiene: " + ", ".join(f"{k} x{v}" for k, v in sorted(hygiene.items())))
        if manifest.get("image_flags"):
            self.log("image flags: " + ", ".join(f"{k} x{v}" for k, v in manifest["image_flags"].items()))
        return manifest

    def alt_splits(self, catalog: Catalog, plan: list) -> dict[str, Any]:
        """timm splits over the shards of another split, targeting an int json field (``alt_label``).

        timm drops samples whose field is < 0 (or missing here), so a shard's length counts only
        the samples it keeps, as in rwightman's ``train_12k`` split of the 22k shards.
        """
        extra = catalog.columns["extra"]
        out = {}
        for name, spec in (self.preset.get("alt_splits") or {}).items():
            base, field_name = spec["split"], spec["alt_label"]
            shards = [(shard, part) for split, shard, part in plan if split == base]
            if not shards:
                continue
            lengths = [sum(1 for i in part if _json_int(extra[int(i)], field_name) >= 0) for _, part in shards]
            out[name] = {"name": name, "filenames": [shard for shard, _ in shards], "shard_lengths": lengths,
                         "num_samples": sum(lengths), "alt_label": field_name}
        return out


def _json_int(text: str, name: str) -> int:
    value = json.loads(text).get(name, -1) if text else -1
    return value if isinstance(value, int) else -1


def _pool_imap(fn, tasks, workers: int):
    ctx = mp.get_context("fork")
    with ctx.Pool(workers, initializer=_worker_init) as pool:
        yield from pool.imap_unordered(fn, tasks, chunksize=1)


def _prepare_work(work: Path, opts: ConvertOptions, files: dict[str, str], overwrite: bool,
                  log: Callable[[str], None]) -> None:
    """Create the work folder, or check that the one there belongs to this conversion. Before the
    catalog exists nothing is lost by starting over, so a rerun with other options (e.g. the
    ``--splits`` an error message suggested) needs no ``--overwrite``."""
    fingerprint = {"tool_version": __version__, **opts.to_json()}
    opts_path, files_path = work / "options.json", work / "source.json"
    if work.exists():
        if _read_state(opts_path) != fingerprint:
            if (work / "catalog.npz").exists() and not overwrite:
                raise ConvertError(f"{work.parent} holds an unfinished conversion with different options; rerun "
                                   "with the same options to resume it, or pass --overwrite to start over")
            shutil.rmtree(work)
        elif _read_state(files_path) != files:
            log(f"files in {opts.source} changed since the interrupted run: starting over")
            shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    if not opts_path.exists():
        atomic_write(files_path, json.dumps(files))
        atomic_write(opts_path, json.dumps(fingerprint))


def _previous_manifest(path: Path, overwrite: bool, preset: dict) -> dict:
    try:
        return read_json(path)
    except ShardError as e:
        if not overwrite:
            raise ConvertError(f"{e}: the conversion there is damaged; pass --overwrite to replace it") from None
        # what its indexes may be called; its shards go by name pattern when the new ones are written
        return {"prefix": preset["prefix"], "splits": dict.fromkeys(preset["splits"])}


def _read_state(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # missing, or cut by a kill: not this conversion's state
        return None


def _remove_previous(out: Path, work: Path, manifest: dict | None) -> None:
    """Remove the conversion being overwritten, readers' indexes first (no reader may see old
    indexes over new shards), then its manifest and shards. The list is kept in the work folder
    until all is gone, so a run killed part-way finishes the removal when resumed."""
    listing = work / "previous.json"
    if manifest is not None:
        wids = [wids_name(manifest["prefix"], s) for s in manifest["splits"]]
        names = [*INFO_FILES, *wids, SIZES_FILE, CARD_FILE, CLASSES_FILE, MANIFEST]
        names += [n for s in manifest.get("shards", []) for n in (s["name"], idx_name(s["name"]))]
        atomic_write(listing, json.dumps(names))
    names = _read_state(listing)
    if names is None:
        return
    for name in names:
        (out / name).unlink(missing_ok=True)
    listing.unlink()


class _lock:
    """One conversion per output folder at a time (an advisory lock on the folder itself)."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def __enter__(self):
        self.fd = os.open(self.out, os.O_RDONLY)
        deadline = time.monotonic() + 10
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    raise ConvertError(f"another conversion is running in {self.out}") from None
                time.sleep(0.2)

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
