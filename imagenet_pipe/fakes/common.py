"""Shared pieces of the fake-download writers: deterministic tar/zip writing and expectations."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import zipfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

# The real archives were written in 2012 by GNU tar; keep their header flavour.
ARCHIVE_MTIME = 1_337_000_000
EXPECTED_FILE = "_fake_expected.json"


@dataclass
class FakeSample:
    """What a fake download contains, and what a correct converter must make of it."""

    split: str
    key: str
    label: int
    filename: str  # name in the download (basename)
    wnid: str | None = None
    quirk: str | None = None  # cmyk, png, grayscale, exif_rotated, truncated, progressive
    bad: bool = False  # must be quarantined
    extra: dict | None = None


def tar_bytes(members: Iterable[tuple[str, bytes]], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    buf = io.BytesIO()
    write_tar(buf, members, fmt)
    return buf.getvalue()


def write_tar(fileobj, members: Iterable[tuple[str, bytes]], fmt: int = tarfile.GNU_FORMAT) -> None:
    with tarfile.open(fileobj=fileobj, mode="w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), ARCHIVE_MTIME, 0o644
            if name.endswith("/"):  # a directory entry, as GNU tar writes for every folder
                info.type, info.mode, info.size = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info, io.BytesIO(data))


def write_tar_file(path: Path, members: Iterable[tuple[str, bytes]], compress: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            write_tar(gz, members)
    else:
        with open(path, "wb") as f:
            write_tar(f, members)


def write_zip(path: Path, members: Iterable[tuple[str, bytes]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(2019, 4, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if not name.endswith("/") else zipfile.ZIP_STORED
            zf.writestr(info, data)  # a name ending in '/' is a directory entry


def write_files(root: Path, members: Iterable[tuple[str, bytes]]) -> None:
    for name, data in members:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def shuffled(rng: np.random.Generator, items: list) -> list:
    return [items[i] for i in rng.permutation(len(items))]


def with_dirs(members: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The members preceded by an entry for every folder they are in (as ``tar``/``zip -r`` write)."""
    dirs: dict[str, None] = {}
    for name, _ in members:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.setdefault("/".join(parts[:i]) + "/")
    return [(d, b"") for d in dirs] + members


def pick(rng: np.random.Generator, pool: list[str] | tuple[str, ...], count: int,
         exclude: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """``count`` distinct items of ``pool`` not in ``exclude``, drawn with ``rng``, sorted."""
    candidates = [p for p in pool if p not in exclude]
    return sorted(candidates[i] for i in rng.choice(len(candidates), count, replace=False))


def write_expected(root: Path, dataset: str, layout: str, samples: list[FakeSample], **info) -> None:
    data = {"dataset": dataset, "layout": layout, **info, "samples": [asdict(s) for s in samples]}
    (root / EXPECTED_FILE).write_text(json.dumps(data, indent=1))


def read_expected(root: Path) -> dict:
    data = json.loads((Path(root) / EXPECTED_FILE).read_text())
    data["samples"] = [FakeSample(**s) for s in data["samples"]]
    return data
