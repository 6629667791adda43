"""Scan: the layout's reader lists every sample (label and byte location, no image bytes) into a
columnar catalog sorted by (split, key), so nothing depends on archive member order. The catalog
and what the reader noticed (:class:`ScanInfo`) are kept in the work folder for a resumed run.

A reader's independent listing work (each class tar of a tar of tars: ImageNet-1K train, fall11,
winter21) runs on the executor's workers, and its results are taken in archive order
(:func:`~imagenet_pipe.sources.base.iter_class_tars`): the catalog is the same for any executor
and number of workers."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..files import atomic_write
from ..sources import open_source
from ..sources.archive import Containers
from .catalog import Catalog
from .options import ConvertError, ConvertOptions
from .workers import Executor


@dataclass(frozen=True)
class ScanInfo:
    """What the reader found besides the samples (``scan.json`` in the work folder)."""

    layout: str
    ignored: list[dict[str, str]]  # files that are not samples, with the reason
    warnings: list[str]  # e.g. a tar without its end-of-archive blocks
    dataset_info: dict[str, Any]  # facts the manifest records (e.g. a class subset)
    class_list: str  # the label space

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScanInfo:
        return cls(data["layout"], data["ignored"], data.get("warnings", []), data.get("dataset_info", {}),
                   data["class_list"])


def scan(opts: ConvertOptions, work: Path, default_class_list: str, *, executor: Executor | None = None,
         strict: bool = False, progress: bool = False, log: Callable[[str], None] = print) -> tuple[Catalog, ScanInfo]:
    """The catalog of ``opts.source`` (scanned, or as an interrupted run left it in ``work``); the
    reader's listing work runs on ``executor`` (default: in this process). ``strict``: the
    reader's warnings are an error."""
    catalog_path, info_path = work / "catalog.npz", work / "scan.json"
    if catalog_path.exists() and info_path.exists():
        log(f"resuming: catalog of {opts.source} already scanned")
        return Catalog.load(catalog_path), check_warnings(ScanInfo.from_json(json.loads(info_path.read_text())),
                                                          strict, log)
    src = open_source(opts.dataset, Path(opts.source), work, opts.layout, real_labels=opts.real_labels,
                      **opts.dataset_options)
    if executor is not None:
        src.map_in_order = executor.ordered_map
    log(f"scanning {opts.source} ({opts.dataset}, {src.layout} layout) ...")
    containers = Containers()
    entries = src.scan(list(opts.splits), containers)
    if progress:
        entries = tqdm(entries, desc="scan", unit=" files", mininterval=1.0)
    catalog = Catalog.build(entries, containers, list(opts.splits))
    if len(catalog) == 0:
        raise ConvertError(f"no samples found in {opts.source} for splits {list(opts.splits)}")
    info = ScanInfo(src.layout, [{"file": f, "reason": r} for f, r in src.ignored], src.warnings,
                    src.dataset_info(), src.class_list or default_class_list)
    catalog.save(catalog_path)
    atomic_write(info_path, json.dumps(asdict(info)))
    counts = Counter(catalog.splits[int(s)] for s in catalog.columns["split"])
    log("found " + ", ".join(f"{n} {s}" for s, n in counts.items()) +
        (f"; {len(src.ignored)} non-sample files ignored" if src.ignored else ""))
    return catalog, check_warnings(info, strict, log)


def check_warnings(info: ScanInfo, strict: bool, log: Callable[[str], None]) -> ScanInfo:
    """Log the reader's warnings; with ``strict`` the first is an error."""
    for message in info.warnings:
        log(f"warning: {message}")
    if strict and info.warnings:
        more = f" (and {len(info.warnings) - 1} more warnings)" if len(info.warnings) > 1 else ""
        raise ConvertError(f"--strict: {info.warnings[0]}{more}")
    return info
