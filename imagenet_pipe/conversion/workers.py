"""How the parallel work of a conversion runs (the scan's listings, inspect, write): an
:class:`Executor` maps a :class:`PhaseTask` over items; the sample reader every process opens
for itself; the progress bar.

A :class:`PhaseTask` carries everything its workers need. :class:`LocalExecutor` (the default)
runs it in a process pool whose initializer hands each worker the task, so a phase works under
any start method: with ``fork`` (the default where there is one) the workers share the parent's
catalog copy-on-write, which matters for ImageNet-21K's 14 M entries; with ``spawn`` or
``forkserver`` (the default in a process that has loaded Ray) each worker gets a pickled copy.
The Ray executor (:mod:`.ray_executor`) runs the same tasks on a cluster. A task opens its reader
in :meth:`PhaseTask.start`, in the process that reads, because zip handles carry a file position
and must not be shared across processes.

An executor only decides where tasks run: results are the same whichever runs them, and a phase
that takes them unordered stores them by item (inspection chunks, shard records), so the output
bytes never depend on the executor, the number of workers or the order in which tasks finish.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import socket
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
from tqdm import tqdm

from ..sources.archive import KIND_FILE, ByteReader, Containers
from .catalog import Catalog

# testing knob: slow every raw read down so that tests can kill a conversion part-way (DEVELOPERS.md)
SLOW_READ_S = float(os.environ.get("IMAGENET_PIPE_SLOW_READ_S", "0"))

Item = TypeVar("Item")
Result = TypeVar("Result")


class SampleReader:
    """Reads catalog samples' raw bytes, and the repaired bytes inspection stored in its fix
    files. Belongs to the process that made it."""

    def __init__(self, catalog: Catalog, fix_files: Sequence[Path] = ()) -> None:
        self.columns = catalog.columns
        self.raw = ByteReader(catalog.containers)
        fixes = Containers()
        for path in fix_files:
            fixes.add(KIND_FILE, path)
        self.fixes = ByteReader(fixes)

    def raw_bytes(self, row: int, max_bytes: int | None = None) -> bytes:
        """The sample's bytes as the download holds them; see :meth:`ByteReader.read` for errors."""
        if SLOW_READ_S:
            time.sleep(SLOW_READ_S)
        c = self.columns
        return self.raw.read(int(c["cid"][row]), int(c["offset"][row]), int(c["size"][row]), c["member"][row],
                             max_bytes)

    def fixed_bytes(self, fix_file: int, offset: int, size: int) -> bytes:
        """Bytes of ``fix_files[fix_file]``."""
        return self.fixes.read(fix_file, offset, size, "")

    def close(self) -> None:
        self.raw.close()
        self.fixes.close()


def partial_suffix() -> str:
    """The temporary-name suffix of a file this process writes: host and process id, so that two
    processes never share one, even on different machines of a cluster writing one shared folder."""
    return f".partial-{socket.gethostname()}-{os.getpid()}"


class PhaseTask(ABC, Generic[Item, Result]):
    """The work of one parallel phase: picklable, called once per item in some process."""

    name = "task"  # what the phase is called in messages
    reader: SampleReader | None = None

    def start(self) -> None:
        """Open what a process needs before its first item (called in that process)."""

    def stop(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    @abstractmethod
    def __call__(self, item: Item) -> Result:
        """Do one item."""

    def __getstate__(self) -> dict:  # a reader never travels to another process
        return {**self.__dict__, "reader": None}


class Call(PhaseTask[Item, Result]):
    """A plain picklable function as a task (a reader's listing work in the scan)."""

    name = "scan"

    def __init__(self, fn: Callable[[Item], Result]) -> None:
        self.fn = fn

    def __call__(self, item: Item) -> Result:
        return self.fn(item)


class Executor(ABC):
    """Where a phase's tasks run. :meth:`map` gives ``task(item)`` for every item, in item order
    with ``ordered``, else as tasks finish; the results are the same either way."""

    workers = 1  # tasks at a time

    @abstractmethod
    def map(self, task: PhaseTask[Item, Result], items: Sequence[Item], *, ordered: bool = False
            ) -> Iterator[Result]:
        """``task(item)`` for every item (a generator: closing it early stops the work)."""

    def ordered_map(self, fn: Callable[[Item], Result], items: Sequence[Item]) -> Iterator[Result]:
        """A plain function mapped in item order: a source's ``map_in_order`` (parallel scan)."""
        return self.map(Call(fn), items, ordered=True)

    def close(self) -> None:  # noqa: B027 (most executors hold nothing between maps)
        """Release what the executor holds (a cluster connection it made)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    """Processes on this machine: ``workers`` pool processes started with ``start_method``; in
    this process itself for one worker or one item."""

    def __init__(self, workers: int = 1, start_method: str | None = None) -> None:
        self.workers, self.start_method = max(1, workers), start_method

    def map(self, task: PhaseTask[Item, Result], items: Sequence[Item], *, ordered: bool = False
            ) -> Iterator[Result]:
        if self.workers == 1 or len(items) <= 1:
            task.start()
            try:
                yield from map(task, items)
            finally:
                task.stop()
            return
        context = mp.get_context(self.start_method or default_start_method())
        with context.Pool(self.workers, initializer=_start_worker, initargs=(task,)) as pool:
            run = pool.imap if ordered else pool.imap_unordered
            yield from run(_run_in_worker, items, chunksize=1)


def default_start_method() -> str:
    """``fork`` where there is one (workers share the catalog copy-on-write), except in a process
    that has loaded Ray: its gRPC threads must not be inherited by a forked child, which can hang
    on a lock one of them held; then ``forkserver`` (a clean server process forks the workers)."""
    methods = mp.get_all_start_methods()
    if "fork" in methods and "ray" not in sys.modules:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


_worker_task: PhaseTask | None = None  # in a pool worker: its task, set by the initializer


def _start_worker(task: PhaseTask) -> None:
    global _worker_task
    # die with the parent: an orphan still writing a shard would race a resumed run
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    task.start()
    _worker_task = task


def _run_in_worker(item: object) -> object:
    return _worker_task(item)


class Throughput:
    """A progress bar over images that also shows the MB/s read or written."""

    def __init__(self, desc: str, total: int, enabled: bool) -> None:
        self.bar = tqdm(total=total, desc=desc, unit="img", disable=not enabled or not total, smoothing=0.1)
        self.start, self.nbytes = time.perf_counter(), 0

    def advance(self, samples: int, nbytes: int | np.integer) -> None:
        self.nbytes += int(nbytes)
        self.bar.update(samples)
        rate = self.nbytes / max(time.perf_counter() - self.start, 1e-9) / 1e6
        self.bar.set_postfix_str(f"{rate:.0f} MB/s", refresh=False)

    def __enter__(self) -> Throughput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()
