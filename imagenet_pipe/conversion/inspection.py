"""Inspect: every image read once and passed through :mod:`.hygiene` (parallel, resumable).

The catalog is inspected in chunks, in read order (sequential within each archive). Each chunk's
results are stored atomically in the work folder: ``inspect/<chunk>.npz``, plus the repaired
bytes of the chunk's changed images in ``inspect/<chunk>.fix``. A resumed run redoes only the
chunks without results, then reads them all back into one :class:`Inspections` table.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import ArchiveError
from ..sources.archive import TooLarge
from .catalog import Catalog
from .hygiene import BadImage, HygienePolicy, clean
from .options import ConvertError
from .workers import Executor, LocalExecutor, PhaseTask, SampleReader, Throughput, partial_suffix

CHUNK = 256  # samples per inspection task
OK, QUARANTINED = 1, 2  # status codes; 0: not inspected


@dataclass(frozen=True)
class Inspection:
    """What inspecting one sample found."""

    ok: bool
    width: int = 0
    height: int = 0
    repaired: bytes | None = None  # the bytes to store instead of the raw ones (None: keep those)
    actions: list[str] = field(default_factory=list)  # the repairs, recorded in the sample's json
    reason: str = ""  # why it was quarantined
    flags: dict[str, bool] = field(default_factory=dict)  # the policy's image flags


def inspect_sample(reader: SampleReader, row: int, policy: HygienePolicy) -> tuple[Inspection, int]:
    """One catalog sample's inspection, and how many bytes were read for it."""
    try:
        data = reader.raw_bytes(row, policy.max_file_bytes)
    except TooLarge as e:  # memory stays bounded whatever the input
        return Inspection(False, reason=f"too large: {e}"), 0
    except ArchiveError as e:  # e.g. a zip member failing its CRC, a file without read permission
        return Inspection(False, reason=f"unreadable: {e}"), 0
    try:
        img = clean(data, policy)
    except BadImage as e:
        return Inspection(False, reason=str(e)), len(data)
    return Inspection(True, img.width, img.height, img.data if img.changed else None, img.actions,
                      flags=img.flags), len(data)


@dataclass
class Inspections:
    """Every catalog sample's inspection, as columns indexed by catalog row (compact for 14 M
    samples). Repaired bytes stay in the fix files: ``fix_file[row]`` indexes ``fix_files``
    (-1: the raw bytes are kept)."""

    status: np.ndarray  # int8: OK or QUARANTINED
    width: np.ndarray
    height: np.ndarray
    fix_file: np.ndarray
    fix_offset: np.ndarray
    fix_size: np.ndarray
    fix_files: list[Path] = field(default_factory=list)
    actions: dict[int, list[str]] = field(default_factory=dict)  # rows whose image was repaired
    reasons: dict[int, str] = field(default_factory=dict)  # quarantined rows
    flags: dict[int, dict[str, bool]] = field(default_factory=dict)  # rows with image flags

    @classmethod
    def empty(cls, n: int) -> Inspections:
        return cls(np.zeros(n, np.int8), np.zeros(n, np.int32), np.zeros(n, np.int32), np.full(n, -1, np.int32),
                   np.zeros(n, np.int64), np.zeros(n, np.int64))

    def add_chunk(self, chunk: dict[str, np.ndarray], fix_path: Path) -> None:
        """Take in one stored chunk (:meth:`ChunkRecord.load`)."""
        rows = chunk["idx"]
        self.status[rows], self.width[rows], self.height[rows] = chunk["status"], chunk["width"], chunk["height"]
        self.fix_offset[rows], self.fix_size[rows] = chunk["fix_off"], chunk["fix_size"]
        fixed = chunk["fix_off"] >= 0
        if fixed.any():
            self.fix_files.append(fix_path)
            self.fix_file[rows[fixed]] = len(self.fix_files) - 1
        for j, note in enumerate(json.loads(chunk["notes"].tobytes().decode())):
            if note and chunk["status"][j] == QUARANTINED:
                self.reasons[int(rows[j])] = note
            elif note:
                self.actions[int(rows[j])] = json.loads(note)
        for j, flag in enumerate(json.loads(chunk["flags"].tobytes().decode())):
            if flag:
                self.flags[int(rows[j])] = json.loads(flag)


