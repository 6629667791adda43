"""Reading samples by byte offset: both backends fetch a batch's ``.cls`` and ``.jpg`` members
straight from the shards (one ``pread`` per sample: the members of a sample are adjacent), using
the DALI ``.idx`` files for the offsets. Every sample is checked here, before any decoder sees it:
a label that is a decimal integer in ``[0, num_classes)``, a JPEG with start marker, a frame header
and an end marker (bytes after the last end marker are allowed, as decoders ignore them). A bad
sample is replaced by a small placeholder so the batch still decodes, and reported by shard and key.
"""

from __future__ import annotations

import io
import os
import struct
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .shardset import ShardSet

_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_U16 = struct.Struct(">H").unpack_from
_U16x2 = struct.Struct(">HH").unpack_from
MAX_LABEL_DIGITS = 18  # int64


def jpeg_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, or None when the bytes are not a readable JPEG
    (no start marker, no frame header before the data ends, a zero dimension)."""
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    pos = 2
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _SOF:
            if pos + 9 > n:
                return None
            h, w = _U16x2(data, pos + 5)
            return (w, h) if w and h else None
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        pos += 2 + _U16(data, pos + 2)[0]
    return None


def _has_end(data: bytes) -> bool:
    # the last end-of-image marker; trailing padding or junk after it is ignored by every decoder
    return data.rfind(b"\xff\xd9", 4) != -1


def parse_label(raw: bytes | None, num_classes: int | None) -> tuple[int | None, str | None]:
    """(label, None) or (None, why it is bad)."""
    if raw is None:
        return None, "has no cls member"
    text = raw.strip()
    if not text.isdigit() or len(text) > MAX_LABEL_DIGITS:
        return None, f"has a label that is not a decimal integer ({raw[:24]!r})"
    label = int(text)
    if num_classes is not None and label >= num_classes:
        return None, f"has label {label}, outside [0, {num_classes})"
    return label, None


def placeholder_jpeg() -> bytes:
    """A 16 x 16 grey JPEG that stands in for a bad sample so the batch still decodes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (124, 116, 104)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


_PLACEHOLDER = placeholder_jpeg()


@dataclass
class FetchedBatch:
    """One batch's samples as read from the shards, plus what the checks found."""

    ids: np.ndarray  # global sample ids
    jpegs: list[np.ndarray]  # uint8 arrays (the placeholder for bad samples)
    labels: np.ndarray  # int64 (0 for bad samples)
    width: np.ndarray  # int64, of the decoded image (the placeholder's for bad samples)
    height: np.ndarray
    keys: list[str]
    shards: list[str]  # shard file names
    problems: dict[int, str]  # row -> why the sample is bad
    draws: np.ndarray | None = None  # what keys each sample's random decisions (default: its id)

    @property
    def draw_ids(self) -> np.ndarray:
        return self.ids if self.draws is None else self.draws

    @property
    def ok(self) -> np.ndarray:
        ok = np.ones(len(self.ids), dtype=bool)
        ok[list(self.problems)] = False
        return ok

    def located(self, row: int) -> str:
        return f"{self.shards[row]}: sample {self.keys[row]}"


