"""Write: each planned shard, a pure function of the plan, written in parallel and resumably.

A shard is written under a temporary name and renamed when complete, with its ``.idx``
(:class:`~.writer.ShardWriter`); its record (size, sha256) is kept in the work folder
(``shards/<name>.json``). A resumed run keeps every shard whose record, ``.idx`` and tar (here,
or in the sink) are complete, and writes the rest. Memory stays flat: image bytes are never
held beyond one sample per worker.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from ..files import atomic_write
from ..format import ShardRecord, idx_name
from .catalog import Catalog
from .inspection import Inspections
from .plan import ShardPlan
from .workers import Executor, LocalExecutor, PhaseTask, SampleReader, Throughput, partial_suffix
from .writer import ShardSink, ShardWriter


class WriteTask(PhaseTask[ShardPlan, ShardRecord]):
    """Writes one planned shard into ``out`` and keeps its record in ``records``."""

    name = "write"

    def __init__(self, catalog: Catalog, inspections: Inspections, wnids: Sequence[str], out: Path,
                 records: Path) -> None:
        self.catalog, self.inspections, self.wnids = catalog, inspections, wnids
        self.out, self.records = out, records

    def start(self) -> None:
        self.reader = SampleReader(self.catalog, self.inspections.fix_files)

    def __call__(self, shard: ShardPlan) -> ShardRecord:
        writer = ShardWriter(self.out, shard.name, shard.split, tmp_suffix=partial_suffix())
        try:
            for row in shard.rows:
                writer.write(*self.sample(int(row)))
            record = writer.close()
        except BaseException:
            writer.abort()
            raise
        atomic_write(self.records / f"{shard.name}.json", json.dumps(asdict(record)))
        return record

    def sample(self, row: int) -> tuple[str, dict[str, bytes]]:
        """A catalog row as a shard sample: key, and the ``cls``, ``jpg`` and ``json`` members."""
        c, inspections = self.catalog.columns, self.inspections
        if inspections.fix_file[row] >= 0:
            data = self.reader.fixed_bytes(int(inspections.fix_file[row]), int(inspections.fix_offset[row]),
                                           int(inspections.fix_size[row]))
        else:
            data = self.reader.raw_bytes(row)
        label = int(c["label"][row])
        meta = {"label": label, "wnid": self.wnids[label] if label >= 0 else None, "width": int(inspections.width[row]),
                "height": int(inspections.height[row]), "filename": c["filename"][row]}
        extra = c["extra"][row]
        if extra:
            meta.update(json.loads(extra))
        meta.update(inspections.flags.get(row, {}))
        meta["hygiene"] = inspections.actions.get(row, [])  # always there: one schema for every sample (HF)
        return c["key"][row], {"cls": str(label).encode(), "jpg": data, "json": json.dumps(meta).encode()}


def write_shards(plan: list[ShardPlan], task: WriteTask, own_names: re.Pattern, *, executor: Executor | None = None,
                 sink: ShardSink | None = None, progress: bool = False,
                 log: Callable[[str], None] = print) -> list[ShardRecord]:
    """Write the planned shards an earlier run did not finish (tasks run by ``executor``, default
    this process), handing each to ``sink`` (if any); the records of all, in plan order. Files
    matching ``own_names`` (this dataset's shard names) that the plan does not write are removed
    first; temporary files before and after (a task lost with a worker node leaves its own)."""
    out = task.out
    task.records.mkdir(exist_ok=True)
    remove_partials(out)
    remove_stray_shards(out, own_names, {shard.name for shard in plan})
    records: dict[str, ShardRecord] = {}
    pending = []
    for shard in plan:
        record = finished_record(task.records / f"{shard.name}.json", out, sink)
        if record is None:
            pending.append(shard)
        else:
            records[record.name] = record
    if records:
        log(f"resuming: {len(records)} of {len(plan)} shards already written")
    with Throughput("write", sum(len(shard.rows) for shard in pending), progress) as bar:
        for record in (executor or LocalExecutor()).map(task, pending):
            if sink:
                sink.put(record, out / record.name)
            records[record.name] = record
            bar.advance(record.samples, record.bytes)
    remove_partials(out)
    return [records[shard.name] for shard in plan]


def remove_partials(out: Path) -> None:
    """Temporary files of unfinished shards (no task is writing when this runs)."""
    for stale in out.glob("*.partial*"):
        stale.unlink(missing_ok=True)


def remove_stray_shards(out: Path, own_names: re.Pattern, planned: set[str]) -> None:
    """Shards of this dataset's name pattern that the plan does not write (an interrupted run over
    a source that changed since, or a killed --overwrite): no reader may see them."""
    keep = planned | {idx_name(n) for n in planned}
    for path in out.iterdir():
        if own_names.match(path.name) and path.name not in keep:
            path.unlink()


def finished_record(path: Path, out: Path, sink: ShardSink | None) -> ShardRecord | None:
    """The record at ``path`` of a shard an earlier run finished: its .idx is in ``out``, and its
    tar complete in ``out`` or in the sink. A finished tar still in ``out`` goes to the sink (the
    run may have been interrupted before handing it over)."""
    if not path.exists():
        return None
    record = ShardRecord(**json.loads(path.read_text()))
    tar = out / record.name
    if not (out / idx_name(record.name)).exists():
        return None
    if tar.exists() and tar.stat().st_size == record.bytes:
        if sink:
            sink.put(record, tar)
        return record
    return record if sink is not None and sink.has(record) else None
