"""Bad samples at load time, in both backends: each is reported by shard and key (or skipped and
recorded), never a hang, never a silent wrong label. Shards are written here with the project's
shard writer, each with one kind of damage."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagenet_pipe.conversion.writer import ShardWriter
from imagenet_pipe.format import idx_name
from imagenet_pipe.loaders import LoaderDataError, ShardSetError, build_loader

from .timeouts import deadline

CPU = {"device": "cpu", "num_threads": 2, "num_workers": 0, "size": 32, "dtype": "uint8"}
BACKENDS = ["dali", "baseline"]


def jpeg(seed: int, size=(48, 40)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def bogus_sampling(data: bytes) -> bytes:
    """A JPEG with a readable frame header whose sampling factors no decoder accepts: it passes
    every byte check and fails in the decoder (DALI and Pillow alike)."""
    pos = 2
    while data[pos + 1] not in (0xC0, 0xC2):
        pos += 2 + struct.unpack(">H", data[pos + 2:pos + 4])[0]
    out = bytearray(data)
    out[pos + 11] = 0x55
    return bytes(out)


def write_split(root: Path, split: str, shards: list[list[tuple[str, dict]]], num_classes: int = 10) -> None:
    info_path = root / "_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {"name": "t", "num_classes": num_classes,
                                                                         "splits": {}}
    names = []
    for i, samples in enumerate(shards):
        name = f"t-{split}-{i:02d}.tar"
        writer = ShardWriter(root, name, split)
        for key, members in samples:
            writer.write(key, members)
        writer.close()
        names.append(name)
    info["splits"][split] = {"name": split, "filenames": names, "shard_lengths": [len(s) for s in shards],
                             "num_samples": sum(len(s) for s in shards)}
    info_path.write_text(json.dumps(info))


def good(i: int) -> tuple[str, dict]:
    return f"s{i:03d}", {"cls": str(i % 10).encode(), "jpg": jpeg(i)}


def load_all(root, split, backend, **kw):
    with deadline(60):
        return [k for batch in build_loader(root, split, "eval-224", backend=backend, return_keys=True,
                                            **{**CPU, **kw}) for k in batch.keys]


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    root = tmp_path_factory.mktemp("damaged")
    cases = {
        "label_xx": {"cls": b"xx"}, "label_minus": {"cls": b"-1"}, "label_1500": {"cls": b"1500"},
        "label_9digits": {"cls": b"123456789"}, "no_cls": {"cls": None}, "no_jpg": {"jpg": None},
        "truncated": {"jpg": jpeg(99)[:300]}, "not_jpeg": {"jpg": b"\xff\xd8" + bytes(range(256)) * 4 + b"\xff\xd9"},
    }
    for name, change in cases.items():
        key, members = good(7)
        members = {k: v for k, v in {**members, **change}.items() if v is not None}
        write_split(root, name, [[good(i) for i in range(4)], [good(4), (f"bad_{name}", members), good(5)]])
    # trailing bytes after the end marker: every decoder ignores them, so the loaders must load it
    key, members = good(8)
    write_split(root, "trailing", [[good(1), (key, {**members, "jpg": members["jpg"] + b"\0junk" * 40})]])
    # an undecodable image late in the split: shard 21 of 24
    shards = [[good(2 * s), good(2 * s + 1)] for s in range(24)]
    shards[21][1] = ("undecodable", {"cls": b"3", "jpg": bogus_sampling(jpeg(5))})
    write_split(root, "late", shards)
    return root, list(cases)


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_bad_sample_raises_naming_shard_and_key(damaged, backend):
    root, cases = damaged
    for case in cases:
        with pytest.raises(LoaderDataError) as err:
            load_all(root, case, backend)
        message = str(err.value)
        assert f"t-{case}-01.tar" in message and f"bad_{case}" in message, message


@pytest.mark.parametrize("backend", BACKENDS)
def test_skip_mode_drops_and_records_each_bad_sample(damaged, backend):
    root, cases = damaged
    for case in cases:
        loader = build_loader(root, case, "eval-224", backend=backend, return_keys=True, on_error="skip", **CPU,
                              batch_size=3)
        with deadline(60):
            batches = list(loader)
        keys = [k for batch in batches for k in batch.keys]
        assert len(batches) == len(loader) == 3  # a smaller batch, never fewer batches
        assert [key for _, key, _ in loader.skipped] == [f"bad_{case}"], case
        assert len(keys) == 6 and f"bad_{case}" not in keys
    reasons = {}
    for case in ("label_xx", "label_1500", "no_cls", "no_jpg"):
        loader = build_loader(root, case, "eval-224", backend=backend, on_error="skip", **CPU)
        list(loader)
        reasons[case] = loader.skipped[0][2]
    assert "decimal integer" in reasons["label_xx"] and "outside [0, 10)" in reasons["label_1500"]
    assert "no cls" in reasons["no_cls"] and "no jpg" in reasons["no_jpg"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_bytes_after_the_end_marker_load(damaged, backend):
    root, _ = damaged
    assert len(load_all(root, "trailing", backend)) == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_decoder_failure_late_in_the_split_is_named(damaged, backend):
    root, _ = damaged
    with pytest.raises(LoaderDataError, match=r"t-late-21\.tar.*undecodable"):
        load_all(root, "late", backend, batch_size=2)


def test_dali_loader_stops_for_good_after_a_decoder_failure(damaged):
    root, _ = damaged
    loader = build_loader(root, "late", "eval-224", batch_size=2, **CPU)
    with deadline(60), pytest.raises(LoaderDataError):
        list(loader)
    with pytest.raises(RuntimeError, match="stopped after an error"):
        next(iter(loader))


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_shard_is_named(tmp_path, backend):
    write_split(tmp_path, "validation", [[good(i) for i in range(6)]])
    shard = tmp_path / "t-validation-00.tar"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(LoaderDataError, match=r"t-validation-00\.tar: sample s00\d .*cut short"):
        load_all(tmp_path, "validation", backend)
    (tmp_path / idx_name(shard.name)).unlink()  # without its index the tar itself is read, and fails
    with pytest.raises(ShardSetError, match=r"t-validation-00\.tar"):
        load_all(tmp_path, "validation", backend)


def test_info_json_that_is_not_json_is_named(tmp_path):
    (tmp_path / "_info.json").write_text('{"splits": ')
    with pytest.raises(ShardSetError, match=r"_info\.json"):
        build_loader(tmp_path, "validation", **CPU)
