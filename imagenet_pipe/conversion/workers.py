"""How the parallel phases (inspect, write) run: a process pool whose initializer hands each
worker its task, the sample reader every process opens for itself, and the progress bar.

A :class:`PhaseTask` carries everything its workers need. The pool gives it to each worker
through the initializer, so a phase works under any start method: with ``fork`` (the default
where there is one) the workers share the parent's catalog copy-on-write, which matters for
ImageNet-21K's 14 M entries; with ``spawn`` or ``forkserver`` each worker gets a pickled copy.
A task opens its reader in :meth:`PhaseTask.start`, in the process that reads, because zip
handles carry a file position and must not be shared across processes.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
from tqdm import tqdm

from ..sources.archive import KIND_FILE, ByteReader, Containers
from .catalog import Catalog

DEFAULT_START_METHOD = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
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


class PhaseTask(ABC, Generic[Item, Result]):
    """The work of one parallel phase: picklable, called once per item in some process."""

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


def run_parallel(task: PhaseTask[Item, Result], items: Sequence[Item], workers: int,
                 start_method: str | None = None) -> Iterator[Result]:
    """``task(item)`` for every item, in completion order: in this process for one worker or one
    item, else in a pool of ``workers`` processes started with ``start_method``."""
    if workers == 1 or len(items) <= 1:
        task.start()
        try:
            yield from map(task, items)
        finally:
            task.stop()
        return
    context = mp.get_context(start_method or DEFAULT_START_METHOD)
    with context.Pool(workers, initializer=_start_worker, initargs=(task,)) as pool:
        yield from pool.imap_unordered(_run_in_worker, items, chunksize=1)


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
