"""Writing and reading WebDataset shards and their DALI index.

Tars follow ``shard-format.md``: uncompressed USTAR, flat ``<key>.<ext>`` members in sorted
extension order, fixed ``mtime=0``, owner ``bigdata``, mode 0444 (what ``webdataset.TarWriter``
writes, minus the wall-clock mtime), so the same samples always give the same bytes. The DALI
index (v1.2) is written from the offsets known while writing: no second pass over the tar.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .errors import ShardError

SAFE_KEY = re.compile(r"^[A-Za-z0-9_-]{1,90}$")
IDX_VERSION = "v1.2"


def shard_name(prefix: str, split: str, index: int, num_shards: int) -> str:
    """HF-hub style: ``imagenet1k-train-0000.tar`` (digits = ceil(log10(num_shards)))."""
    digits = max(1, math.ceil(math.log10(num_shards))) if num_shards > 1 else 1
    return f"{prefix}-{split}-{index:0{digits}d}.tar"


def shard_pattern(prefix: str, splits: Iterable[str]) -> re.Pattern:
    """Names of the shards and DALI indexes :func:`shard_name` gives for these splits."""
    alternatives = "|".join(re.escape(s) for s in splits)
    return re.compile(rf"^{re.escape(prefix)}-(?:{alternatives})-\d+\.(?:tar|idx)$")


def idx_name(tar_name: str) -> str:
    """DALI's convention: the tar path cut at the first dot of the basename, plus ``.idx``."""
    return tar_name.split(".", 1)[0] + ".idx"


def check_key(key: str) -> str:
    if not SAFE_KEY.match(key):
        raise ValueError(f"unsafe WebDataset key {key!r}: use 1-90 characters of [A-Za-z0-9_-]")
    return key


@dataclass(frozen=True)
class ShardRecord:
    name: str
    split: str
    samples: int
    bytes: int
    sha256: str


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


# --- reading back ----------------------------------------------------------------------------

@dataclass(frozen=True)
class IdxComponent:
    ext: str
    offset: int
    size: int
    name: str


def read_idx(path: Path) -> list[list[IdxComponent]]:
    """Parse a DALI v1.2 index into samples of components; a malformed one raises :class:`ShardError`
    naming the file and line."""
    try:
        lines = Path(path).read_text().splitlines()
    except UnicodeDecodeError as e:
        raise ShardError(f"{path}: not a text file ({e})") from None
    head = lines[0].split() if lines else []
    if len(head) != 2 or head[0] != IDX_VERSION or not head[1].isdigit():
        raise ShardError(f"{path}: line 1 is {lines[0][:40] if lines else ''!r}, not a DALI index header "
                         f"'{IDX_VERSION} <samples>'")
    samples = []
    for number, line in enumerate(lines[1:], 2):
        tok = line.split()
        if not tok or len(tok) % 4 or not all(tok[i].isdigit() for i in range(len(tok)) if i % 4 in (1, 2)):
            raise ShardError(f"{path} line {number}: malformed index line {line[:80]!r}")
        samples.append([IdxComponent(tok[i], int(tok[i + 1]), int(tok[i + 2]), tok[i + 3])
                        for i in range(0, len(tok), 4)])
    if int(head[1]) != len(samples):
        raise ShardError(f"{path}: header says {head[1]} samples, found {len(samples)} lines")
    return samples


def index_tar(path: Path) -> list[list[IdxComponent]]:
    """What the index of a tar should say, computed from the tar itself (for verification)."""
    samples: list[list[IdxComponent]] = []
    last_key = None
    with _open_shard(path) as tar:
        for info in _members(tar, path):
            base = info.name.rsplit("/", 1)[-1]
            key, _, ext = base.partition(".")
            component = IdxComponent(ext, info.offset_data, info.size, info.name)
            if key == last_key:
                samples[-1].append(component)
            else:
                samples.append([component])
                last_key = key
    return samples


def iter_samples(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {ext: bytes}) for each sample of a shard, in order; a damaged or truncated shard
    raises :class:`ShardError` naming it."""
    with _open_shard(path) as tar:
        key, sample = None, {}
        for info in _members(tar, path):
            k, _, ext = info.name.rsplit("/", 1)[-1].partition(".")
            if k != key and key is not None:
                yield key, sample
                sample = {}
            key = k
            try:
                sample[ext] = tar.extractfile(info).read()
            except (tarfile.TarError, EOFError) as e:
                raise ShardError(f"{path}: member {info.name} at offset {info.offset_data} cannot be read ({e}): "
                                 "truncated or damaged shard") from None
        if key is not None:
            yield key, sample


def _open_shard(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, mode="r:")
    except tarfile.TarError as e:
        raise ShardError(f"{path}: not a readable tar ({e})") from None


def _members(tar: tarfile.TarFile, path: Path) -> Iterator[tarfile.TarInfo]:
    while True:
        try:
            info = tar.next()
        except tarfile.TarError as e:
            raise ShardError(f"{path}: damaged tar header at offset {tar.offset} ({e})") from None
        if info is None:
            return
        if info.isfile():
            yield info
