"""The catalog: every raw sample of a conversion, as compact columns.

A source module yields :class:`Entry` records while it lists the download; the catalog stores them
column-wise (numpy arrays and one byte blob per string column), about 60 bytes per sample instead
of a Python object each, so that 14 M ImageNet-21K entries fit comfortably in memory. Image bytes
are never held: only where to read them.
"""

from __future__ import annotations

import hashlib
import json
import os
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .archive import Containers
from .errors import SourceError


class Entry(NamedTuple):
    """One raw sample as a source module reports it."""

    split: str
    key: str  # safe WebDataset key, unique within the split
    filename: str  # original name, recorded in the sample's json
    label: int
    cid: int  # container id (see sources.archive.Containers)
    offset: int = 0
    size: int = 0
    member: str = ""  # member name / relative path for zip and dir containers
    extra: dict[str, Any] | None = None  # dataset-specific json fields


class StringColumn:
    """Append-only list of strings stored as one UTF-8 blob plus end offsets."""

    def __init__(self, blob: bytes = b"", ends: np.ndarray | None = None) -> None:
        self._blob = bytearray(blob)
        self._ends = array("q", [] if ends is None else ends.tolist())

    def append(self, value: str) -> None:
        self._blob += value.encode("utf-8")
        self._ends.append(len(self._blob))

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, i: int) -> str:
        start = self._ends[i - 1] if i > 0 else 0
        return self._blob[start : self._ends[i]].decode("utf-8")

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.frombuffer(bytes(self._blob), dtype=np.uint8), np.asarray(self._ends, dtype=np.int64)

    def take(self, order: np.ndarray) -> StringColumn:
        out = StringColumn()
        for i in order:
            out.append(self[int(i)])
        return out


_STRINGS = ("key", "filename", "member", "extra")
_NUMBERS = {"split": np.int16, "label": np.int32, "cid": np.int32, "offset": np.int64, "size": np.int64}


@dataclass
class Catalog:
    splits: list[str]
    containers: Containers
    columns: dict[str, Any]

    @classmethod
    def build(cls, entries: Iterable[Entry], containers: Containers, split_order: list[str]) -> Catalog:
        """Collect entries, then sort them by (split, key) so that the catalog — and everything
        derived from it — is independent of the order in which the archive stores members."""
        numbers = {name: array("q") for name in _NUMBERS}
        strings = {name: StringColumn() for name in _STRINGS}
        split_index = {s: i for i, s in enumerate(split_order)}
        for e in entries:
            if e.split not in split_index:
                raise ValueError(f"source produced split {e.split!r}, expected one of {split_order}")
            numbers["split"].append(split_index[e.split])
            numbers["label"].append(e.label)
            numbers["cid"].append(e.cid)
            numbers["offset"].append(e.offset)
            numbers["size"].append(e.size)
            strings["key"].append(e.key)
            strings["filename"].append(e.filename)
            strings["member"].append(e.member)
            strings["extra"].append(json.dumps(e.extra, sort_keys=True) if e.extra else "")
        columns: dict[str, Any] = {n: np.asarray(numbers[n], dtype=t) for n, t in _NUMBERS.items()}
        keys = strings["key"]
        order = sorted(range(len(keys)), key=lambda i: (int(columns["split"][i]), keys[i]))
        order_arr = np.asarray(order, dtype=np.int64)
        for n in _NUMBERS:
            columns[n] = columns[n][order_arr]
        for n in _STRINGS:
            columns[n] = strings[n].take(order_arr)
        catalog = cls(list(split_order), containers, columns)
        catalog._check_unique_keys()
        return catalog

    def __len__(self) -> int:
        return len(self.columns["label"])

    def split_indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.columns["split"] == self.splits.index(split))

    def _check_unique_keys(self) -> None:
        keys = self.columns["key"]
        split = self.columns["split"]
        for i in range(1, len(self)):
            if split[i] == split[i - 1] and keys[i] == keys[i - 1]:
                raise SourceError(
                    f"two samples of split {self.splits[int(split[i])]!r} map to the key {keys[i]!r} "
                    f"({self.columns['filename'][i - 1]!r} and {self.columns['filename'][i]!r}); "
                    "keys must be unique within a split")

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for n in _NUMBERS:
            h.update(self.columns[n].tobytes())
        for n in _STRINGS:
            for a in self.columns[n].arrays():
                h.update(a.tobytes())
        return h.hexdigest()

    # --- persistence (resume) --------------------------------------------------------------

    def save(self, path: Path) -> None:
        arrays = {n: self.columns[n] for n in _NUMBERS}
        for n in _STRINGS:
            arrays[f"{n}_blob"], arrays[f"{n}_ends"] = self.columns[n].arrays()
        meta = json.dumps({"splits": self.splits, "containers": self.containers.to_json()})
        arrays["meta"] = np.frombuffer(meta.encode(), dtype=np.uint8)
        tmp = path.with_name(path.name + ".partial.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Catalog:
        with np.load(path) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            columns: dict[str, Any] = {n: z[n] for n in _NUMBERS}
            for n in _STRINGS:
                columns[n] = StringColumn(z[f"{n}_blob"].tobytes(), z[f"{n}_ends"])
        return cls(meta["splits"], Containers.from_json(meta["containers"]), columns)
