"""The catalog: every raw sample of a conversion, as compact columns sorted by (split, key).

A source yields :class:`Entry` records one at a time while it lists the download;
:class:`CatalogBuilder` appends each one straight into growable typed buffers (``array``,
``bytearray``) and keeps no Python object per entry:

* split, label, container, offset, size: numpy arrays (26 bytes per entry);
* key: one UTF-8 blob plus a start (4 bytes; 8 past 4 GiB) and a length (1 byte up to 255);
* file name, member name and ``extra`` json: a 4-byte code into a table of distinct values. A value
  containing the entry's key is stored as the text around it (``n01440764/`` + key + ``.JPEG``),
  shared by every entry of its folder; other values are stored once each (a repeat of the previous
  entry's value shares its code).

Rows are sorted with numpy: a lexsort on the split and the keys' first 16 UTF-8 bytes (two
big-endian integers), repeated on the next 16 bytes for keys that are still tied. UTF-8 byte order
is code point order, so the result is Python's ``sorted()`` order of (split, key).

Measured for 14.2 M ImageNet-21K-like entries (``tools/bench_catalog.py``; BENCHMARKS.md): the
catalog holds 58 bytes per entry (819 MB); building and sorting it takes 13 s of CPU on one core
and peaks at 1.25 GB resident (the Python-key sort before it: 56 s and 4.4 GB). Image bytes are
never held: only where to read them.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import SourceError
from ..sources.archive import Containers
from ..sources.base import Entry

_WORD = 16  # key bytes compared per sorting round (two uint64)
_ROWS = 1 << 16  # rows per chunk of the vectorised passes (bounds their temporaries)
_SCAN = 1 << 24  # blob bytes per chunk when locating the NUL terminators
_MAX_PATTERNS = 1 << 18  # distinct key patterns per column (folders x extensions); more are stored whole
_NUMBERS = {"split": np.int16, "label": np.int32, "cid": np.int32, "offset": np.int64, "size": np.int64}
_STRINGS = ("key", "filename", "member", "extra")


def _offset_dtype(limit: int) -> type[np.unsignedinteger] | type[np.signedinteger]:
    return np.uint32 if limit < 2**32 else np.int64


def _windows(blob: np.ndarray, starts: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """(rows, width) array of each span's first ``width`` bytes, zero after its end. The blob is
    padded (:class:`StringColumn`), so a window never runs off it."""
    rows = sliding_window_view(blob, width)[starts]
    rows[np.arange(width) >= lengths[:, None]] = 0
    return rows


def _join(pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray]], budget: int = 1 << 24) -> np.ndarray:
    """Concatenation, row after row, of each row's spans ``(blob, starts, lengths)``, in order."""
    rows = len(pieces[0][1]) if pieces else 0
    widths = [int(lengths.max(initial=0)) for _, _, lengths in pieces]
    if rows > 1 and rows * sum(widths) > budget:  # a few long strings: halve, bounding the windows
        half = rows // 2
        return np.concatenate([_join([(b, s[:half], n[:half]) for b, s, n in pieces], budget),
                               _join([(b, s[half:], n[half:]) for b, s, n in pieces], budget)])
    parts = [(_windows(blob, starts, lengths, width), np.arange(width) < lengths[:, None])
             for (blob, starts, lengths), width in zip(pieces, widths, strict=True) if width]
    if not parts:
        return np.zeros(0, np.uint8)
    return np.concatenate([p for p, _ in parts], axis=1)[np.concatenate([m for _, m in parts], axis=1)]


