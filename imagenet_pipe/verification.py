"""``imagenet-pipe verify``: prove a shard folder is what its manifest says.

Per shard: size and sha256 against the manifest, every ``.idx`` line against the tar's own
headers, sample count, each sample complete (``cls``, ``jpg``, ``json``) with ``cls`` equal to the
json label, keys unique within the split, and optionally every image decoded (an RGB JPEG of the
json's size ending with its EOI marker). Across the folder: the manifest is well-formed and its
counts reconcile (samples in = written + quarantined, per split and in total); ``_info.json``,
``info.json``, the wids indexes, ``sizes.json``, ``classes.tsv`` and the dataset card agree with
it; no stray shard, temporary file or work folder of an interrupted run is left.

Each shard is read once: its sha256 is computed from the same bytes that are parsed into
samples (for ImageNet-1K, 140 GB of reads for 140 GB of shards, not twice that).
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing as mp
import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from tqdm import tqdm

from .classes import ClassTable
from .conversion.indexes import dataset_card, sizes_index, timm_info, wids_index
from .errors import ImagenetPipeError, ShardError
from .format import (
    CARD_FILE,
    CLASSES_FILE,
    INFO_FILES,
    MANIFEST,
    SIZES_FILE,
    TRASH_DIR,
    WORK_DIR,
    IdxComponent,
    idx_name,
    read_idx,
    read_json,
    read_shard,
    wids_name,
)

REQUIRED = ("cls", "jpg", "json")
READ_BLOCK = 8 << 20


@dataclass
class ShardCheck:
    name: str
    samples: int = 0
    keys: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class Report:
    shards: int = 0
    samples: int = 0
    decoded: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_shard(root: Path, shard: dict[str, Any], decode: bool = False) -> ShardCheck:
    """Check one shard against its manifest record and its ``.idx``, reading the tar once: its
    sha256 is computed from the same bytes that are parsed into samples."""
    name = shard["name"]
    check = ShardCheck(name)
    path = root / name
    if not path.exists():
        check.problems.append(f"{name}: missing")
        return check
    seen = ShardCheck(name)  # what the samples show; reported after the whole-file checks
    components: list[list[IdxComponent]] = []
    damage = None
    with open(path, "rb") as f:
        reader = HashingReader(f)
        try:
            for sample in read_shard(reader, path):
                components.append(sample.components)
                _check_sample(seen, sample.key, sample.members, decode)
        except ShardError as e:
            damage = str(e)
        digest = reader.read_to_end()
    if path.stat().st_size != shard["bytes"]:
        check.problems.append(f"{name}: {path.stat().st_size} bytes, manifest says {shard['bytes']}")
    if digest != shard["sha256"]:
        check.problems.append(f"{name}: sha256 {digest[:16]}... differs from the manifest's")
    if damage is not None:  # the samples read before the damage are not counted
        check.problems.append(damage)
        return check
    idx_path = root / idx_name(name)
    try:
        if read_idx(idx_path) != components:
            check.problems.append(f"{idx_path.name}: does not match the offsets and sizes in {name}")
    except (OSError, ShardError) as e:
        check.problems.append(f"{idx_path.name}: {e}")
    check.samples, check.keys = seen.samples, seen.keys
    check.problems += seen.problems
    if check.samples != shard["samples"]:
        check.problems.append(f"{name}: {check.samples} samples, manifest says {shard['samples']}")
    return check


class HashingReader:
    """A binary file read once, front to back, hashing every byte that passes. ``tarfile`` only
    seeks forwards (over padding and members it does not read); such seeks become reads, so after
    :meth:`read_to_end` the digest covers the whole file. A backward seek, which would read bytes
    a second time, is refused."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.position, self.sha = raw, 0, hashlib.sha256()

    def read(self, size: int | None = -1) -> bytes:
        data = self.raw.read(-1 if size is None else size)
        self.sha.update(data)
        self.position += len(data)
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self.position + offset if whence == io.SEEK_CUR else -1
        if target < self.position:
            raise io.UnsupportedOperation(f"{self.raw}: seek back to {target} from {self.position}")
        while self.position < target and self.read(min(target - self.position, READ_BLOCK)):
            pass
        self.position = target  # past the end, like a file: the next read returns nothing
        return target

    def tell(self) -> int:
        return self.position

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def read_to_end(self) -> str:
        """Read what is left; the sha256 of the whole file."""
        while self.read(READ_BLOCK):
            pass
        return self.sha.hexdigest()