class ChunkRecord:
    """One chunk's results as stored in ``inspect/<chunk>.npz``: per sample its status, size,
    where its repaired bytes lie in the chunk's fix file, a note (the json list of repairs, or
    the quarantine reason) and its image flags (json)."""

    def __init__(self, rows: np.ndarray) -> None:
        n = len(rows)
        self.rows, self.status = rows, np.zeros(n, np.int8)
        self.width, self.height = np.zeros(n, np.int32), np.zeros(n, np.int32)
        self.fix_off, self.fix_size = np.full(n, -1, np.int64), np.zeros(n, np.int64)
        self.notes, self.flags = [""] * n, [""] * n

    def add(self, j: int, inspection: Inspection, fix: BinaryIO) -> None:
        """Record sample ``j`` of the chunk; its repaired bytes are appended to ``fix``."""
        if not inspection.ok:
            self.status[j], self.notes[j] = QUARANTINED, inspection.reason
            return
        self.status[j], self.width[j], self.height[j] = OK, inspection.width, inspection.height
        if inspection.flags:
            self.flags[j] = json.dumps(inspection.flags, sort_keys=True)
        if inspection.repaired is not None:
            self.fix_off[j], self.fix_size[j] = fix.tell(), len(inspection.repaired)
            fix.write(inspection.repaired)
            self.notes[j] = json.dumps(inspection.actions)

    def save(self, path: Path) -> None:
        tmp = path.with_name(f"{path.stem}{partial_suffix()}.npz")
        np.savez(tmp, idx=self.rows, status=self.status, width=self.width, height=self.height, fix_off=self.fix_off,
                 fix_size=self.fix_size, notes=np.frombuffer(json.dumps(self.notes).encode(), np.uint8),
                 flags=np.frombuffer(json.dumps(self.flags).encode(), np.uint8))
        os.replace(tmp, path)

    @staticmethod
    def load(path: Path) -> dict[str, np.ndarray]:
        with np.load(path) as z:
            return {name: z[name] for name in z.files}  # each access would re-read the member


class InspectTask(PhaseTask[int, tuple[int, int]]):
    """Inspects one chunk of the catalog and stores its results; returns (samples, bytes read)."""

    name = "inspect"

    def __init__(self, catalog: Catalog, chunks: list[np.ndarray], policy: HygienePolicy, folder: Path) -> None:
        self.catalog, self.chunks, self.policy, self.folder = catalog, chunks, policy, folder

    def start(self) -> None:
        self.reader = SampleReader(self.catalog)

    def __call__(self, chunk_id: int) -> tuple[int, int]:
        rows = self.chunks[chunk_id]
        record, nbytes = ChunkRecord(rows), 0
        fix_path = self.folder / f"{chunk_id:06d}.fix"
        fix_tmp = fix_path.with_name(fix_path.name + partial_suffix())
        with open(fix_tmp, "wb") as fix:
            for j, row in enumerate(rows):
                inspection, size = inspect_sample(self.reader, int(row), self.policy)
                record.add(j, inspection, fix)
                nbytes += size
            has_fixes = fix.tell() > 0
        if has_fixes:
            os.replace(fix_tmp, fix_path)
        else:
            fix_tmp.unlink()
        record.save(self.folder / f"{chunk_id:06d}.npz")
        return len(rows), nbytes


def inspect(catalog: Catalog, policy: HygienePolicy, work: Path, *, executor: Executor | None = None,
            progress: bool = False, log: Callable[[str], None] = print, chunk: int = CHUNK) -> Inspections:
    """Inspect every catalog sample not inspected yet (results in ``work/inspect``, ``chunk``
    samples per task, run by ``executor``, default this process); all results."""
    folder = work / "inspect"
    folder.mkdir(exist_ok=True)
    c = catalog.columns
    read_order = np.lexsort((c["offset"], c["cid"]))  # sequential within each archive
    chunks = [read_order[i : i + chunk] for i in range(0, len(read_order), chunk)]
    pending = [k for k in range(len(chunks)) if not (folder / f"{k:06d}.npz").exists()]
    if len(pending) < len(chunks):
        log(f"resuming: {len(chunks) - len(pending)} of {len(chunks)} inspection chunks done")
    task = InspectTask(catalog, chunks, policy, folder)
    with Throughput("inspect", sum(len(chunks[k]) for k in pending), progress) as bar:
        for samples, nbytes in (executor or LocalExecutor()).map(task, pending):
            bar.advance(samples, nbytes)
    results = Inspections.empty(len(catalog))
    for k in range(len(chunks)):
        results.add_chunk(ChunkRecord.load(folder / f"{k:06d}.npz"), folder / f"{k:06d}.fix")
    if (results.status == 0).any():
        raise ConvertError("internal error: some samples were not inspected")
    return results
