"""A node-local cache of whole shards from a bucket, shared by the processes of one node.

* ``path(name)`` gives the local path of the complete shard, downloading it first if needed, and
  pins it until ``release(name)``; ``prefetch(names)`` downloads ahead in background threads.
* A shard enters the cache only complete and verified (size and sha256 from the manifest),
  under its final name by an atomic rename, so a file present under that name is always good.
* Above ``cache_limit`` the least recently used complete shards are deleted, never one in use.
* Several processes may share one ``cache_dir`` (the ranks of a node): each shard is downloaded
  once per node. A download holds the shard's lock file exclusively; readers hold it shared
  while they use the shard, which is what keeps the evictor (non-blocking exclusive) away.

Without a ``cache_dir`` the cache is a temporary folder of this process, limited to
``TEMP_CACHE_LIMIT`` unless told otherwise, and removed by :meth:`ShardCache.close`.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from ..format import ShardRecord
from .client import S3Client
from .errors import StorageError
from .locks import locked, shared_lock, try_exclusive
from .remote import SHARDS_DIR, RemoteDataset, dataset_dir, open_remote
from .url import S3Url

TEMP_CACHE_LIMIT = 2 << 30
EVICT_LOCK = ".evict.lock"
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$", re.IGNORECASE)


def parse_size(value: int | str | None) -> int | None:
    """``50GB`` (decimal), ``50GiB`` (binary), ``1.5TB``, or a number of bytes; None = no limit."""
    if value is None or isinstance(value, int):
        return value
    m = _SIZE.match(value)
    if not m:
        raise StorageError(f"cache_limit {value!r}: expected bytes or a size such as 50GB, 200GiB, 1.5TB")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


class ShardCache:
    """Local copies of the shards of one bucket URL. Thread-safe; use one instance per process
    (a forked worker should open its own on the same ``cache_dir``)."""

    def __init__(self, source: S3Url | str | RemoteDataset, cache_dir: Path | str | None = None,
                 cache_limit: int | str | None = None, *, threads: int = 4, client: S3Client | None = None) -> None:
        self.client = client or S3Client()
        self._tmp = None
        if cache_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="imagenet-pipe-cache-")
            cache_dir = self._tmp.name
            cache_limit = TEMP_CACHE_LIMIT if cache_limit is None else cache_limit
        self.cache_dir = Path(cache_dir)
        self.limit = parse_size(cache_limit)
        self.dataset = source if isinstance(source, RemoteDataset) else open_remote(source, self.cache_dir,
                                                                                      self.client)
        self.dir = dataset_dir(self.cache_dir, self.dataset.url) / SHARDS_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self.downloaded: list[str] = []  # shards this process fetched (the others came from the cache)
        self._lock = threading.Lock()
        self._pins: dict[str, tuple[int, int]] = {}  # name -> (count, fd holding the shared lock)
        self._pending: dict[str, Future] = {}
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="imagenet-pipe-prefetch")
        self._pid = os.getpid()

    @property
    def root(self) -> Path:
        """The local metadata folder (manifest, ``_info.json``, ``classes.tsv``, ``.idx`` files)."""
        return self.dataset.root

    # --- readers -------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        """Local path of the complete, verified shard ``name`` (downloaded now if it is not in the
        cache), pinned until :meth:`release`: it is not evicted while pinned."""
        record = self._record(name)
        with self._lock:
            pending = self._pending.pop(name, None)
        if pending is not None:
            pending.result()  # a failed background download raises here, for the shard it was for
        with self._lock:
            if name in self._pins:
                count, fd = self._pins[name]
                self._pins[name] = (count + 1, fd)
                return self._touch(name)
        fd = self._pin(record)
        with self._lock:
            count, held = self._pins.get(name, (0, None))
            if held is not None:  # another thread pinned it meanwhile: one fd per shard is enough
                os.close(fd)
                fd = held
            self._pins[name] = (count + 1, fd)
        return self.dir / name

    def release(self, name: str) -> None:
        """Unpin a shard returned by :meth:`path` (once per call to it)."""
        with self._lock:
            count, fd = self._pins[name]
            if count > 1:
                self._pins[name] = (count - 1, fd)
                return
            del self._pins[name]
        os.close(fd)

    @contextmanager
    def open(self, name: str) -> Iterator[Path]:
        """``with cache.open(name) as path:`` pinned for the block."""
        path = self.path(name)
        try:
            yield path
        finally:
            self.release(name)

    def prefetch(self, names: Iterable[str]) -> None:
        """Start downloading these shards in background threads (in order); errors surface in
        :meth:`path` for the shard concerned."""
        for name in names:
            record = self._record(name)
            with self._lock:
                if name not in self._pending and name not in self._pins:
                    self._pending[name] = self._pool.submit(self._ensure, record)

    def cached(self) -> list[str]:
        """Shards of this dataset complete in the cache now."""
        return sorted(n for n, r in self.dataset.shards.items() if self._complete(r))

    def close(self) -> None:
        """Stop prefetching, release every pin, remove a temporary cache."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            fds = [fd for _, fd in self._pins.values()]
            self._pins.clear()
            self._pending.clear()
        for fd in fds:
            os.close(fd)
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> ShardCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals -----------------------------------------------------------------------------
    def _record(self, name: str) -> ShardRecord:
        if os.getpid() != self._pid:  # the prefetch threads and pinning locks stayed in the parent
            raise StorageError(f"{self.dataset.url}: a ShardCache cannot be used in a forked process; open one "
                               "per process on the same cache_dir")
        try:
            return self.dataset.shards[name]
        except KeyError:
            raise StorageError(f"{self.dataset.url / name}: not a shard of this dataset's manifest") from None

    def _lock_path(self, name: str) -> Path:
        return self.dir / f"{name}.lock"

    def _complete(self, record: ShardRecord) -> bool:
        """Verified before its rename, so a file of the right size under the final name is good."""
        try:
            return (self.dir / record.name).stat().st_size == record.bytes
        except FileNotFoundError:
            return False

    def _touch(self, name: str) -> Path:
        path = self.dir / name
        os.utime(path)  # the mtime orders eviction: least recently used first
        return path

    def _pin(self, record: ShardRecord) -> int:
        """An fd holding the shard's shared lock, the shard complete in the cache."""
        for _ in range(3):
            fd = shared_lock(self._lock_path(record.name))
            if self._complete(record):
                self._touch(record.name)
                return fd
            os.close(fd)
            self._ensure(record)
        raise StorageError(f"{self.dataset.url / record.name}: evicted again before it could be used; "
                           f"cache_limit {self.limit} is too small for the shards in use at once")

    def _ensure(self, record: ShardRecord) -> None:
        """Download the shard unless it is complete in the cache (one process per node does it)."""
        with locked(self._lock_path(record.name)):
            if self._complete(record):
                return
            for stale in self.dir.glob(f"{record.name}.partial-*"):  # a killed download's (we hold the lock)
                stale.unlink(missing_ok=True)
            self._make_room(record)
            self.client.download(self.dataset.shard_url(record.name), self.dir / record.name, size=record.bytes,
                                 sha256=record.sha256)
            with self._lock:
                self.downloaded.append(record.name)

    def _make_room(self, record: ShardRecord) -> None:
        """Evict least recently used complete shards (of any dataset in this cache folder) until
        ``record`` fits under the limit; shards in use or being downloaded are skipped."""
        if self.limit is None:
            return
        if record.bytes > self.limit:
            raise StorageError(f"{self.dataset.url / record.name}: {record.bytes} bytes exceed "
                               f"cache_limit {self.limit}")
        with locked(self.cache_dir / EVICT_LOCK):
            files = []
            for path in self.cache_dir.glob(f"*/{SHARDS_DIR}/*.tar"):
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                files.append((st.st_mtime_ns, st.st_size, path))
            used = sum(size for _, size, _ in files)
            for _, size, path in sorted(files):
                if used + record.bytes <= self.limit:
                    return
                if _evict(path):
                    used -= size


def _evict(path: Path) -> bool:
    """Delete a cached shard unless a reader holds it (or it is being downloaded)."""
    fd = try_exclusive(path.with_name(f"{path.name}.lock"))
    if fd is None:
        return False
    try:
        path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)
