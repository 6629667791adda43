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
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from ..errors import ArchiveError

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


class ScanLog(Protocol):
    """Where a listing reports what it does not turn into samples (a raw-layout reader)."""

    def ignore(self, path: str, why: str) -> None: ...

    def warn(self, message: str) -> None: ...


def iter_tar(fileobj: BinaryIO, where: str, *, base: int = 0, size: int | None = None,
             log: ScanLog | None = None) -> Iterator[TarMember]:
    """Regular-file members of an uncompressed tar, with absolute data offsets.

    Only headers are read: tarfile seeks over member data, so listing a 140 GB archive reads a
    few hundred MB of headers. tarfile quietly stops at a header it cannot read; here every member
    is accounted for: a damaged header, a cut inside a header or inside a member's data raises
    :class:`ArchiveError` naming ``where`` and the offset; links, devices and sparse members are
    reported to ``log.ignore``; a tar that stops right after a member without its end-of-archive
    blocks (truncated at a member boundary) is reported to ``log.warn``.
    """
    if size is None:
        size = fileobj.seek(0, os.SEEK_END)
    fileobj.seek(0)

    def at(offset: int) -> str:  # where an offset in an inner tar lies in the file on disk
        return f"offset {offset} (byte {base + offset} of the outer archive)" if base else f"offset {offset}"

    try:
        tar = tarfile.open(fileobj=fileobj, mode="r:")
    except tarfile.TarError as e:
        raise ArchiveError(f"{where}: not a readable tar: header at {at(0)}: {e}") from None
    with tar:
        while True:
            offset = tar.offset
            try:
                info = tar.next()
            except tarfile.TarError as e:
                raise ArchiveError(f"{where}: damaged tar header at {at(offset)}: {e}") from None
            if info is None:
                break
            if info.isreg() and info.sparse is None:
                if info.offset_data + info.size > size:
                    raise ArchiveError(f"{where}: truncated inside member {info.name!r} at {at(info.offset_data)}: "
                                       f"{max(0, size - info.offset_data)} of {info.size} bytes present")
                yield TarMember(info.name, base + info.offset_data, info.size)
            elif not info.isdir() and log is not None:
                log.ignore(f"{where}/{info.name}", f"{_member_kind(info)}: not a regular file, not read")
            # the member list is not needed; dropping it keeps memory flat on 10^6-member tars
            tar.members.clear()
        _check_tar_end(fileobj, tar.offset, size, where, at, log)


def _member_kind(info: tarfile.TarInfo) -> str:
    if info.issym():
        return f"symbolic link to {info.linkname!r}"
    if info.islnk():
        return f"hard link to {info.linkname!r}"
    if info.isreg():
        return "sparse file"
    return {tarfile.FIFOTYPE: "FIFO", tarfile.CHRTYPE: "character device",
            tarfile.BLKTYPE: "block device"}.get(info.type, f"tar entry of type {info.type!r}")


def _check_tar_end(fileobj: BinaryIO, offset: int, size: int, where: str, at: Callable[[int], str],
                   log: ScanLog | None) -> None:
    """tarfile stopped at ``offset``: a zero block there is the end of the archive; anything else
    is damage that would silently drop every member after it."""
    if offset >= size:
        if log is not None:
            log.warn(f"{where}: ends after its last member without the end-of-archive blocks (truncated at "
                     f"{at(size)}?); every member listed is complete")
        return
    fileobj.seek(offset)
    block = fileobj.read(tarfile.BLOCKSIZE)
    if len(block) < tarfile.BLOCKSIZE:
        raise ArchiveError(f"{where}: truncated inside the header at {at(offset)}: "
                           f"{len(block)} of {tarfile.BLOCKSIZE} bytes present")
    if block.count(0) != len(block):
        raise ArchiveError(f"{where}: damaged tar header at {at(offset)}: bad checksum; the members from there "
                           "on cannot be read: re-download the archive")


def iter_nested_tar(fileobj: BinaryIO, member: TarMember, where: str, log: ScanLog | None = None
                    ) -> Iterator[TarMember]:
    """Members of a tar stored (uncompressed) inside another tar, offsets in the outer file."""
    view = _Window(fileobj, member.offset, member.size)
    yield from iter_tar(view, where, base=member.offset, size=member.size, log=log)


