"""Random access into raw downloads without extracting them.

Every sample is located as ``(container, offset, size, member)``:

* an **uncompressed tar** (also a tar inside a tar) is addressed by absolute byte offset in the
  outer file, so reading a sample is one ``pread``;
* a **zip** member is read through :mod:`zipfile` by name;
* a **directory** file is read by relative path.

Compressed tars (``.tar.gz`` and tars that are compressed despite their name) cannot be read at
random. They are decompressed once, as a stream, into one uncompressed spool tar in the work
directory (not extracted into files), which is then addressed like any other tar and deleted when
the conversion finishes.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import shutil
import tarfile
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

MAGIC = {
    b"\x1f\x8b": "gz",
    b"BZh": "bz2",
    b"\xfd7zXZ\x00": "xz",
}


def compression_of(head: bytes) -> str | None:
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            return kind
    return None


def file_compression(path: Path) -> str | None:
    with open(path, "rb") as f:
        return compression_of(f.read(8))


def decompressing_reader(fileobj: BinaryIO, kind: str) -> BinaryIO:
    return {"gz": gzip.GzipFile, "bz2": bz2.BZ2File, "xz": lzma.LZMAFile}[kind](fileobj=fileobj)


@dataclass(frozen=True)
class TarMember:
    name: str
    offset: int  # absolute offset of the member's data in the (outer) file
    size: int


def iter_tar(fileobj: BinaryIO, base: int = 0) -> Iterator[TarMember]:
    """Regular-file members of an uncompressed tar, with absolute data offsets.

    Only headers are read: tarfile seeks over member data, so listing a 140 GB archive reads a
    few hundred MB of headers.
    """
    with tarfile.open(fileobj=fileobj, mode="r:") as tar:
        while (info := tar.next()) is not None:
            if info.isfile():
                yield TarMember(info.name, base + info.offset_data, info.size)
            # the member list is not needed; dropping it keeps memory flat on 10^6-member tars
            tar.members.clear()


def iter_nested_tar(fileobj: BinaryIO, member: TarMember) -> Iterator[TarMember]:
    """Members of a tar stored (uncompressed) inside another tar, offsets in the outer file."""
    view = _Window(fileobj, member.offset, member.size)
    yield from iter_tar(view, base=member.offset)


class _Window:
    """A seekable read-only view of ``[start, start + size)`` of a file object."""

    def __init__(self, f: BinaryIO, start: int, size: int) -> None:
        self.f, self.start, self.size, self.pos = f, start, size, 0

    def read(self, n: int = -1) -> bytes:
        if n < 0 or self.pos + n > self.size:
            n = self.size - self.pos
        self.f.seek(self.start + self.pos)
        data = self.f.read(n)
        self.pos += len(data)
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = {0: pos, 1: self.pos + pos, 2: self.size + pos}[whence]
        return self.pos

    def tell(self) -> int:
        return self.pos


def spool_decompressed(src: BinaryIO, kind: str, dest: Path) -> Path:
    """Stream-decompress ``src`` into ``dest`` (atomically); reuse a finished spool on resume."""
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    with decompressing_reader(src, kind) as stream, open(tmp, "wb") as out:
        shutil.copyfileobj(stream, out, 8 << 20)
    os.replace(tmp, dest)
    return dest


# --- containers ----------------------------------------------------------------------------

KIND_FILE, KIND_ZIP, KIND_DIR = "file", "zip", "dir"


@dataclass
class Containers:
    """The files a catalog points into. ``file``: read by offset; ``zip``: by member name;
    ``dir``: by relative path."""

    entries: list[tuple[str, str]] = field(default_factory=list)  # (kind, path)
    _ids: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._ids = {item: cid for cid, item in enumerate(self.entries)}

    def add(self, kind: str, path: Path | str) -> int:
        item = (kind, str(path))
        if item not in self._ids:
            self._ids[item] = len(self.entries)
            self.entries.append(item)
        return self._ids[item]

    def open_tar(self, path: Path, spool_dir: Path) -> tuple[int, Path]:
        """Container id for a tar file, spooling it first when it is compressed."""
        kind = file_compression(path)
        if kind is not None:
            with open(path, "rb") as f:
                path = spool_decompressed(f, kind, spool_dir / (path.name + ".spool.tar"))
        return self.add(KIND_FILE, path), path

    def to_json(self) -> list[list[str]]:
        return [list(e) for e in self.entries]

    @classmethod
    def from_json(cls, data: list[list[str]]) -> Containers:
        return cls([(k, p) for k, p in data])


class ByteReader:
    """Reads sample bytes from containers. Make one per process, after forking: zip handles
    carry a file position and must not be shared."""

    MAX_OPEN = 64

    def __init__(self, containers: Containers) -> None:
        self.containers = containers
        self._open: OrderedDict[int, int | zipfile.ZipFile] = OrderedDict()

    def read(self, cid: int, offset: int, size: int, member: str) -> bytes:
        kind, path = self.containers.entries[cid]
        if kind == KIND_DIR:
            return (Path(path) / member).read_bytes()
        handle = self._handle(cid, kind, path)
        if kind == KIND_ZIP:
            return handle.read(member)
        data = os.pread(handle, size, offset)
        if len(data) != size:
            raise OSError(f"short read from {path} at {offset}: {len(data)} of {size} bytes")
        return data

    def _handle(self, cid: int, kind: str, path: str):
        handle = self._open.get(cid)
        if handle is not None:
            self._open.move_to_end(cid)
            return handle
        if len(self._open) >= self.MAX_OPEN:  # many fixup containers: keep descriptors bounded
            self._close(self._open.popitem(last=False)[1])
        handle = zipfile.ZipFile(path) if kind == KIND_ZIP else os.open(path, os.O_RDONLY)
        self._open[cid] = handle
        return handle

    @staticmethod
    def _close(handle) -> None:
        if isinstance(handle, int):
            os.close(handle)
        else:
            handle.close()

    def close(self) -> None:
        for handle in self._open.values():
            self._close(handle)
        self._open.clear()
