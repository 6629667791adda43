"""The converter's phases, each run alone over typed records, and the parallel ones under every
start method (workers get their task from the pool initializer, not from a global set before a
fork)."""

from __future__ import annotations

import multiprocessing as mp
import os

import numpy as np
import pytest

from imagenet_pipe.classes import ClassTable
from imagenet_pipe.conversion import resolve_options
from imagenet_pipe.conversion.inspection import Inspection, inspect, inspect_sample
from imagenet_pipe.conversion.plan import plan_shards
from imagenet_pipe.conversion.scan import scan
from imagenet_pipe.conversion.workers import LocalExecutor, PhaseTask, SampleReader
from imagenet_pipe.conversion.write import WriteTask, write_shards
from imagenet_pipe.format import iter_samples, shard_pattern

from .conftest import quiet


class ProcessId(PhaseTask[int, int]):
    def __call__(self, item: int) -> int:
        return os.getpid()


START_METHODS = [m for m in ("fork", "spawn", "forkserver") if m in mp.get_all_start_methods()]


@pytest.mark.parametrize("start_method", START_METHODS)
def test_tasks_run_in_pool_workers_under_every_start_method(start_method):
    pids = set(LocalExecutor(2, start_method).map(ProcessId(), range(8)))
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert set(LocalExecutor(1).map(ProcessId(), range(8))) == {os.getpid()}


def _phases(src, out, workers: int, start_method: str | None):
    """scan -> inspect -> plan -> write into ``out``; what each phase returned."""
    opts = resolve_options("imagenet1k", src, shard_size=8)
    work = out / "work"
    work.mkdir(parents=True)
    executor = LocalExecutor(workers, start_method)
    catalog, scanned = scan(opts, work, "imagenet1k", executor=executor, log=quiet)
    found = inspect(catalog, opts.hygiene, work, executor=executor, log=quiet, chunk=16)
    plan = plan_shards(catalog, found, opts, "imagenet1k", log=quiet)
    task = WriteTask(catalog, found, ClassTable.load(scanned.class_list).wnids, out, work / "shards")
    records = write_shards(plan, task, shard_pattern("imagenet1k", opts.splits), executor=executor, log=quiet)
    return catalog, found, plan, records


@pytest.mark.parametrize("start_method", [m for m in START_METHODS if m != "fork"])
def test_parallel_phases_give_the_same_bytes_under_any_start_method(tmp_path, raw1k, start_method):
    src = raw1k("official")
    _, here, plan_here, records_here = _phases(src, tmp_path / "here", 1, None)
    _, there, plan_there, records_there = _phases(src, tmp_path / start_method, 2, start_method)
    for column in ("status", "width", "height", "fix_offset", "fix_size"):
        assert np.array_equal(getattr(here, column), getattr(there, column)), column
    assert (here.actions, here.reasons, here.flags) == (there.actions, there.reasons, there.flags)
    assert [(s.split, s.name, s.rows.tolist()) for s in plan_here] == \
        [(s.split, s.name, s.rows.tolist()) for s in plan_there]
    assert records_here == records_there  # names, counts, sizes and sha256 of every shard
    assert len(here.reasons) == 1 and here.actions  # the fake's truncated JPEG; its repaired quirks


def test_inspection_of_one_sample_is_a_typed_record(tmp_path, raw1k, fake1k):
    opts = resolve_options("imagenet1k", raw1k("official"))
    catalog, _ = scan(opts, tmp_path, "imagenet1k", log=quiet)
    rows = {catalog.columns["key"][i]: i for i in range(len(catalog))}
    reader = SampleReader(catalog)
    try:
        for sample in fake1k.samples:
            found, nbytes = inspect_sample(reader, rows[sample.key], opts.hygiene)
            assert isinstance(found, Inspection) and nbytes > 0
            if sample.quirk == "truncated":
                assert not found.ok and "truncated" in found.reason
            elif sample.quirk == "cmyk":
                assert found.ok and found.repaired is not None and "cmyk_to_rgb" in found.actions
            elif sample.quirk is None:  # a clean JPEG keeps its bytes
                assert found.ok and found.repaired is None and found.actions == [] and found.width > 0
    finally:
        reader.close()


def test_a_resumed_write_keeps_finished_shards_and_writes_the_rest(tmp_path, raw1k):
    out = tmp_path / "out"
    catalog, found, plan, records = _phases(raw1k("official"), out, 1, None)
    lost = records[1]
    (out / lost.name).unlink()  # as if killed before this shard was written
    kept = {r.name: (out / r.name).stat().st_mtime_ns for r in records if r != lost}
    task = WriteTask(catalog, found, ClassTable.load("imagenet1k").wnids, out, out / "work" / "shards")
    messages: list[str] = []
    resumed = write_shards(plan, task, shard_pattern("imagenet1k", ("train", "validation")), log=messages.append)
    assert resumed == records
    assert messages == [f"resuming: {len(records) - 1} of {len(records)} shards already written"]
    assert {r.name: (out / r.name).stat().st_mtime_ns for r in records if r != lost} == kept
    assert len(list(iter_samples(out / lost.name))) == lost.samples