class NestedTarListing:
    """Lists one tar stored inside the tar file at ``path`` (a class tar of a tar of tars), in any
    process: picklable, it opens the file itself. The listings of different inner tars are
    independent, so a scan can run them in parallel and :func:`replay` them in archive order.

    The result is compact (plain lists pickle fast): member names, data offsets in the outer file
    and sizes, plus the notes ``(position, kind, text, reason)`` the listing made (kind
    ``ignore`` or ``warn``), each after the ``position`` members listed before it.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)

    def __call__(self, job: tuple[TarMember, str]) -> Listing:
        member, where = job
        names: list[str] = []
        offsets: list[int] = []
        sizes: list[int] = []
        notes = _Notes(names)
        with open(self.path, "rb") as f:
            for m in iter_nested_tar(f, member, where, notes):
                names.append(m.name)
                offsets.append(m.offset)
                sizes.append(m.size)
        return names, offsets, sizes, notes.made


# (names, offsets, sizes, notes) of one listed tar: see NestedTarListing
Listing = tuple[list[str], list[int], list[int], list[tuple[int, str, str, str]]]


class _Notes:
    """A :class:`ScanLog` that keeps what a listing reports, with its position among the members."""

    def __init__(self, listed: list[str]) -> None:
        self.listed, self.made = listed, []

    def ignore(self, path: str, why: str) -> None:
        self.made.append((len(self.listed), "ignore", path, why))

    def warn(self, message: str) -> None:
        self.made.append((len(self.listed), "warn", message, ""))


def replay(listing: Listing, log: ScanLog) -> Iterator[TarMember]:
    """The members of a :class:`NestedTarListing` result, its notes passed to ``log`` where the
    listing made them: the same calls, in the same order, as listing the tar here."""
    names, offsets, sizes, notes = listing
    pending = iter(notes)
    note = next(pending, None)
    for i, name in enumerate(names):
        while note is not None and note[0] == i:
            _tell(log, note)
            note = next(pending, None)
        yield TarMember(name, offsets[i], sizes[i])
    while note is not None:
        _tell(log, note)
        note = next(pending, None)


def _tell(log: ScanLog, note: tuple[int, str, str, str]) -> None:
    _, kind, text, reason = note
    if kind == "ignore":
        log.ignore(text, reason)
    else:
        log.warn(text)


class _Window:
    """A seekable read-only view of ``[start, start + size)`` of a file object."""

    def __init__(self, f: BinaryIO, start: int, size: int) -> None:
        self.f, self.start, self.size, self.pos = f, start, size, 0

    def read(self, n: int = -1) -> bytes:
        if n < 0 or self.pos + n > self.size:
            n = max(0, self.size - self.pos)
        self.f.seek(self.start + self.pos)
        data = self.f.read(n)
        self.pos += len(data)
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = {0: pos, 1: self.pos + pos, 2: self.size + pos}[whence]
        return self.pos

    def tell(self) -> int:
        return self.pos


def spool_decompressed(src: BinaryIO, kind: str, dest: Path, where: str) -> Path:
    """Stream-decompress ``src`` (``where``: its name in messages) into ``dest`` (atomically); reuse a
    finished spool on resume. Damaged or truncated compressed data raises :class:`ArchiveError`."""
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    try:
        with decompressing_reader(src, kind) as stream, open(tmp, "wb") as out:
            shutil.copyfileobj(stream, out, 8 << 20)
    except (EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile, zipfile.BadZipFile) as e:
        tmp.unlink(missing_ok=True)
        raise ArchiveError(f"{where}: {kind} data cannot be decompressed ({e}): the file is truncated or "
                           "damaged; re-download it") from None
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno is not None:  # the disk (full, unwritable) rather than the data
            raise
        raise ArchiveError(f"{where}: {kind} data cannot be decompressed ({e}): the file is damaged; "
                           "re-download it") from None
    os.replace(tmp, dest)
    return dest


def open_zip(path: Path) -> zipfile.ZipFile:
    """A zip file; a truncated or damaged one (its central directory sits at the end) raises
    :class:`ArchiveError` naming it."""
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise ArchiveError(f"{path}: not a readable zip ({e}): truncated or damaged; re-download it") from None


def read_zip_member(zf: zipfile.ZipFile, name: str) -> bytes:
    """One member of an open zip; damaged compressed data (CRC, deflate) raises :class:`ArchiveError`."""
    try:
        return zf.read(name)
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
        raise ArchiveError(f"{zf.filename}:{name}: cannot be read ({e}): damaged; re-download it") from None


class TooLarge(ArchiveError):
    """A file too large to be an image within the pixel limit: never read into memory."""


def _check_size(size: int, max_bytes: int | None, where: str) -> None:
    if max_bytes is not None and size > max_bytes:
        raise TooLarge(f"{size:,} bytes, larger than any image within the pixel limit ({max_bytes:,} bytes): {where}")


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
                path = spool_decompressed(f, kind, spool_dir / (path.name + ".spool.tar"), path.name)
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

    def read(self, cid: int, offset: int, size: int, member: str, max_bytes: int | None = None) -> bytes:
        """The bytes of one sample; a file that cannot be read raises :class:`ArchiveError` naming it,
        one larger than ``max_bytes`` :class:`TooLarge` before anything is read."""
        kind, path = self.containers.entries[cid]
        try:
            if kind == KIND_DIR:
                _check_size((Path(path) / member).stat().st_size, max_bytes, f"{path}/{member}")
                return (Path(path) / member).read_bytes()
            handle = self._handle(cid, kind, path)
            if kind == KIND_ZIP:
                _check_size(handle.getinfo(member).file_size, max_bytes, f"{path}:{member}")
                return handle.read(member)
            _check_size(size, max_bytes, f"{path} at offset {offset}")
            data = os.pread(handle, size, offset)
        except (OSError, EOFError, KeyError, zlib.error, zipfile.BadZipFile) as e:
            where = f"{path}/{member}" if kind == KIND_DIR else f"{path}:{member}" if kind == KIND_ZIP else \
                f"{path} at offset {offset}"
            raise ArchiveError(f"cannot read {where}: {e}") from None
        if len(data) != size:
            raise ArchiveError(f"{path}: short read at offset {offset}, {len(data)} of {size} bytes (the file "
                               "changed or was truncated after it was scanned)")
        return data

    def _handle(self, cid: int, kind: str, path: str):
        handle = self._open.get(cid)
        if handle is not None:
            self._open.move_to_end(cid)
            return handle
        if len(self._open) >= self.MAX_OPEN:  # many fixup containers: keep descriptors bounded
            self._close(self._open.popitem(last=False)[1])
        handle = open_zip(Path(path)) if kind == KIND_ZIP else os.open(path, os.O_RDONLY)
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