def _check_sample(check: ShardCheck, key: str, sample: dict[str, bytes], decode: bool) -> None:
    name = check.name
    check.samples += 1
    check.keys.append(key)
    missing = [ext for ext in REQUIRED if ext not in sample]
    if missing:
        check.problems.append(f"{name}: sample {key} lacks {', '.join(missing)}")
        return
    try:
        meta = json.loads(sample["json"])
        if int(sample["cls"]) != meta["label"]:
            check.problems.append(f"{name}: sample {key} cls {sample['cls']!r} != json label {meta['label']}")
    except (ValueError, KeyError, TypeError) as e:
        check.problems.append(f"{name}: sample {key} has a bad cls/json ({e})")
        meta = {}  # the image is still checked; its size cannot be compared
    if decode:
        problem = _decode_problem(sample["jpg"], meta)
        if problem:
            check.problems.append(f"{name}: sample {key} {problem}")


def _decode_problem(data: bytes, meta: dict) -> str | None:
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as e:
        return f"does not decode: {e}"
    if img.format != "JPEG" or img.mode != "RGB":
        return f"is {img.format} {img.mode}, expected an RGB JPEG"
    if not data.endswith(b"\xff\xd9"):
        return "has bytes after its JPEG end marker (FFD9)"
    if meta and (img.width, img.height) != (meta.get("width"), meta.get("height")):
        return f"is {img.width}x{img.height}, json says {meta.get('width')}x{meta.get('height')}"
    return None


def _check_task(args: tuple[Path, dict, bool, Callable[[dict], AbstractContextManager] | None]) -> ShardCheck:
    root, shard, decode, fetch = args
    with fetch(shard) if fetch else nullcontext():
        return check_shard(root, shard, decode)


def verify(root: Path | str, decode: bool = False, workers: int | None = None, progress: bool = True,
           log: Callable[[str], None] | None = None,
           fetch: Callable[[dict], AbstractContextManager] | None = None) -> Report:
    """``fetch(shard)``: a context during which the shard's tar is in ``root`` (a remote folder
    downloads it there and deletes it after)."""
    root = Path(root)
    report = Report()
    manifest = _load_manifest(root, report)
    if manifest is not None:
        _check_manifest_counts(manifest, report)
        _check_indexes(root, manifest, report)
        _check_leftovers(root, manifest, report)
        _check_shards(root, manifest, report, decode, workers, progress, fetch)
    if log:
        log(f"verified {report.shards} shards, {report.samples} samples"
            + (f", {report.decoded} images decoded" if decode else "")
            + (": OK" if report.ok else f": {len(report.problems)} problem(s)"))
    return report


def _check_shards(root: Path, manifest: dict, report: Report, decode: bool, workers: int | None,
                  progress: bool, fetch: Callable[[dict], AbstractContextManager] | None = None) -> None:
    shards = manifest["shards"]
    tasks = [(root, s, decode, fetch) for s in shards]
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    keys_by_split: dict[str, set[str]] = {}
    with tqdm(total=len(tasks), desc="verify", unit="shard", disable=not progress) as bar:
        if workers == 1:
            results = _collect(map(_check_task, tasks), bar)
        else:
            with mp.get_context("fork").Pool(workers) as pool:
                results = _collect(pool.imap(_check_task, tasks), bar)
    for shard, check in zip(shards, results, strict=True):
        report.shards += 1
        report.samples += check.samples
        report.decoded += check.samples if decode else 0
        report.problems += check.problems
        seen = keys_by_split.setdefault(shard["split"], set())
        dupes = seen.intersection(check.keys)
        if dupes:
            report.problems.append(f"{shard['name']}: keys also in another shard of {shard['split']}: "
                                   f"{sorted(dupes)[:5]}")
        seen.update(check.keys)


# the manifest fields verify relies on, and their types
MANIFEST_FIELDS = {"dataset": str, "prefix": str, "class_list": str, "num_classes": int, "splits": dict,
                   "totals": dict, "quarantine": list, "shards": list}
SHARD_FIELDS = {"name": str, "split": str, "samples": int, "bytes": int, "sha256": str}
COUNT_FIELDS = ("samples_in", "written", "quarantined")


def _load_manifest(root: Path, report: Report) -> dict | None:
    """The manifest, or None (with the problem reported) when it is missing, not JSON, or lacks
    what the checks need."""
    path = root / MANIFEST
    if not path.exists():
        report.problems.append(f"{root}: no {MANIFEST} (not a finished imagenet-pipe conversion)")
        return None
    try:
        manifest = read_json(path)
    except ShardError as e:
        report.problems.append(str(e))
        return None
    problems = _shape_problems(manifest, MANIFEST_FIELDS, MANIFEST) if isinstance(manifest, dict) else \
        [f"{MANIFEST}: not a JSON object"]
    if not problems:
        for i, shard in enumerate(manifest["shards"]):
            problems += _shape_problems(shard, SHARD_FIELDS, f"{MANIFEST}: shards[{i}]")
        for split, counts in manifest["splits"].items():
            problems += _shape_problems(counts, dict.fromkeys((*COUNT_FIELDS, "shards"), int),
                                        f"{MANIFEST}: splits[{split!r}]")
        problems += _shape_problems(manifest["totals"], dict.fromkeys(COUNT_FIELDS, int), f"{MANIFEST}: totals")
        for i, entry in enumerate(manifest["quarantine"]):
            problems += _shape_problems(entry, {"split": str, "reason": str}, f"{MANIFEST}: quarantine[{i}]")
    report.problems += problems
    return None if problems else manifest


