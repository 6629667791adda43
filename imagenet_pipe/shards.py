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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

SAFE_KEY = re.compile(r"^[A-Za-z0-9_-]{1,90}$")
IDX_VERSION = "v1.2"


def shard_name(prefix: str, split: str, index: int, num_shards: int) -> str:
    """HF-hub style: ``imagenet1k-train-0000.tar`` (digits = ceil(log10(num_shards)))."""
    digits = max(1, math.ceil(math.log10(num_shards))) if num_shards > 1 else 1
    return f"{prefix}-{split}-{index:0{digits}d}.tar"


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


class _HashingFile:
    def __init__(self, f: BinaryIO) -> None:
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.f.write(data)

    def tell(self) -> int:
        return self.size


class ShardWriter:
    """Writes one shard under a temporary name and renames it (and its ``.idx``) when complete."""

    def __init__(self, directory: Path, name: str, split: str, tmp_suffix: str = ".partial") -> None:
        self.dir, self.name, self.split = Path(directory), name, split
        self._suffix = tmp_suffix
        self._tmp = self.dir / (name + tmp_suffix)
        self._file = open(self._tmp, "wb")
        self._out = _HashingFile(self._file)
        self._tar = tarfile.open(fileobj=self._out, mode="w", format=tarfile.USTAR_FORMAT)
        self._idx: list[str] = []

    def write(self, key: str, members: dict[str, bytes]) -> None:
        """One sample: ``members`` maps extension -> bytes; written in sorted extension order."""
        check_key(key)
        fields = []
        for ext in sorted(members):
            data = members[ext]
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode = len(data), 0, 0o444
            info.uname = info.gname = "bigdata"
            header_at = self._tar.offset
            self._tar.addfile(info, _BytesReader(data))
            fields.append(f"{ext} {header_at + tarfile.BLOCKSIZE} {len(data)} {info.name}")
        self._idx.append(" ".join(fields))

    def close(self) -> ShardRecord:
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        idx_tmp = self.dir / (idx_name(self.name) + self._suffix)
        idx_tmp.write_text(f"{IDX_VERSION} {len(self._idx)}\n" + "".join(line + "\n" for line in self._idx))
        os.replace(idx_tmp, self.dir / idx_name(self.name))
        os.replace(self._tmp, self.dir / self.name)
        return ShardRecord(self.name, self.split, len(self._idx), self._out.size, self._out.sha.hexdigest())

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


class _BytesReader:
    """Minimal file object for tarfile.addfile without copying into a BytesIO."""

    def __init__(self, data: bytes) -> None:
        self.view, self.pos = memoryview(data), 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.view) if n < 0 else min(len(self.view), self.pos + n)
        chunk = self.view[self.pos : end]
        self.pos = end
        return chunk

    def readinto(self, b: bytearray) -> int:
        chunk = self.read(len(b))
        b[: len(chunk)] = chunk
        return len(chunk)


# --- reading back ----------------------------------------------------------------------------

@dataclass(frozen=True)
class IdxComponent:
    ext: str
    offset: int
    size: int
    name: str


def read_idx(path: Path) -> list[list[IdxComponent]]:
    """Parse a DALI v1.2 index into samples of components."""
    lines = Path(path).read_text().splitlines()
    version, count = lines[0].split()
    if version != IDX_VERSION:
        raise ValueError(f"{path}: index version {version!r}, expected {IDX_VERSION}")
    samples = []
    for line in lines[1:]:
        tok = line.split()
        if len(tok) % 4:
            raise ValueError(f"{path}: malformed index line {line!r}")
        samples.append([IdxComponent(tok[i], int(tok[i + 1]), int(tok[i + 2]), tok[i + 3])
                        for i in range(0, len(tok), 4)])
    if int(count) != len(samples):
        raise ValueError(f"{path}: header says {count} samples, found {len(samples)} lines")
    return samples


def index_tar(path: Path) -> list[list[IdxComponent]]:
    """What the index of a tar should say, computed from the tar itself (for verification)."""
    samples: list[list[IdxComponent]] = []
    last_key = None
    with tarfile.open(path, mode="r:") as tar:
        for info in tar:
            if not info.isfile():
                continue
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
    """(key, {ext: bytes}) for each sample of a shard, in order."""
    with tarfile.open(path, mode="r:") as tar:
        key, sample = None, {}
        for info in tar:
            if not info.isfile():
                continue
            k, _, ext = info.name.rsplit("/", 1)[-1].partition(".")
            if k != key and key is not None:
                yield key, sample
                sample = {}
            key = k
            sample[ext] = tar.extractfile(info).read()
        if key is not None:
            yield key, sample
