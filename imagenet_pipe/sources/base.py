"""What every raw-layout reader provides, and the listing helpers they share.

A reader (one module per raw layout, like timm's ``timm/data/readers``) knows how to recognise
its layout in the folder the user downloaded into (:meth:`Source.detect`), and how to list the
samples with their labels and byte locations (:meth:`Source.scan`). It never decodes images and
never extracts archives; the converter does everything else.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Protocol, TypeVar

from ..errors import SourceError
from .archive import (
    KIND_DIR,
    KIND_FILE,
    KIND_ZIP,
    Containers,
    Listing,
    NestedTarListing,
    ScanLog,
    compression_of,
    iter_tar,
    open_zip,
    replay,
    spool_decompressed,
)

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
WNID = re.compile(r"^n\d{8}$")
UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_-]")
MAX_KEY = 90  # shard member names must stay under tar's 100 bytes with the extension


Item = TypeVar("Item")
Result = TypeVar("Result")


class OrderedMap(Protocol):
    """``fn(item)`` for every item, results in item order, computed anywhere: a reader hands its
    independent listing work (e.g. one class tar each) to one of these. ``fn`` is picklable."""

    def __call__(self, fn: Callable[[Item], Result], items: Sequence[Item]) -> Iterator[Result]: ...


def serial_map(fn: Callable[[Item], Result], items: Sequence[Item]) -> Iterator[Result]:
    """The :class:`OrderedMap` of a reader left alone: here, one item after another."""
    return map(fn, items)


class Entry(NamedTuple):
    """One raw sample as a source module reports it."""

    split: str
    key: str  # safe WebDataset key, unique within the split
    filename: str  # original name, recorded in the sample's json
    label: int
    cid: int  # container id (see archive.Containers)
    offset: int = 0
    size: int = 0
    member: str = ""  # member name / relative path for zip and dir containers
    extra: dict[str, Any] | None = None  # dataset-specific json fields


@dataclass(frozen=True)
class FileRef:
    """A file somewhere in a download: on disk, in a zip, or in an (uncompressed) tar."""

    path: str  # relative path inside the tree, '/'-separated
    cid: int
    offset: int = 0
    size: int = 0
    member: str = ""

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        return self.name.split(".", 1)[0]

    def entry(self, split: str, key: str, filename: str, label: int, extra: dict | None = None) -> Entry:
        return Entry(split, key, filename, label, self.cid, self.offset, self.size, self.member, extra)


class Source(ABC):
    """A raw layout of one dataset."""

    dataset: ClassVar[str]
    layout: ClassVar[str]
    description: ClassVar[str]  # the expected files, shown by ``imagenet-pipe datasets``
    splits: ClassVar[tuple[str, ...]]

    def __init__(self, root: Path, workdir: Path, **options) -> None:
        self.root = Path(root)
        self.workdir = Path(workdir)
        self.options = options
        self.ignored: list[tuple[str, str]] = []  # (file, why) for files that are not samples
        self.warnings: list[str] = []  # damage that lost nothing listed (e.g. a tar without its end blocks)
        # where independent listing work runs; the converter sets its workers (parallel scan)
        self.map_in_order: OrderedMap = serial_map

    @classmethod
    @abstractmethod
    def detect(cls, root: Path) -> bool:
        """True when ``root`` holds this layout."""

    @abstractmethod
    def scan(self, splits: list[str], containers: Containers) -> Iterator[Entry]:
        """Every sample of the requested splits (any order; the catalog sorts)."""

    def dataset_info(self) -> dict:
        """JSON-able facts about the dataset recorded in the manifest (e.g. a class subset)."""
        return {}

    @property
    def class_list(self) -> str | None:
        """The label space (a :mod:`classes` list name) when the reader chooses it, e.g. from a
        ``class_list`` dataset option; None means the dataset preset's. Read after :meth:`scan`."""
        return None

    def ignore(self, path: str, why: str) -> None:
        self.ignored.append((path, why))

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    @property
    def spool_dir(self) -> Path:
        return self.workdir / "spool"


def walk(src: Source, containers: Containers, path: Path) -> Iterator[FileRef]:
    """Files under ``path``: a directory, a zip, or a (possibly compressed) tar."""
    if path.is_dir():
        yield from walk_dir(path, containers, src)
    elif path.name.lower().endswith(".zip") or (not path.name.lower().endswith(TAR_SUFFIXES)
                                                and zipfile.is_zipfile(path)):  # by name first: damage hides the kind
        yield from walk_zip(path, containers)
    else:
        yield from walk_tar(src, path, containers)


def iter_class_tars(src: Source, path: Path, containers: Containers) -> Iterator[tuple[str, str, int, Iterator]]:
    """(wnid, where, container id, inner members) for every ``<wnid>.tar`` in a tar of per-class
    tars (ImageNet-1K train, fall11, winter21), read by offset; compressed archives are spooled.
    Other members are recorded as ignored. Consume each member iterator before the next item.

    The class tars are listed through ``src.map_in_order`` (in parallel where the converter gives
    it workers) and replayed in archive order, so the entries, container ids, ignored files and
    warnings, and the first error raised, are those of a serial listing whatever finishes first."""

    cid, readable = containers.open_tar(path, src.spool_dir)
    with open(readable, "rb") as f:
        outers = [(outer, f"{path.name}/{outer.name}", outer.name.rsplit("/", 1)[-1]) for outer in
                  iter_tar(f, path.name, log=src)]
    is_class = [base.endswith(".tar") and bool(WNID.match(base.removesuffix(".tar"))) for _, _, base in outers]
    jobs = [(outer, where) for (outer, where, _), keep in zip(outers, is_class, strict=True) if keep]
    listings: Iterator[Listing] = src.map_in_order(NestedTarListing(readable), jobs)
    for (_, where, base), keep in zip(outers, is_class, strict=True):
        if not keep:
            src.ignore(where, "not a <wnid>.tar class archive")
            continue
        yield base.removesuffix(".tar"), where, cid, replay(next(listings), src)