class StringColumn:
    """Read-only strings: one UTF-8 blob addressed by start and length arrays. Sorting permutes the
    two arrays, never the bytes. The blob ends with at least ``max(16, longest)`` spare bytes."""

    def __init__(self, blob: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> None:
        self.blob, self.starts, self.lengths = blob, starts, lengths
        self._text = memoryview(blob)

    def __reduce__(self) -> tuple:  # picklable (spawned or remote workers), the memoryview rebuilt
        return StringColumn, (self.blob, self.starts, self.lengths)

    @classmethod
    def from_ends(cls, blob: np.ndarray, ends: np.ndarray) -> StringColumn:
        """Strings stored back to back (the catalog's first on-disk layout)."""
        ends = np.asarray(ends, np.int64)
        starts = np.concatenate(([0], ends[:-1])).astype(np.int64)
        lengths = ends - starts
        padded = np.zeros(len(blob) + max(_WORD, int(lengths.max(initial=0))), np.uint8)
        padded[: len(blob)] = blob
        return cls(padded, starts.astype(_offset_dtype(len(blob))), lengths.astype(np.min_scalar_type(len(blob))))

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> str:
        start = int(self.starts[i])
        return str(self._text[start : start + int(self.lengths[i])], "utf-8")

    def take(self, order: np.ndarray) -> StringColumn:
        return StringColumn(self.blob, self.starts[order], self.lengths[order])

    def pieces(self, rows: slice | np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return [(self.blob, self.starts[rows], self.lengths[rows])]

    def prefix_words(self, rows: np.ndarray | None, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """Bytes ``depth .. depth+16`` of the strings at ``rows`` (None: all) as two big-endian
        integers, zero-padded: comparing them compares those bytes as ``str`` does (a string that
        ends sorts first; catalog strings hold no NUL)."""
        count = len(self) if rows is None else len(rows)
        high, low = np.empty(count, np.uint64), np.empty(count, np.uint64)
        for a in range(0, count, _ROWS):
            part = slice(a, a + _ROWS) if rows is None else rows[a : a + _ROWS]
            lengths = self.lengths[part].astype(np.int64)
            skip = np.minimum(lengths, depth)
            words = _windows(self.blob, self.starts[part] + skip, lengths - skip, _WORD).view(">u8")
            high[a : a + _ROWS], low[a : a + _ROWS] = words[:, 0], words[:, 1]
        return high, low

    def arrays(self, name: str) -> dict[str, np.ndarray]:
        return {f"{name}_blob": self.blob, f"{name}_starts": self.starts, f"{name}_lengths": self.lengths}

    @classmethod
    def from_arrays(cls, z: Any, name: str) -> StringColumn:
        return cls(z[f"{name}_blob"], z[f"{name}_starts"], z[f"{name}_lengths"])


class CodedColumn:
    """Strings as an int32 code per row into a table of distinct values (code -1: the empty string).
    Table value ``c`` is ``heads[c] + <the row's key> + tails[c]`` where ``keyed[c]``, else ``heads[c]``."""

    def __init__(self, codes: np.ndarray, heads: StringColumn, tails: StringColumn, keyed: np.ndarray,
                 keys: StringColumn) -> None:
        self.codes, self.heads, self.tails, self.keyed, self.keys = codes, heads, tails, keyed, keys

    @classmethod
    def plain(cls, strings: StringColumn, keys: StringColumn) -> CodedColumn:
        """Every row its own table value (for strings stored in the first on-disk layout)."""
        codes = np.where(strings.lengths > 0, np.arange(len(strings), dtype=np.int32), -1).astype(np.int32)
        empty = StringColumn(np.zeros(_WORD, np.uint8), np.zeros(len(strings), np.uint32),
                             np.zeros(len(strings), np.uint8))
        return cls(codes, strings, empty, np.zeros(len(strings), bool), keys)

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, i: int) -> str:
        code = int(self.codes[i])
        if code < 0:
            return ""
        if self.keyed[code]:
            return self.heads[code] + self.keys[i] + self.tails[code]
        return self.heads[code]

    def pieces(self, rows: slice | np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        codes = self.codes[rows]
        if not len(self.keyed):  # every value empty
            return [(self.heads.blob, np.zeros(len(codes), np.int64), np.zeros(len(codes), np.uint8))]
        present = codes >= 0
        table = np.where(present, codes, 0)
        keyed = present & self.keyed[table]
        return [(self.heads.blob, self.heads.starts[table], self.heads.lengths[table] * present),
                (self.keys.blob, self.keys.starts[rows], self.keys.lengths[rows] * keyed),
                (self.tails.blob, self.tails.starts[table], self.tails.lengths[table] * keyed)]

    def arrays(self, name: str) -> dict[str, np.ndarray]:
        return {f"{name}_codes": self.codes, f"{name}_keyed": self.keyed,
                **self.heads.arrays(f"{name}_heads"), **self.tails.arrays(f"{name}_tails")}

    @classmethod
    def from_arrays(cls, z: Any, name: str, keys: StringColumn) -> CodedColumn:
        return cls(z[f"{name}_codes"], StringColumn.from_arrays(z, f"{name}_heads"),
                   StringColumn.from_arrays(z, f"{name}_tails"), z[f"{name}_keyed"], keys)


def _digest_strings(h: Any, column: StringColumn | CodedColumn) -> None:
    """Feed ``h`` the column's strings as one UTF-8 blob, then their int64 end offsets, a chunk of
    rows at a time (never the whole column materialised)."""
    chunks = [slice(a, a + _ROWS) for a in range(0, len(column), _ROWS)]
    for rows in chunks:
        h.update(_join(column.pieces(rows)))
    end = 0
    for rows in chunks:
        ends = end + np.cumsum(np.sum([p[2] for p in column.pieces(rows)], axis=0, dtype=np.int64))
        h.update(ends)
        end = int(ends[-1])


# --- building ------------------------------------------------------------------------------------

class _Strings:
    """Growable blob of NUL-terminated strings; the NULs give the lengths when it is finished."""

    def __init__(self) -> None:
        self.blob = bytearray()

    def add(self, text: str) -> None:
        self.blob += text.encode()
        self.blob.append(0)

    def finish(self, count: int, what: str) -> StringColumn:
        ends = _nul_positions(self.blob, count)
        if ends is None:
            raise SourceError(f"{what} contains a NUL character, which the catalog cannot store")
        starts = np.empty_like(ends)
        starts[:1], starts[1:] = 0, ends[:-1] + 1
        ends -= starts
        longest = int(ends.max(initial=0))
        lengths = ends.astype(np.min_scalar_type(longest))
        del ends
        self.blob += bytes(max(_WORD, longest))  # the padding _windows relies on
        return StringColumn(np.frombuffer(self.blob, np.uint8), starts, lengths)


def _nul_positions(blob: bytearray, count: int) -> np.ndarray | None:
    """Offsets of the ``count`` NULs in ``blob``; None if there are more (a string held a NUL)."""
    ends = np.empty(count, _offset_dtype(len(blob)))
    view, found = np.frombuffer(blob, np.uint8), 0
    for a in range(0, len(blob), _SCAN):
        nul = np.flatnonzero(view[a : a + _SCAN] == 0)
        if found + len(nul) > count:
            return None
        ends[found : found + len(nul)] = nul + a
        found += len(nul)
    return ends if found == count else None


class _Codes:
    """Codes of one string column while entries arrive (see :class:`CodedColumn`)."""

    def __init__(self, key_relative: bool) -> None:
        self.codes = array("i")
        self.heads, self.tails, self.keyed = _Strings(), _Strings(), bytearray()
        self.patterns: dict[str, int] = {}  # value with the key replaced by NUL -> code
        self.key_relative = key_relative
        self.head, self.tail, self.last_keyed = "", "", -1  # the latest keyed value: checked first
        self.last_literal: str | None = None
        self.last_code = -1

    def code(self, value: str, key: str) -> int:
        """The code of a non-empty ``value`` of the entry whose key is ``key``."""
        if self.last_keyed >= 0 and value == f"{self.head}{key}{self.tail}":  # same folder as before
            return self.last_keyed
        if self.key_relative and key in value:
            pattern = value.replace(key, "\0", 1)
            code = self.patterns.get(pattern)
            if code is not None or len(self.patterns) < _MAX_PATTERNS:
                self.head, _, self.tail = pattern.partition("\0")
                if code is None:
                    code = self.patterns[pattern] = self._add(self.head, self.tail, True)
                self.last_keyed = code
                return code
        if value != self.last_literal:
            self.last_literal, self.last_code = value, self._add(value, "", False)
        return self.last_code

    def _add(self, head: str, tail: str, keyed: bool) -> int:
        self.heads.add(head)
        self.tails.add(tail)
        self.keyed.append(keyed)
        return len(self.keyed) - 1

    def finish(self, what: str) -> None:
        """Finish the table; with every value empty, drop the codes (all -1) before the sort."""
        size = len(self.keyed)
        self.table = (self.heads.finish(size, what), self.tails.finish(size, what), np.frombuffer(self.keyed, bool))
        if not size:
            self.codes = array("i")

    def column(self, keys: StringColumn, order: np.ndarray | None = None) -> CodedColumn:
        """The finished column over ``keys``, its rows in ``order`` (None: as appended)."""
        if not len(self.keyed):
            codes = np.full(len(keys), -1, np.int32)
        else:
            codes = np.frombuffer(self.codes, np.int32)
            codes = codes if order is None else codes[order]
        return CodedColumn(codes, *self.table, keys)


# split, label, cid, offset, size of an entry, packed (26 bytes)
_RECORD = struct.Struct("=hiiqq")
_RECORD_DTYPE = np.dtype(list(_NUMBERS.items()))


class CatalogBuilder:
    """Collects :class:`Entry` records into growable typed buffers; :meth:`finish` sorts them."""

    def __init__(self, split_order: list[str]) -> None:
        self.splits = list(split_order)
        self._split_index = {s: i for i, s in enumerate(self.splits)}
        self._numbers = bytearray()
        self._keys = _Strings()
        self._coded = {"filename": _Codes(True), "member": _Codes(True), "extra": _Codes(False)}

    def extend(self, entries: Iterable[Entry]) -> None:
        split_index, numbers, keys, pack = self._split_index, self._numbers, self._keys.blob, _RECORD.pack
        filename, member, extra = self._coded["filename"], self._coded["member"], self._coded["extra"]
        filename_code, member_code, extra_code = filename.code, member.code, extra.code
        filenames, members, extras = filename.codes.append, member.codes.append, extra.codes.append
        for entry in entries:
            e_split, e_key, e_filename, e_label, e_cid, e_offset, e_size, e_member, e_extra = entry
            split = split_index.get(e_split)
            if split is None:
                raise ValueError(f"source produced split {e_split!r}, expected one of {self.splits}")
            try:
                numbers += pack(split, e_label, e_cid, e_offset, e_size)
            except struct.error as e:
                raise ValueError(f"{entry}: {e} (label, cid: int32; offset, size: int64)") from None
            keys += e_key.encode()
            keys.append(0)
            filenames(filename_code(e_filename, e_key) if e_filename else -1)
            members(member_code(e_member, e_key) if e_member else -1)
            extras(extra_code(json.dumps(e_extra, sort_keys=True), "") if e_extra else -1)

    def finish(self, containers: Containers) -> Catalog:
        """The catalog sorted by (split, key), so that it — and everything derived from it — does
        not depend on the order in which the archive stores members. The builder is spent."""
        count = len(self._numbers) // _RECORD.size
        keys = self._keys.finish(count, "a key")
        for name, coded in self._coded.items():
            coded.finish(f"a {name}")
        numbers = np.frombuffer(self._numbers, _RECORD_DTYPE)
        split = numbers["split"].astype(np.int16)
        order, duplicate = _sort_order(split, keys)
        if duplicate is not None:
            first, second = sorted(int(i) for i in order[duplicate : duplicate + 2])
            filenames = self._coded["filename"].column(keys)
            raise SourceError(
                f"two samples of split {self.splits[int(split[first])]!r} map to the key {keys[first]!r} "
                f"({filenames[first]!r} and {filenames[second]!r}); keys must be unique within a split")
        del split
        columns: dict[str, Any] = _take_records(numbers, order)
        del numbers
        self._numbers = bytearray()
        columns["key"] = keys.take(order)
        for name, coded in self._coded.items():
            columns[name] = coded.column(columns["key"], order)
        self._keys, self._coded = _Strings(), {}
        return Catalog(self.splits, containers, columns)


def _take_records(records: np.ndarray, order: np.ndarray) -> dict[str, np.ndarray]:
    """Each field of ``records[order]`` as an array of its own, gathered a chunk of whole records at
    a time: one random-access pass instead of one per field."""
    assert records.dtype.names is not None
    columns = {name: np.empty(len(order), records.dtype[name]) for name in records.dtype.names}
    for a in range(0, len(order), _ROWS):
        chunk = records[order[a : a + _ROWS]]
        for name, column in columns.items():
            column[a : a + _ROWS] = chunk[name]
    return columns


# --- sorting -------------------------------------------------------------------------------------

def _sort_order(split: np.ndarray, keys: StringColumn) -> tuple[np.ndarray, int | None]:
    """Row order by (split, key), and the position in it of the first of two equal (split, key)
    rows, if any. Rows are ordered on 16 key bytes at a time: first all of them, then, deeper into
    the keys, only runs of rows still tied (e.g. ``ILSVRC2012_val_0...``)."""
    high, low = keys.prefix_words(None, 0)
    order = np.lexsort((low, high, split))
    tied = _adjacent_equal(order, (split, high, low))
    del high, low
    positions, runs = _tied_runs(tied)
    first_duplicate: int | None = None
    depth = 0
    while len(positions):
        rows = order[positions]
        longer = keys.lengths[rows] > depth + _WORD
        open_run = np.bincount(runs, weights=longer) > 0  # some key of the run goes on
        done = ~open_run[runs]
        if done.any():  # a run of keys that all ended within the compared bytes: equal keys
            first = int(positions[np.argmax(done)])
            first_duplicate = first if first_duplicate is None else min(first_duplicate, first)
        positions, runs, rows = positions[~done], runs[~done], rows[~done]
        depth += _WORD
        high, low = keys.prefix_words(rows, depth)
        perm = np.lexsort((low, high, runs))  # runs are contiguous: each stays in its positions
        order[positions] = rows[perm]
        tied = _adjacent_equal(perm, (runs, high, low))
        local, runs = _tied_runs(tied)
        positions = positions[local]
    return order, first_duplicate


def _adjacent_equal(perm: np.ndarray, columns: tuple[np.ndarray, ...]) -> np.ndarray:
    """``tied[p]``: rows ``perm[p]`` and ``perm[p + 1]`` are equal in every column."""
    tied = np.ones(max(len(perm) - 1, 0), bool)
    for a in range(0, len(tied), _ROWS):
        pair = perm[a : a + _ROWS + 1]
        for column in columns:
            values = column[pair]
            tied[a : a + _ROWS] &= values[1:] == values[:-1]
    return tied


def _tied_runs(tied: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions that belong to a run of tied rows, and the run (0, 1, ...) of each."""
    member = np.zeros(len(tied) + 1, bool)
    member[1:] |= tied
    member[:-1] |= tied
    positions = np.flatnonzero(member)
    starts = np.ones(len(positions), bool)
    starts[1:] = ~tied[positions[1:] - 1]
    return positions, np.cumsum(starts) - 1


# --- the catalog ---------------------------------------------------------------------------------

@dataclass
class Catalog:
    splits: list[str]
    containers: Containers
    columns: dict[str, Any]

    @classmethod
    def build(cls, entries: Iterable[Entry], containers: Containers, split_order: list[str]) -> Catalog:
        """Collect the entries, then sort them by (split, key) (:meth:`CatalogBuilder.finish`)."""
        builder = CatalogBuilder(split_order)
        builder.extend(entries)
        return builder.finish(containers)

    def __len__(self) -> int:
        return len(self.columns["label"])

    def split_indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.columns["split"] == self.splits.index(split))

    def fingerprint(self) -> str:
        """sha256 of the numbers, then of each string column as one UTF-8 blob and its int64 end
        offsets: a digest of the content, whatever the storage (the first layout's definition)."""
        h = hashlib.sha256()
        for n in _NUMBERS:
            h.update(np.ascontiguousarray(self.columns[n]))
        for n in _STRINGS:
            _digest_strings(h, self.columns[n])
        return h.hexdigest()

    # --- persistence (resume) --------------------------------------------------------------

    def save(self, path: Path) -> None:
        arrays = {n: self.columns[n] for n in _NUMBERS}
        for n in _STRINGS:
            arrays.update(self.columns[n].arrays(n))
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
            if "key_ends" in z.files:  # saved by the first layout: every string column back to back
                keys = columns["key"] = StringColumn.from_ends(z["key_blob"], z["key_ends"])
                for n in _STRINGS[1:]:
                    columns[n] = CodedColumn.plain(StringColumn.from_ends(z[f"{n}_blob"], z[f"{n}_ends"]), keys)
            else:
                keys = columns["key"] = StringColumn.from_arrays(z, "key")
                for n in _STRINGS[1:]:
                    columns[n] = CodedColumn.from_arrays(z, n, keys)
        return cls(meta["splits"], Containers.from_json(meta["containers"]), columns)
