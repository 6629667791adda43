"""The catalog: order, content, compact storage, digest and persistence, on randomised entries."""

from __future__ import annotations

import hashlib
import json
import pickle
import random

import numpy as np
import pytest

from imagenet_pipe.conversion.catalog import _ROWS, Catalog
from imagenet_pipe.errors import SourceError
from imagenet_pipe.sources.archive import Containers
from imagenet_pipe.sources.base import Entry

SPLITS = ["train", "validation", "gaussian_noise-3"]  # not alphabetical: splits sort by this order
ALPHABET = "ab_-09nzéß€😀"  # 1- to 4-byte UTF-8 characters
# shared key prefixes shorter than, equal to and longer than the 16 bytes sorted per round
PREFIXES = ["", "n0144076", "n01440764_", "ILSVRC2012_val_0", "ILSVRC2012_val_000", "x" * 33, "é" * 12]
NUMBERS = {"split": np.int16, "label": np.int32, "cid": np.int32, "offset": np.int64, "size": np.int64}


def random_entries(seed: int, count: int) -> list[Entry]:
    """Entries with unique (split, key), keys of many lengths and shared prefixes, file names inside
    and outside per-folder patterns, members and json extras (repeated in runs, like a class's)."""
    rng = random.Random(seed)
    entries, seen = [], set()
    while len(entries) < count:
        split = rng.choice(SPLITS)
        key = rng.choice(PREFIXES) + "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 24)))
        if not key or (split, key) in seen:
            continue
        seen.add((split, key))
        folder = rng.choice(["n01440764", "n15075141", "zoom_blur/5/n01440764", "é€"])
        filename = rng.choice([f"{folder}/{key}.JPEG", f"{folder}/{key}", f"{key}/{key}.png",
                               f"{folder}/other_{rng.randint(0, 9)}.jpg", ""])
        member = rng.choice(["", filename, f"train/{folder}/{key}.JPEG"])
        extra = rng.choice([None, {}, {"real_labels": [rng.randint(0, 999)]}, {"label_200": 7, "corruption": "fog"}])
        entries.append(Entry(split, key, filename, rng.randint(-1, 21_840), rng.randint(0, 3),
                             rng.randint(0, 2**41), rng.randint(0, 2**24), member, extra))
    return entries


def expected_rows(entries: list[Entry]) -> list[tuple]:
    """What the catalog must hold: Python's sorted() of (split, key), every field as given."""
    rows = [(SPLITS.index(e.split), e.key, e.filename, e.label, e.cid, e.offset, e.size, e.member,
             json.dumps(e.extra, sort_keys=True) if e.extra else "") for e in entries]
    return sorted(rows, key=lambda r: (r[0], r[1]))


def catalog_rows(catalog: Catalog) -> list[tuple]:
    c = catalog.columns
    return [(int(c["split"][i]), c["key"][i], c["filename"][i], int(c["label"][i]), int(c["cid"][i]),
             int(c["offset"][i]), int(c["size"][i]), c["member"][i], c["extra"][i]) for i in range(len(catalog))]