def walk_dir(path: Path, containers: Containers, log: ScanLog, where: str | None = None) -> Iterator[FileRef]:
    """Regular files under ``path`` (hidden names skipped), in sorted order. Links to folders are
    followed once; FIFOs, sockets, devices and broken links are recorded as ignored (under
    ``where``, default ``<folder name>/``) and never opened (a FIFO would block the reader); a
    folder that cannot be listed stops the scan."""
    cid = containers.add(KIND_DIR, path)
    where = f"{path.name}/" if where is None else where
    seen = {os.path.realpath(path)}

    def visit(folder: str, rel: str) -> Iterator[FileRef]:
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as e:
            raise SourceError(f"cannot list folder {folder}: {e.strerror or e}") from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            relpath = f"{rel}{entry.name}"
            if entry.is_dir():  # follows links
                real = os.path.realpath(entry.path)
                if real in seen:
                    log.ignore(f"{where}{relpath}/", "link to a folder already walked (a loop): not followed")
                    continue
                seen.add(real)
                yield from visit(entry.path, f"{relpath}/")
            elif entry.is_file():
                yield FileRef(relpath, cid, 0, 0, relpath)
            else:
                log.ignore(f"{where}{relpath}", f"{_special_file_kind(entry.path)}: not a regular file, not read")

    yield from visit(str(path), "")


def _special_file_kind(path: str) -> str:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "broken symbolic link"
    return ("FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode)
            else "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special file")


def walk_zip(path: Path, containers: Containers) -> Iterator[FileRef]:
    cid = containers.add(KIND_ZIP, path)
    with open_zip(path) as zf:
        for info in zf.infolist():
            if not info.is_dir():
                yield FileRef(info.filename, cid, 0, info.file_size, info.filename)


def walk_tar(src: Source, path: Path, containers: Containers) -> Iterator[FileRef]:
    cid, readable = containers.open_tar(path, src.spool_dir)
    with open(readable, "rb") as f:
        for m in iter_tar(f, path.name, log=src):
            yield FileRef(_clean(m.name), cid, m.offset, m.size)


def spool_zip_member(src: Source, zip_path: Path, member: str, containers: Containers) -> Iterator[FileRef]:
    """Files of a tar(.gz) stored inside a zip (the Kaggle download), via a decompressed spool."""
    dest = src.spool_dir / (Path(member).name + ".spool.tar")
    where = f"{zip_path.name}:{member}"
    with open_zip(zip_path) as zf, zf.open(member) as raw:
        head = raw.peek(8) if hasattr(raw, "peek") else b""
        kind = compression_of(head[:8])
        if kind is None:
            raise SourceError(f"{where} is not a compressed tar")
        spool_decompressed(raw, kind, dest, where)
    cid = containers.add(KIND_FILE, dest)
    with open(dest, "rb") as f:
        for m in iter_tar(f, where, log=src):
            yield FileRef(_clean(m.name), cid, m.offset, m.size)


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def name_stem(name: str) -> str:
    """File name without its (last) extension: ``0.000116_a b_0.86.jpg`` -> ``0.000116_a b_0.86``."""
    return name.rsplit(".", 1)[0] if "." in name else name


def safe_key(text: str) -> str:
    """A WebDataset key for ``text``: itself when it already is one (1-90 characters of
    ``[A-Za-z0-9_-]``); otherwise the unsafe characters become ``_`` (readers split keys at the first
    dot, DALI indexes at spaces), long names are cut, and a hash of the whole text is appended, so
    that different names keep different keys (``a b`` -> ``a_b-1c2f...``, distinct from ``a_b``)."""
    key = UNSAFE_KEY_CHARS.sub("_", text)
    if key == text and 0 < len(key) <= MAX_KEY:
        return key
    digest = hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=4).hexdigest()
    return f"{key[: MAX_KEY - len(digest) - 1]}-{digest}"


def file_key(name: str) -> str:
    """Key of a file whose name is unique within its split (``n01440764_10026.JPEG``,
    ``ILSVRC2012_val_00000001.JPEG``): its stem, made safe."""
    return safe_key(name_stem(name))


def class_key(wnid: str, name: str) -> str:
    """Key of a file in a class folder: ImageNet's own ``<wnid>_<n>`` stems as they are, any other
    stem prefixed with the class (``art_0`` and ``sketch_13`` repeat across classes)."""
    stem = name_stem(name)
    return safe_key(stem if stem.startswith(f"{wnid}_") else f"{wnid}_{stem}")


def class_file(path: str, top: str | None = None) -> tuple[str, str] | None:
    """(class folder, file name) of ``[<top>/]<class>/<file>``; None for any other depth."""
    parts = path.split("/")
    if top is not None and len(parts) > 1 and parts[0] == top:
        parts = parts[1:]
    return (parts[0], parts[1]) if len(parts) == 2 else None


def _clean(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name