class SampleReader:
    """Reads samples of a :class:`ShardSet` by global id. File handles are opened per process on
    first use (safe to use after ``fork`` in DataLoader workers); at most ``max_open`` stay open,
    the least recently used closed first (for a bucket, that unpins the shard in the cache)."""

    def __init__(self, shards: ShardSet, max_open: int = 64) -> None:
        self.shards, self.max_open = shards, max_open
        self._fds: OrderedDict[int, int] = OrderedDict()  # least recently used first
        self._busy: dict[int, int] = {}  # reads in progress per shard
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def _acquire(self, shard: int) -> int:
        """An open descriptor of ``shard``, held until :meth:`_done` (never closed while held)."""
        with self._lock:
            if self._pid != os.getpid():  # a forked child must not share the parent's handles or pins
                self._fds, self._busy, self._pid = OrderedDict(), {}, os.getpid()
            fd = self._fds.get(shard)
            if fd is None:
                fd = self._fds[shard] = os.open(self.shards.shard_path(shard), os.O_RDONLY)
            self._fds.move_to_end(shard)
            self._busy[shard] = self._busy.get(shard, 0) + 1
            idle = [s for s in self._fds if not self._busy.get(s)]
            for old in idle[: max(0, len(self._fds) - self.max_open)]:
                os.close(self._fds.pop(old))
                self.shards.release(old)
            return fd

    def _done(self, shard: int) -> None:
        with self._lock:
            self._busy[shard] -= 1

    def read(self, ids: np.ndarray, draws: np.ndarray | None = None) -> FetchedBatch:
        shard_of, local = self.shards.locate(ids)
        n = len(ids)
        batch = FetchedBatch(np.asarray(ids, np.int64), [], np.zeros(n, np.int64), np.zeros(n, np.int64),
                             np.zeros(n, np.int64), [], [], {}, draws)
        for row in range(n):
            s, i = int(shard_of[row]), int(local[row])
            index = self.shards.index(s)
            batch.keys.append(index.keys[i])
            batch.shards.append(self.shards.names[s])
            label, jpeg, why = self._read_one(s, index, i)
            if why is None:
                size = jpeg_size(jpeg)
                if size is None or not _has_end(jpeg):
                    why = "is not a complete JPEG (no start/end marker or frame header)"
            if why is not None:
                batch.problems[row] = why
                label, jpeg, size = 0, _PLACEHOLDER, (16, 16)
            batch.labels[row] = label
            batch.width[row], batch.height[row] = size
            batch.jpegs.append(np.frombuffer(jpeg, dtype=np.uint8))
        return batch

    def _read_one(self, shard: int, index, i: int) -> tuple[int | None, bytes, str | None]:
        cls_off, cls_size = int(index.cls_offset[i]), int(index.cls_size[i])
        jpg_off, jpg_size = int(index.jpg_offset[i]), int(index.jpg_size[i])
        if jpg_size < 0:
            return None, b"", "has no jpg member"
        fd = self._acquire(shard)
        try:
            if cls_size >= 0 and 0 <= jpg_off - (cls_off + cls_size) <= 4096:  # adjacent: one read
                blob = os.pread(fd, jpg_off + jpg_size - cls_off, cls_off)
                raw_cls, jpeg = blob[:cls_size], blob[jpg_off - cls_off:]
            else:
                raw_cls = os.pread(fd, cls_size, cls_off) if cls_size >= 0 else None
                jpeg = os.pread(fd, jpg_size, jpg_off)
        finally:
            self._done(shard)
        if len(jpeg) != jpg_size:
            return None, b"", (f"is cut short: the shard ends before byte {jpg_off + jpg_size} "
                               "(truncated shard; `imagenet-pipe verify` checks a whole folder)")
        label, why = parse_label(raw_cls, self.shards.num_classes)
        return label, jpeg, why

    def close(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                for shard, fd in self._fds.items():
                    os.close(fd)
                    self.shards.release(shard)
            self._fds, self._busy = OrderedDict(), {}


class ShardFetcher:
    """For shards in a bucket: hands the shards of the plan's next ``ahead`` batches (all ranks'
    positions: the ranks of a node share one cache) to the cache's background download, in order
    of first use, a chunk at a time. A no-op for a local folder."""

    def __init__(self, shards: ShardSet, plan, ahead: int = 32) -> None:
        self.shards, self.plan, self.ahead = shards, plan, ahead
        self._until = 0  # batches whose shards were asked for

    def advance(self, batch: int) -> None:
        if not self.shards.remote:
            return
        end = min(batch + self.ahead, self.plan.steps)
        if end - self._until < self.ahead // 2:
            return
        begin, self._until = max(batch, self._until), end
        ids = self.plan.positions(begin, end)
        shards, _ = self.shards.locate(ids)
        self.shards.prefetch(dict.fromkeys(int(s) for s in shards))


class ReadAhead:
    """Reads the batches of an epoch plan ahead of use in a few threads (``pread`` releases the
    GIL, so reading overlaps decoding and the training step). ``get(i)`` returns batch ``i`` and
    schedules the next ones; shards in a bucket are fetched further ahead (:class:`ShardFetcher`)."""

    def __init__(self, reader: SampleReader, plan, ahead: int, threads: int) -> None:
        self.reader, self.plan, self.ahead = reader, plan, ahead
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="imagenet-pipe-read")
        self._pending: dict[int, Future] = {}
        self._fetcher = ShardFetcher(reader.shards, plan)
        self._schedule(0)

    def _schedule(self, start: int) -> None:
        self._fetcher.advance(start)
        for i in range(start, min(start + self.ahead, self.plan.steps)):
            if i not in self._pending:
                self._pending[i] = self._pool.submit(self.reader.read, self.plan.batch(i), self.plan.draw_ids(i))

    def get(self, i: int) -> FetchedBatch:
        future = self._pending.pop(i, None)
        batch = future.result() if future is not None else self.reader.read(self.plan.batch(i), self.plan.draw_ids(i))
        self._schedule(i + 1)
        return batch

    def close(self) -> None:
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
