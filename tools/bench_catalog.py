#!/usr/bin/env python
"""Benchmark: build and sort a catalog of 14.2 M synthetic ImageNet-21K entries on one core.

The entries look like fall11's: the 21,841 real fall11 wnids in shuffled archive order, skewed
class sizes summing to 14,197,122, keys ``<wnid>_<n>`` with unpadded numbers in shuffled member
order, file names ``<wnid>/<wnid>_<n>.JPEG``, byte offsets into a 1.31 TB tar, ~92 KB sizes, and
(``--holdout``) a held-out validation split per class. They are fed one ``Entry`` at a time from
a generator to ``Catalog.build``, as a conversion's scan feeds the source's entries.

The measurement runs in a fresh subprocess pinned to one CPU, so that its peak resident memory
(``VmHWM``) is the catalog's alone (plus the interpreter and numpy). It reports the time to
generate the entries alone (the source's share, measured in a separate pass), to append them (up
to the generator's end), to sort and finish the catalog, the bytes the finished catalog holds per
entry, and the peak; then the time to fingerprint, save and load it (what a conversion does next;
not in the peak). Wall-clock and CPU seconds are both given: on a shared machine other processes
stretch the wall clock, not the CPU time.

    python tools/bench_catalog.py                       # 14,197,122 entries (about 40 s, 1.3 GB)
    python tools/bench_catalog.py --entries 1000000

It uses only ``Catalog.build``, so it also measures earlier versions of the catalog: run it with
``PYTHONPATH`` pointing at another checkout of the project.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FALL11_IMAGES = 14_197_122
FALL11_BYTES = 1.31e12  # fall11_whole.tar
TARGET_SECONDS = 30.0
TARGET_PEAK_BYTES = 1.5e9


def synthetic_entries(count: int, holdout: int, seed: int) -> Iterator[Any]:
    """``count`` fall11-like entries, one class after another, in shuffled archive order."""
    import numpy as np

    from imagenet_pipe.classes import wnid_list
    from imagenet_pipe.sources.base import Entry

    rng = np.random.default_rng(seed)
    wnids = wnid_list("imagenet21k")
    sizes = _class_sizes(rng, len(wnids), count)
    offset = 0
    for label in rng.permutation(len(wnids)).tolist():
        wnid, n = wnids[label], int(sizes[label])
        if n == 0:
            continue
        numbers = (rng.permutation(max(4 * n, 1000))[:n] + 1).tolist()  # unpadded, gaps, shuffled
        held = np.zeros(n, bool)
        held[rng.permutation(n)[: min(holdout, n // 2)]] = True
        nbytes = np.maximum(rng.lognormal(np.log(FALL11_BYTES / FALL11_IMAGES) - 0.18, 0.6, n), 512).astype(np.int64)
        # each member: its 512-byte tar header, then its data padded to 512 bytes
        offsets = offset + 512 + np.concatenate(([0], np.cumsum(512 + -(-nbytes[:-1] // 512) * 512)))
        offset = int(offsets[-1] + -(-nbytes[-1] // 512) * 512)
        folder = f"{wnid}/"
        for number, start, size, validation in zip(numbers, offsets.tolist(), nbytes.tolist(), held.tolist(),
                                                   strict=True):
            key = f"{wnid}_{number}"
            yield Entry("validation" if validation else "train", key, f"{folder}{key}.JPEG", label, 0, start, size)


def _class_sizes(rng: Any, classes: int, total: int) -> Any:
    """Skewed class sizes (most classes small, a few up to ~3,000 images) summing to ``total``."""
    import numpy as np

    weights = rng.lognormal(0.0, 0.9, classes)
    sizes = np.floor(weights / weights.sum() * total).astype(np.int64)
    sizes[np.argsort(-weights)[: total - int(sizes.sum())]] += 1  # the remainder, one each to the largest
    return sizes


def catalog_bytes(catalog: Any) -> int | None:
    """Bytes held by the finished catalog's arrays (string blobs include their padding); None for
    a version of the catalog without these column types."""
    try:
        from imagenet_pipe.conversion.catalog import CodedColumn, StringColumn
    except ImportError:
        return None

    def string_parts(s: StringColumn) -> list[Any]:
        return [s.blob, s.starts, s.lengths]

    total = 0
    for column in catalog.columns.values():
        if isinstance(column, CodedColumn):  # its keys are the key column's, counted there
            parts = [column.codes, column.keyed, *string_parts(column.heads), *string_parts(column.tails)]
        elif isinstance(column, StringColumn):
            parts = string_parts(column)
        else:
            parts = [column]
        total += sum(part.nbytes for part in parts)
    return total


def peak_rss() -> int:
    """Peak resident memory of this process (bytes)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Clock:
    """Wall-clock and CPU seconds of consecutive phases (CPU time stays meaningful on a shared
    machine, where other processes stretch the wall clock)."""

    def __init__(self) -> None:
        self.times: dict[str, tuple[float, float]] = {}
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def lap(self, phase: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.times[phase] = (wall - self._wall, cpu - self._cpu)
        self._wall, self._cpu = wall, cpu


def child(count: int, holdout: int, seed: int) -> dict[str, Any]:
    """The measurement (run in a fresh process pinned to one CPU)."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import numpy as np

    from imagenet_pipe.conversion.catalog import Catalog
    from imagenet_pipe.sources.archive import Containers

    def entries_then_lap() -> Iterator[Any]:
        yield from synthetic_entries(count, holdout, seed)
        clock.lap("append")  # the catalog has taken the last entry

    clock = Clock()
    generated = sum(1 for _ in synthetic_entries(count, holdout, seed))
    clock.lap("generate")
    baseline = current_rss()
    clock.lap("setup")
    catalog = Catalog.build(entries_then_lap(), Containers(), ["train", "validation"])
    clock.lap("sort_finish")
    peak = peak_rss()
    # spot check: sorted by (split, key) at random places, every entry present
    rng = np.random.default_rng(seed)
    split, keys = catalog.columns["split"], catalog.columns["key"]
    for i in rng.integers(0, len(catalog) - 1, 2000).tolist():
        assert (int(split[i]), keys[i]) < (int(split[i + 1]), keys[i + 1]), i
    assert len(catalog) == generated == count
    result = {"entries": len(catalog), "validation": int((split == 1).sum()), "baseline_rss": baseline,
              "peak_rss": peak, "catalog_bytes": catalog_bytes(catalog)}
    del split, keys
    result["file_bytes"] = after_build(catalog, clock)
    return result | {"times": clock.times}


def after_build(catalog: Any, clock: Clock) -> int:
    """What a conversion does with the catalog next (after the peak was read): the manifest's
    fingerprint, and saving it for a resume / loading it back. Returns the file's size."""
    from imagenet_pipe.conversion.catalog import Catalog

    clock.lap("check")
    catalog.fingerprint()
    clock.lap("fingerprint")
    with tempfile.TemporaryDirectory(prefix="bench-catalog-") as tmp:
        path = Path(tmp) / "catalog.npz"
        catalog.save(path)
        clock.lap("save")
        file_bytes = path.stat().st_size
        del catalog
        Catalog.load(path)
        clock.lap("load")
    return file_bytes


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import numpy as np

    return (f"{model}, {os.cpu_count()} CPUs (measured on 1), load average {os.getloadavg()[0]:.1f}; "
            f"Python {platform.python_version()}, numpy {np.__version__}, {platform.system()} {platform.release()}")


def report(r: dict[str, Any]) -> bool:
    n, t = r["entries"], r["times"]

    def seconds(*phases: str, minus: str | None = None) -> str:
        wall, cpu = (sum(t[p][k] for p in phases) - (t[minus][k] if minus else 0) for k in (0, 1))
        return f"{wall:.1f} s wall / {cpu:.1f} s CPU"

    cpu_total = t["append"][1] + t["sort_finish"][1]
    catalog_cpu = cpu_total - t["generate"][1]
    print(f"entries: {n:,} ({r['validation']:,} validation)")
    print(f"generate the entries alone (the source's share): {seconds('generate')}")
    print(f"append (generation included): {seconds('append')}; sort + finish: {seconds('sort_finish')}")
    print(f"build + sort: {seconds('append', 'sort_finish')} with generation; catalog work alone: "
          f"{seconds('append', 'sort_finish', minus='generate')} ({catalog_cpu / n * 1e6:.2f} us CPU/entry)")
    if r["catalog_bytes"] is not None:
        print(f"catalog holds {r['catalog_bytes'] / 1e6:,.0f} MB = {r['catalog_bytes'] / n:.1f} bytes/entry")
    print(f"peak RSS {r['peak_rss'] / 1e9:.2f} GB (interpreter + numpy before building: "
          f"{r['baseline_rss'] / 1e6:.0f} MB)")
    print(f"afterwards: fingerprint {seconds('fingerprint')}; save {seconds('save')} "
          f"({r['file_bytes'] / 1e6:,.0f} MB); load {seconds('load')}")
    met = cpu_total < TARGET_SECONDS and r["peak_rss"] < TARGET_PEAK_BYTES
    print(f"target (build + sort with generation < {TARGET_SECONDS:.0f} s on one core, peak < "
          f"{TARGET_PEAK_BYTES / 1e9:.1f} GB): {'met' if met else 'MISSED'}"
          + ("" if n == FALL11_IMAGES else " (applies at 14,197,122 entries)"))
    return met


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entries", type=int, default=FALL11_IMAGES)
    p.add_argument("--holdout", type=int, default=50, help="validation entries held out per class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the raw result as JSON too")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.entries, args.holdout, args.seed)))
        return
    print(f"machine: {machine()}")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--entries", str(args.entries),
           "--holdout", str(args.holdout), "--seed", str(args.seed)]
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    met = report(result)
    if args.json:
        print(json.dumps(result))
    sys.exit(0 if met or args.entries != FALL11_IMAGES else 1)


if __name__ == "__main__":
    main()
