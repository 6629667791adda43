"""The manifest (``docs/shard-format.md``, section 10): the counts reconciled per split
(samples in = written + quarantined), the schema of ``manifest.json``, timm's alternative splits
and the summary a run ends with. Built from the run's records, without re-reading any shard."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any

from .. import __version__
from ..classes import ClassTable
from ..format import ShardRecord
from .catalog import Catalog
from .indexes import sample_fields
from .inspection import OK, QUARANTINED, Inspections
from .options import ConvertError, ConvertOptions
from .plan import ShardPlan
from .scan import ScanInfo


def split_counts(catalog: Catalog, inspections: Inspections, splits: Iterable[str],
                 records: list[ShardRecord]) -> dict[str, dict[str, int]]:
    """Per split: samples in, written, quarantined and shards; a split whose samples in are not
    written + quarantined is an error (nothing is lost without a word)."""
    counts = {}
    for split in splits:
        rows = catalog.split_indices(split)
        written = sum(r.samples for r in records if r.split == split)
        bad = int((inspections.status[rows] == QUARANTINED).sum())
        if len(rows) != written + bad:
            raise ConvertError(f"count mismatch in {split}: {len(rows)} in != {written} written + {bad} quarantined")
        counts[split] = {"samples_in": len(rows), "written": written, "quarantined": bad,
                         "shards": sum(1 for r in records if r.split == split)}
    return counts


def build_manifest(*, opts: ConvertOptions, preset: dict[str, Any], classes: ClassTable, scan: ScanInfo,
                   catalog: Catalog, inspections: Inspections, plan: list[ShardPlan], records: list[ShardRecord],
                   source_files: dict[str, str]) -> dict[str, Any]:
    """``manifest.json``'s content (its key order is part of the output bytes)."""
    c = catalog.columns
    quarantine = [{"split": catalog.splits[int(c["split"][i])], "key": c["key"][i],
                   "filename": c["filename"][i], "reason": reason}
                  for i, reason in sorted(inspections.reasons.items())]
    counts = split_counts(catalog, inspections, opts.splits, records)
    hygiene = Counter(a.split(":", 1)[0] for acts in inspections.actions.values() for a in acts)
    manifest = {
        "tool": "imagenet-pipe", "version": __version__, "dataset": opts.dataset, "prefix": preset["prefix"],
        "class_list": classes.name, "num_classes": len(classes), "layout": scan.layout, "options": opts.to_json(),
        "source_fingerprint": catalog.fingerprint(), "splits": counts,
        "totals": {k: sum(v[k] for v in counts.values()) for k in ("samples_in", "written", "quarantined")},
        "dataset_info": scan.dataset_info, "hygiene": dict(sorted(hygiene.items())), "quarantine": quarantine,
        "ignored": scan.ignored, "warnings": scan.warnings, "source_files": source_files,
        "shards": [asdict(r) for r in records],
    }
    firsts = [catalog.split_indices(s)[:1] for s in opts.splits]
    manifest["sample_fields"] = sample_fields((json.loads(c["extra"][int(i[0])] or "{}") for i in firsts if len(i)),
                                              opts.hygiene.flags)
    if opts.hygiene.flags:  # how many written (= inspected OK) samples have each flag set
        flags = Counter(k for i, fl in inspections.flags.items() if inspections.status[i] == OK
                        for k, v in fl.items() if v)
        manifest["image_flags"] = {f: flags.get(f, 0) for f in opts.hygiene.flags}
    alt = alt_splits(preset.get("alt_splits") or {}, catalog, plan)
    if alt:
        manifest["alt_splits"] = alt
    return manifest


def alt_splits(specs: dict[str, dict[str, str]], catalog: Catalog, plan: list[ShardPlan]) -> dict[str, Any]:
    """timm splits over the shards of another split, targeting an int json field (``alt_label``).

    timm drops samples whose field is < 0 (or missing here), so a shard's length counts only
    the samples it keeps, as in rwightman's ``train_12k`` split of the 22k shards.
    """
    extra = catalog.columns["extra"]
    out = {}
    for name, spec in specs.items():
        base, field_name = spec["split"], spec["alt_label"]
        shards = [shard for shard in plan if shard.split == base]
        if not shards:
            continue
        lengths = [sum(1 for i in shard.rows if _json_int(extra[int(i)], field_name) >= 0) for shard in shards]
        out[name] = {"name": name, "filenames": [shard.name for shard in shards], "shard_lengths": lengths,
                     "num_samples": sum(lengths), "alt_label": field_name}
    return out


def _json_int(text: str, name: str) -> int:
    value = json.loads(text).get(name, -1) if text else -1
    return value if isinstance(value, int) else -1


def log_summary(manifest: dict[str, Any], log: Callable[[str], None]) -> None:
    """The reconciliation per split and in total, every quarantined file, the repairs and flags."""
    for split, n in manifest["splits"].items():
        log(f"{split}: samples in {n['samples_in']} = written {n['written']} + quarantined "
            f"{n['quarantined']} -> {n['shards']} shards")
    t = manifest["totals"]
    log(f"total: samples in {t['samples_in']} = written {t['written']} + quarantined {t['quarantined']}")
    for q in manifest["quarantine"]:
        log(f"  quarantined {q['split']}/{q['filename']}: {q['reason']}")
    if manifest["hygiene"]:
        log("hygiene: " + ", ".join(f"{k} x{v}" for k, v in manifest["hygiene"].items()))
    if manifest.get("image_flags"):
        log("image flags: " + ", ".join(f"{k} x{v}" for k, v in manifest["image_flags"].items()))