def _shape_problems(obj: Any, fields: dict[str, type], where: str) -> list[str]:
    if not isinstance(obj, dict):
        return [f"{where}: not a JSON object"]
    return [f"{where}: lacks {name!r}" if name not in obj else f"{where}: {name!r} is not a {kind.__name__}"
            for name, kind in fields.items() if not isinstance(obj.get(name), kind) or isinstance(obj[name], bool)]


def _check_leftovers(root: Path, manifest: dict, report: Report) -> None:
    """Files a finished conversion does not have: temporary files, a work folder, shards the
    manifest does not list (a reader globbing the folder would take them)."""
    listed = {n for s in manifest["shards"] for n in (s["name"], idx_name(s["name"]))}
    for path in sorted(root.iterdir()):
        name = path.name
        if ".partial" in name:
            report.problems.append(f"{name}: temporary file of an interrupted run")
        elif name in (WORK_DIR, TRASH_DIR):
            report.problems.append(f"{name}/: work folder of an unfinished conversion (rerun the same convert "
                                   "command to finish it)")
        elif name.startswith(f"{manifest['prefix']}-") and name.endswith((".tar", ".idx")) and name not in listed:
            report.problems.append(f"{name}: stray shard file, not in {MANIFEST}")


def _collect(results, bar) -> list[ShardCheck]:
    out = []
    for r in results:
        out.append(r)
        bar.update(1)
    return out


def _check_manifest_counts(manifest: dict, report: Report) -> None:
    splits = manifest["splits"]
    for split, counts in splits.items():
        shards = [s for s in manifest["shards"] if s["split"] == split]
        written = sum(s["samples"] for s in shards)
        if written != counts["written"]:
            report.problems.append(f"{MANIFEST}: {split} shards hold {written} samples, counts say {counts['written']}")
        if len(shards) != counts["shards"]:
            report.problems.append(f"{MANIFEST}: {split} lists {len(shards)} shards, counts say {counts['shards']}")
        if counts["samples_in"] != counts["written"] + counts["quarantined"]:
            report.problems.append(f"{MANIFEST}: {split} samples in {counts['samples_in']} != written "
                                   f"{counts['written']} + quarantined {counts['quarantined']}")
        quarantined = sum(1 for q in manifest["quarantine"] if q.get("split") == split)
        if quarantined != counts["quarantined"]:
            report.problems.append(f"{MANIFEST}: {split} quarantine list has {quarantined} entries, counts say "
                                   f"{counts['quarantined']}")
    for name in COUNT_FIELDS:
        total = sum(counts[name] for counts in splits.values())
        if manifest["totals"][name] != total:
            report.problems.append(f"{MANIFEST}: totals say {name} {manifest['totals'][name]}, the splits add up "
                                   f"to {total}")
    unknown = sorted({s["split"] for s in manifest["shards"]} - set(splits))
    if unknown:
        report.problems.append(f"{MANIFEST}: shards of split(s) {unknown} that have no counts")


def _check_indexes(root: Path, manifest: dict, report: Report) -> None:
    expected_info = timm_info(manifest)
    for name in INFO_FILES:
        _compare_json(root / name, expected_info, report)
    for split in manifest["splits"]:
        if any(s["split"] == split for s in manifest["shards"]):
            _compare_json(root / wids_name(manifest["prefix"], split), wids_index(manifest, split), report)
    _compare_json(root / SIZES_FILE, sizes_index(manifest), report)
    try:
        classes = ClassTable.load(manifest["class_list"]).to_tsv()
    except ImagenetPipeError as e:
        report.problems.append(f"{MANIFEST}: class_list: {e}")
    else:
        _compare_text(root / CLASSES_FILE, classes, report)
    _compare_text(root / CARD_FILE, dataset_card(manifest), report)


def _compare_json(path: Path, expected: Any, report: Report) -> None:
    try:
        actual = read_json(path)
    except ShardError as e:
        report.problems.append(str(e))
        return
    if actual != expected:
        report.problems.append(f"{path.name}: does not match the manifest")


def _compare_text(path: Path, expected: str, report: Report) -> None:
    try:
        actual = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        report.problems.append(f"{path.name}: unreadable ({e})")
        return
    if actual != expected:
        report.problems.append(f"{path.name}: does not match the manifest")