def content_digest(rows: list[tuple]) -> str:
    """sha256 of the numeric columns, then of each string column as one UTF-8 blob + int64 ends."""
    h = hashlib.sha256()
    for field, dtype in zip((0, 3, 4, 5, 6), NUMBERS.values(), strict=True):
        h.update(np.array([r[field] for r in rows], dtype).tobytes())
    for field in (1, 2, 7, 8):
        encoded = [r[field].encode() for r in rows]
        h.update(b"".join(encoded))
        h.update(np.cumsum([len(b) for b in encoded], dtype=np.int64).tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def entries() -> list[Entry]:
    return random_entries(0, _ROWS + 4_000)  # more rows than one chunk of the vectorised passes


def test_sorted_like_python_with_every_column_kept_through_save_load_and_pickle(entries, tmp_path):
    catalog = Catalog.build(iter(entries), Containers(), SPLITS)
    expected = expected_rows(entries)
    assert catalog_rows(catalog) == expected
    assert {n: catalog.columns[n].dtype for n in NUMBERS} == {n: np.dtype(t) for n, t in NUMBERS.items()}
    catalog.save(tmp_path / "catalog.npz")
    loaded = Catalog.load(tmp_path / "catalog.npz")
    assert loaded.splits == SPLITS
    assert catalog_rows(loaded) == expected
    assert loaded.fingerprint() == catalog.fingerprint() == content_digest(expected)
    assert catalog_rows(pickle.loads(pickle.dumps(catalog))) == expected  # for spawned or remote workers


def test_fingerprint_is_a_digest_of_the_content_not_of_the_arrival_order(entries):
    shuffled = random.Random(1).sample(entries, len(entries))
    assert Catalog.build(shuffled, Containers(), SPLITS).fingerprint() == content_digest(expected_rows(entries))
    assert Catalog.build([], Containers(), SPLITS).fingerprint() == content_digest([])


def test_catalog_saved_in_the_first_layout_loads(entries, tmp_path):
    """A work folder left by an earlier version (every string column back to back) still resumes."""
    rows = expected_rows(entries[:3000])
    arrays = {n: np.array([r[f] for r in rows], t) for (n, t), f in zip(NUMBERS.items(), (0, 3, 4, 5, 6), strict=True)}
    for name, field in (("key", 1), ("filename", 2), ("member", 7), ("extra", 8)):
        encoded = [r[field].encode() for r in rows]
        arrays[f"{name}_blob"] = np.frombuffer(b"".join(encoded), np.uint8)
        arrays[f"{name}_ends"] = np.cumsum([len(b) for b in encoded], dtype=np.int64)
    meta = json.dumps({"splits": SPLITS, "containers": Containers().to_json()})
    np.savez(tmp_path / "old.npz", meta=np.frombuffer(meta.encode(), np.uint8), **arrays)
    loaded = Catalog.load(tmp_path / "old.npz")
    assert catalog_rows(loaded) == rows
    assert loaded.fingerprint() == content_digest(rows)


def test_a_folder_of_files_named_by_their_keys_costs_one_table_entry():
    entries = [Entry("train", f"{wnid}_{n}", f"{wnid}/{wnid}_{n}.JPEG", label, 0, 512 * n, 1000,
                     extra={"label_200": label} if label else None)
               for label, wnid in enumerate(["n01440764", "n01443537", "n15075141"]) for n in range(700, 0, -1)]
    catalog = Catalog.build(entries, Containers(), ["train"])
    filename, member, extra = (catalog.columns[n] for n in ("filename", "member", "extra"))
    assert [len(c.keyed) for c in (filename, member, extra)] == [3, 0, 2]  # folders; none; runs of one value
    assert filename[0] == "n01440764/n01440764_1.JPEG" and member[0] == "" and extra[0] == ""
    assert extra[len(catalog) - 1] == '{"label_200": 2}'


@pytest.mark.parametrize("prefix", ["", "ILSVRC2012_val_00000001_with_a_long_tail_"])
def test_equal_keys_in_a_split_name_both_files(prefix):
    entries = [Entry("train", f"{prefix}b", "z/b.jpg", 0, 0), Entry("validation", f"{prefix}a", "v/a.jpg", 0, 0),
               Entry("train", f"{prefix}a", "first/a.jpg", 0, 0), Entry("train", f"{prefix}c", "c.jpg", 0, 0),
               Entry("train", f"{prefix}a", "second/a.png", 0, 0), Entry("train", f"{prefix}b", "y/b.jpg", 0, 0)]
    with pytest.raises(SourceError, match=f"split 'train' map to the key '{prefix}a' \\('first/a.jpg' and "
                                         "'second/a.png'\\); keys must be unique within a split"):
        Catalog.build(entries, Containers(), SPLITS)
    assert len(Catalog.build(entries[:4], Containers(), SPLITS)) == 4  # the same key in two splits is fine


@pytest.mark.parametrize(("entry", "message"), [
    (Entry("train", "a\0b", "a.jpg", 0, 0), "a key contains a NUL"),
    (Entry("train", "a", "dir\0/a.jpg", 0, 0), "a filename contains a NUL"),
    (Entry("train", "a", "a.jpg", 0, 0, member="x\0y"), "a member contains a NUL"),
    (Entry("test", "a", "a.jpg", 0, 0), "source produced split 'test'"),
    (Entry("train", "a", "a.jpg", 2**31, 0), "label, cid: int32"),
])
def test_entries_the_catalog_cannot_store_are_refused(entry, message):
    with pytest.raises((SourceError, ValueError), match=message):
        Catalog.build([Entry("train", "ok", "ok.jpg", 0, 0), entry], Containers(), ["train", "validation"])
