"""The shard folder format, shared by the side that writes it and the sides that read it.

What ``docs/shard-format.md`` describes, as code: the names of shards, DALI indexes and the other
files of an output folder (section 1), sample keys (section 3), the DALI ``.idx`` v1.2 reader
(section 4) and sample iteration over a shard's tar (section 2). The writer itself is
:class:`imagenet_pipe.conversion.writer.ShardWriter`.
"""

from __future__ import annotations

import json
import math
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .errors import ShardError

# --- file names (docs/shard-format.md, section 1) ------------------------------------------------

MANIFEST = "manifest.json"
INFO_FILES = ("_info.json", "info.json")  # timm >= 0.9.16 reads the first, older timm the second
SIZES_FILE, CLASSES_FILE, CARD_FILE = "sizes.json", "classes.tsv", "README.md"
WORK_DIR = ".imagenet-pipe-work"  # a conversion's state while it runs
TRASH_DIR = ".imagenet-pipe-work.done"  # the work folder, renamed before it is deleted


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


def wids_name(prefix: str, split: str) -> str:
    """The wids shard index of one split."""
    return f"{prefix}-{split}.json"


# --- keys (docs/shard-format.md, section 3) ------------------------------------------------------

SAFE_KEY = re.compile(r"^[A-Za-z0-9_-]{1,90}$")


def check_key(key: str) -> str:
    if not SAFE_KEY.match(key):
        raise ValueError(f"unsafe WebDataset key {key!r}: use 1-90 characters of [A-Za-z0-9_-]")
    return key


@dataclass(frozen=True)
class ShardRecord:
    """One written shard as the manifest lists it."""

    name: str
    split: str
    samples: int
    bytes: int
    sha256: str


# --- the DALI index (docs/shard-format.md, section 4) --------------------------------------------

IDX_VERSION = "v1.2"


@dataclass(frozen=True)
class IdxComponent:
    """One member of a sample as a DALI index line lists it."""

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


# --- reading a shard's tar (docs/shard-format.md, section 2) -------------------------------------

@dataclass(frozen=True)
class ShardSample:
    """One sample of a shard: its key, its members as the index lists them, and (when read) their bytes."""

    key: str
    components: list[IdxComponent]
    members: dict[str, bytes]


def read_shard(fileobj: BinaryIO, path: Path, with_data: bool = True) -> Iterator[ShardSample]:
    """The samples of a shard's tar in order, read front to back from ``fileobj`` (never seeking
    backwards, so a reader that hashes what passes through sees every byte once); a damaged or
    truncated shard raises :class:`ShardError` naming ``path``. ``with_data=False``: headers only."""
    try:
        tar = tarfile.open(fileobj=fileobj, mode="r:")
    except tarfile.TarError as e:
        raise ShardError(f"{path}: not a readable tar ({e})") from None
    sample: ShardSample | None = None
    for info in _members(tar, path):
        key, _, ext = info.name.rsplit("/", 1)[-1].partition(".")
        if sample is None or key != sample.key:
            if sample is not None:
                yield sample
            sample = ShardSample(key, [], {})
        sample.components.append(IdxComponent(ext, info.offset_data, info.size, info.name))
        if with_data:
            sample.members[ext] = _member_bytes(tar, info, path)
    if sample is not None:
        yield sample


def index_tar(path: Path) -> list[list[IdxComponent]]:
    """What the index of a tar should say, computed from the tar's headers alone."""
    with open(path, "rb") as f:
        return [sample.components for sample in read_shard(f, path, with_data=False)]


def iter_samples(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {ext: bytes}) for each sample of a shard, in order; a damaged or truncated shard
    raises :class:`ShardError` naming it."""
    with open(path, "rb") as f:
        for sample in read_shard(f, path):
            yield sample.key, sample.members


def _member_bytes(tar: tarfile.TarFile, info: tarfile.TarInfo, path: Path) -> bytes:
    try:
        return tar.extractfile(info).read()
    except (tarfile.TarError, EOFError) as e:
        raise ShardError(f"{path}: member {info.name} at offset {info.offset_data} cannot be read ({e}): "
                         "truncated or damaged shard") from None


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


# --- the other files of an output folder ---------------------------------------------------------

def read_json(path: Path) -> Any:
    """A JSON file of an output folder; a missing or damaged one is a :class:`ShardError` naming it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ShardError(f"{path}: not found") from None
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ShardError(f"{path}: not readable JSON ({e})") from None
