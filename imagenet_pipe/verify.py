"""``imagenet-pipe verify``: prove a shard folder is what its manifest says.

Per shard: size and sha256 against the manifest, every ``.idx`` line against the tar's own
headers, sample count, each sample complete (``cls``, ``jpg``, ``json``) with ``cls`` equal to the
json label, keys unique within the split, and optionally every image decoded. Across the folder:
``_info.json``, ``info.json``, the wids indexes and ``sizes.json`` agree with the manifest, and the
manifest's counts reconcile (samples in = written + quarantined).
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
from typing import Any

from tqdm import tqdm

from .indexes import INFO_FILES, sizes_index, timm_info, wids_index, wids_name
from .shards import idx_name, index_tar, iter_samples, read_idx

REQUIRED = ("cls", "jpg", "json")


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
    name = shard["name"]
    check = ShardCheck(name)
    path = root / name
    if not path.exists():
        check.problems.append(f"{name}: missing")
        return check
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            sha.update(block)
    if path.stat().st_size != shard["bytes"]:
        check.problems.append(f"{name}: {path.stat().st_size} bytes, manifest says {shard['bytes']}")
    if sha.hexdigest() != shard["sha256"]:
        check.problems.append(f"{name}: sha256 {sha.hexdigest()[:16]}... differs from the manifest's")
    try:
        expected_idx = index_tar(path)
    except Exception as e:
        check.problems.append(f"{name}: not a readable tar ({e})")
        return check
    idx_path = root / idx_name(name)
    try:
        if read_idx(idx_path) != expected_idx:
            check.problems.append(f"{idx_path.name}: does not match the offsets and sizes in {name}")
    except (OSError, ValueError) as e:
        check.problems.append(f"{idx_path.name}: {e}")
    for key, sample in iter_samples(path):
        check.samples += 1
        check.keys.append(key)
        missing = [ext for ext in REQUIRED if ext not in sample]
        if missing:
            check.problems.append(f"{name}: sample {key} lacks {', '.join(missing)}")
            continue
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
    if check.samples != shard["samples"]:
        check.problems.append(f"{name}: {check.samples} samples, manifest says {shard['samples']}")
    return check


def _decode_problem(data: bytes, meta: dict) -> str | None:
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as e:
        return f"does not decode: {e}"
    if img.format != "JPEG" or img.mode != "RGB":
        return f"is {img.format} {img.mode}, expected an RGB JPEG"
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
    manifest_path = root / "manifest.json"
    if not manifest_path.exists():
        report.problems.append(f"{root}: no manifest.json (not a finished imagenet-pipe conversion)")
        return report
    manifest = json.loads(manifest_path.read_text())
    _check_manifest_counts(manifest, report)
    _check_indexes(root, manifest, report)
    shards = manifest["shards"]
    tasks = [(root, s, decode, fetch) for s in shards]
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    keys_by_split: dict[str, set[str]] = {}
    with tqdm(total=len(tasks), desc="verify", unit="shard", disable=not progress) as bar:
        if workers == 1:
            checks = map(_check_task, tasks)
            results = _collect(checks, bar)
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
    if log:
        log(f"verified {report.shards} shards, {report.samples} samples"
            + (f", {report.decoded} images decoded" if decode else "")
            + (": OK" if report.ok else f": {len(report.problems)} problem(s)"))
    return report


def _collect(results, bar) -> list[ShardCheck]:
    out = []
    for r in results:
        out.append(r)
        bar.update(1)
    return out


def _check_manifest_counts(manifest: dict, report: Report) -> None:
    for split, counts in manifest["splits"].items():
        written = sum(s["samples"] for s in manifest["shards"] if s["split"] == split)
        if written != counts["written"]:
            report.problems.append(f"manifest: {split} shards hold {written} samples, counts say {counts['written']}")
        if counts["samples_in"] != counts["written"] + counts["quarantined"]:
            report.problems.append(f"manifest: {split} samples in {counts['samples_in']} != written "
                                   f"{counts['written']} + quarantined {counts['quarantined']}")
        quarantined = sum(1 for q in manifest["quarantine"] if q["split"] == split)
        if quarantined != counts["quarantined"]:
            report.problems.append(f"manifest: {split} quarantine list has {quarantined} entries, counts say "
                                   f"{counts['quarantined']}")


def _check_indexes(root: Path, manifest: dict, report: Report) -> None:
    expected_info = timm_info(manifest)
    for name in INFO_FILES:
        _compare_json(root / name, expected_info, report)
    for split in manifest["splits"]:
        if any(s["split"] == split for s in manifest["shards"]):
            _compare_json(root / wids_name(manifest["prefix"], split), wids_index(manifest, split), report)
    _compare_json(root / "sizes.json", sizes_index(manifest), report)


def _compare_json(path: Path, expected: Any, report: Report) -> None:
    try:
        actual = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        report.problems.append(f"{path.name}: unreadable ({e})")
        return
    if actual != expected:
        report.problems.append(f"{path.name}: does not match the manifest")
