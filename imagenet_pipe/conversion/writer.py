"""Writing one WebDataset shard and its DALI index.

Tars follow ``docs/shard-format.md`` (section 2): uncompressed USTAR, flat ``<key>.<ext>``
members in sorted extension order, fixed ``mtime=0``, owner ``bigdata``, mode 0444 (what
``webdataset.TarWriter`` writes, minus the wall-clock mtime), so the same samples always give the
same bytes. The DALI index (v1.2, section 4) is written from the offsets known while writing: no
second pass over the tar.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path
from typing import Protocol

from ..format import IDX_VERSION, ShardRecord, check_key, idx_name


class ShardSink(Protocol):
    """Where finished shards go instead of staying in the output folder (e.g. a bucket)."""

    def has(self, record: ShardRecord) -> bool:
        """True when the shard is already stored there, complete (same size and sha256)."""

    def put(self, record: ShardRecord, path: Path) -> None:
        """Store the shard just written at ``path`` (its ``.idx`` stays), then delete ``path``."""


class ShardWriter:
    """Writes one shard under a temporary name and renames it (and its ``.idx``) when complete.

    Headers come from :meth:`tarfile.TarInfo.tobuf` (USTAR); each sample's three members are
    framed (header, data, NUL padding to 512) and written in one call, and the archive ends like
    tarfile's: two zero blocks, padded to a 10 KiB record. Same bytes as ``tarfile.addfile``,
    without its per-member copy loop. No fsync: a killed run loses nothing the kernel holds, and
    resume re-checks every finished shard's size.
    """

    def __init__(self, directory: Path, name: str, split: str, tmp_suffix: str = ".partial") -> None:
        self.dir, self.name, self.split = Path(directory), name, split
        self._suffix = tmp_suffix
        self._tmp = self.dir / (name + tmp_suffix)
        self._file = open(self._tmp, "wb")
        self._sha = hashlib.sha256()
        self._offset = 0
        self._idx: list[str] = []
        self._info = tarfile.TarInfo()
        self._info.mtime, self._info.mode = 0, 0o444
        self._info.uname = self._info.gname = "bigdata"

    def write(self, key: str, members: dict[str, bytes]) -> None:
        """One sample: ``members`` maps extension -> bytes; written in sorted extension order."""
        check_key(key)
        fields, parts = [], []
        offset = self._offset
        for ext in sorted(members):
            data = members[ext]
            self._info.name, self._info.size = f"{key}.{ext}", len(data)
            header = self._info.tobuf(tarfile.USTAR_FORMAT, tarfile.ENCODING, "surrogateescape")
            fields.append(f"{ext} {offset + len(header)} {len(data)} {self._info.name}")
            parts += (header, data, _PADDING[: -len(data) % tarfile.BLOCKSIZE])
            offset += len(header) + len(data) + (-len(data) % tarfile.BLOCKSIZE)
        self._emit(b"".join(parts))
        self._idx.append(" ".join(fields))

    def _emit(self, blob: bytes) -> None:
        self._sha.update(blob)
        self._file.write(blob)
        self._offset += len(blob)

    def close(self) -> ShardRecord:
        end = self._offset + 2 * tarfile.BLOCKSIZE
        self._emit(bytes(2 * tarfile.BLOCKSIZE + (-end % tarfile.RECORDSIZE)))
        self._file.close()
        idx_tmp = self.dir / (idx_name(self.name) + self._suffix)
        idx_tmp.write_text(f"{IDX_VERSION} {len(self._idx)}\n" + "".join(line + "\n" for line in self._idx))
        os.replace(idx_tmp, self.dir / idx_name(self.name))
        os.replace(self._tmp, self.dir / self.name)
        return ShardRecord(self.name, self.split, len(self._idx), self._offset, self._sha.hexdigest())

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


_PADDING = bytes(tarfile.BLOCKSIZE)
