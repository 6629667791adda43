"""End-to-end conversion of fake ImageNet-1K downloads in every raw layout."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from imagenet_pipe.conversion import ConvertError, convert
from imagenet_pipe.format import SAFE_KEY, read_idx
from imagenet_pipe.sources import SourceError

from .conftest import LAYOUTS_1K, quiet


def read_back(out: Path, split: str) -> list[dict]:
    """Every sample of a split, read with the webdataset library from the shard list in _info.json."""
    info = json.loads((out / "_info.json").read_text())
    urls = [str(out / f) for f in info["splits"][split]["filenames"]]
    return list(wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode())


def expected_by_key(fake, split):
    return {s.key: s for s in fake.samples if s.split == split}


@pytest.mark.parametrize("layout,variant", LAYOUTS_1K)
def test_every_layout_converts_with_correct_labels(tmp_path, raw1k, fake1k, layout, variant):
    out = tmp_path / "out"
    manifest = convert("imagenet1k", raw1k(layout, variant), out, workers=2, shard_size=8, progress=False, log=quiet)
    assert manifest["layout"] == layout
    for split in ("train", "validation"):
        expected = expected_by_key(fake1k, split)
        samples = read_back(out, split)
        got = {s["__key__"]: s for s in samples}
        good = {k for k, e in expected.items() if not e.bad}
        assert set(got) == good, f"{split}: written keys differ from the decodable fake files"
        for key, s in got.items():
            assert s["cls"] == expected[key].label == s["json"]["label"]
            assert s["json"]["wnid"] == expected[key].wnid
            assert s["json"]["filename"] == f"{expected[key].wnid}/{expected[key].filename}"
        counts = manifest["splits"][split]
        assert counts["samples_in"] == len(expected) == counts["written"] + counts["quarantined"]


def test_devkit_mapping_of_the_first_validation_images(shards1k):
    got = {s["__key__"]: s["cls"] for s in read_back(shards1k, "validation")}
    # val 1..4 -> ILSVRC2012_ID 490, 361, 171, 822 -> sorted labels (docs/raw-layouts.md section 1.2, worked example)
    assert [got[f"ILSVRC2012_val_{i:08d}"] for i in (1, 2, 3, 4)] == [65, 970, 230, 809]
    assert got["ILSVRC2012_val_00019877"] == 998


def test_real_labels_attached_to_validation(shards1k):
    samples = {s["__key__"]: s["json"] for s in read_back(shards1k, "validation")}
    assert samples["ILSVRC2012_val_00000001"]["real_labels"] == []  # excluded from ReaL
    assert samples["ILSVRC2012_val_00000002"]["real_labels"] == [795, 970]
    assert samples["ILSVRC2012_val_00019877"]["real_labels"] == [998]


def test_quirks_are_repaired_recorded_or_quarantined(shards1k, fake1k):
    manifest = json.loads((shards1k / "manifest.json").read_text())
    samples = {s["__key__"]: s for s in read_back(shards1k, "train") + read_back(shards1k, "validation")}
    quirks = {s.key: s.quirk for s in fake1k.samples if s.quirk}
    for key, quirk in quirks.items():
        if quirk == "truncated":
            assert key not in samples
            (q,) = [q for q in manifest["quarantine"] if q["key"] == key]
            assert "truncated" in q["reason"]
            continue
        sample = samples[key]
        img = Image.open(io.BytesIO(sample["jpg"]))
        img.load()
        assert (img.format, img.mode) == ("JPEG", "RGB"), f"{key} ({quirk}) is not a decodable RGB JPEG"
        assert (img.width, img.height) == (sample["json"]["width"], sample["json"]["height"])
        hygiene = sample["json"].get("hygiene", [])
        expected_action = {"cmyk": "cmyk_to_rgb", "png": "png_to_jpeg", "grayscale": "grayscale_to_rgb",
                           "exif_rotated": "exif_orientation_reset:6"}.get(quirk)
        if expected_action:
            assert expected_action in hygiene, f"{key}: {hygiene}"
        else:
            assert hygiene == []  # progressive JPEGs are valid: bytes untouched
        if quirk == "exif_rotated":
            assert img.getexif().get(0x0112) == 1
    assert manifest["totals"]["quarantined"] == sum(1 for s in fake1k.samples if s.bad)
    assert manifest["hygiene"]["cmyk_to_rgb"] == 2  # one train, one validation


def test_original_bytes_kept_for_clean_jpegs(shards1k, fake1k):
    untouched = [s for s in read_back(shards1k, "train") if s["json"]["hygiene"] == []]
    assert len(untouched) > 30
    for s in untouched:
        assert s["jpg"] == fake1k.data[("train", s["json"]["filename"].split("/")[1])]


def test_shards_are_shuffled_equal_sized_and_well_formed(shards1k):
    info = json.loads((shards1k / "_info.json").read_text())
    manifest = json.loads((shards1k / "manifest.json").read_text())
    for split, meta in info["splits"].items():
        lengths = meta["shard_lengths"]
        assert max(lengths) - min(lengths) <= 1
        assert sum(lengths) == meta["num_samples"] == manifest["splits"][split]["written"]
        names = meta["filenames"]
        assert names == sorted(names) and all(n.startswith(f"imagenet1k-{split}-") for n in names)
    train = read_back(shards1k, "train")
    keys = [s["__key__"] for s in train]
    assert all(SAFE_KEY.match(k) for k in keys)
    assert keys != sorted(keys), "train samples were not shuffled"
    first_shard_labels = {s["cls"] for s in train[: info["splits"]["train"]["shard_lengths"][0]]}
    assert len(first_shard_labels) > 2, "a shard should mix classes after the global shuffle"


def test_tar_members_are_reproducible_ustar(shards1k):
    import tarfile

    with tarfile.open(shards1k / "imagenet1k-train-0.tar") as tar:
        members = tar.getmembers()
    assert [m.name.split(".", 1)[1] for m in members[:3]] == ["cls", "jpg", "json"]
    assert all(m.mtime == 0 and m.mode == 0o444 and m.uname == "bigdata" and len(m.name) < 100 for m in members)


def test_idx_matches_tar_offsets(shards1k):
    path = shards1k / "imagenet1k-train-0.tar"
    data = path.read_bytes()
    samples = read_idx(shards1k / "imagenet1k-train-0.idx")
    info = json.loads((shards1k / "_info.json").read_text())
    assert len(samples) == info["splits"]["train"]["shard_lengths"][0]
    for components in samples:
        assert [c.ext for c in components] == ["cls", "jpg", "json"]
        for c in components:
            assert c.offset % 512 == 0
            # the header preceding the data names the member
            assert data[c.offset - 512 : c.offset - 512 + len(c.name)] == c.name.encode()
        jpg = components[1]
        assert data[jpg.offset : jpg.offset + 2] == b"\xff\xd8"


def test_info_json_parses_like_timm(shards1k):
    """Mirror timm's ``_parse_split_info`` (timm/data/readers/reader_wds.py) field for field."""
    info = json.loads((shards1k / "_info.json").read_text())
    assert info == json.loads((shards1k / "info.json").read_text())
    for split in ("train", "validation"):
        d = info["splits"][split]
        split_info = dict(num_samples=d["num_samples"], filenames=tuple(d["filenames"]),
                          shard_lengths=tuple(d["shard_lengths"]), alt_label=d.get("alt_label", ""), name=d["name"])
        assert split_info["name"] == split
        assert len(split_info["filenames"]) == len(split_info["shard_lengths"])
        assert all((shards1k / f).exists() for f in split_info["filenames"])
    sizes = json.loads((shards1k / "sizes.json").read_text())
    wids = json.loads((shards1k / "imagenet1k-train.json").read_text())
    assert wids["__kind__"] == "wids-shard-index-v1" and wids["wids_version"] == 1
    assert [s["nsamples"] for s in wids["shardlist"]] == list(info["splits"]["train"]["shard_lengths"])
    assert all(sizes[s["url"]] == s["nsamples"] for s in wids["shardlist"])
    classes = (shards1k / "classes.tsv").read_text().splitlines()
    assert len(classes) == 1000 and classes[65].split("\t")[:2] == ["65", "n01751748"]


def test_all_layouts_give_identical_shards(tmp_path, raw1k):
    digests = set()
    for layout, variant in [("official", None), ("kaggle", "nested"), ("folder", "flat")]:
        out = tmp_path / f"{layout}-{variant}"
        manifest = convert("imagenet1k", raw1k(layout, variant), out, workers=1, shard_size=8, progress=False,
                           log=quiet)
        digests.add(tuple(s["sha256"] for s in manifest["shards"]))
    assert len(digests) == 1


def test_byte_identical_for_any_worker_count(tmp_path, raw1k):
    outputs = []
    for workers in (1, 3):
        out = tmp_path / f"w{workers}"
        convert("imagenet1k", raw1k("official"), out, workers=workers, shard_size=5, progress=False, log=quiet)
        outputs.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert outputs[0].keys() == outputs[1].keys()
    for name in outputs[0]:
        assert outputs[0][name] == outputs[1][name], f"{name} differs between worker counts"


def test_seed_changes_order_not_content(tmp_path, raw1k):
    keys = []
    for seed in (0, 1):
        out = tmp_path / f"s{seed}"
        convert("imagenet1k", raw1k("official"), out, workers=1, seed=seed, shard_size=100, progress=False, log=quiet)
        keys.append([s["__key__"] for s in read_back(out, "train")])
    assert keys[0] != keys[1] and sorted(keys[0]) == sorted(keys[1])


def test_num_shards_option(tmp_path, raw1k):
    out = tmp_path / "n"
    m = convert("imagenet1k", raw1k("official"), out, workers=1, num_shards={"train": 7, "validation": 2},
                progress=False, log=quiet)
    assert m["splits"]["train"]["shards"] == 7 and m["splits"]["validation"]["shards"] == 2
    assert (out / "imagenet1k-train-6.tar").exists()


def test_per_split_sizes_fall_back_to_the_preset_and_typos_are_errors(tmp_path, raw1k):
    out = tmp_path / "p"
    m = convert("imagenet1k", raw1k("official"), out, workers=1, shard_size={"train": 10}, progress=False, log=quiet)
    assert m["splits"]["train"]["shards"] == 5  # 47 samples / 10
    assert m["options"]["shard_size"] == {"train": 10, "validation": 782}  # the preset's for validation
    with pytest.raises(ConvertError, match="valdation"):
        convert("imagenet1k", raw1k("official"), tmp_path / "q", shard_size={"train": 10, "valdation": 4},
                progress=False, log=quiet)


def test_max_side_reencodes_large_images(tmp_path, raw1k):
    from imagenet_pipe.conversion.hygiene import HygienePolicy

    out = tmp_path / "small"
    convert("imagenet1k", raw1k("official"), out, workers=2, shard_size=100, splits=["validation"],
            hygiene=HygienePolicy(max_side=48, quality=80), progress=False, log=quiet)
    for s in read_back(out, "validation"):
        img = Image.open(io.BytesIO(s["jpg"]))
        assert max(img.size) == 48  # every fake is larger
        assert max(s["json"]["width"], s["json"]["height"]) == 48
        assert any(a.startswith("resized:") for a in s["json"]["hygiene"])


def test_rerun_is_a_no_op_and_different_options_need_overwrite(tmp_path, raw1k):
    out = tmp_path / "o"
    first = convert("imagenet1k", raw1k("official"), out, workers=1, shard_size=8, progress=False, log=quiet)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = convert("imagenet1k", raw1k("official"), out, workers=1, shard_size=8, progress=False, log=quiet)
    assert again == first and before == {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(ConvertError, match="--overwrite"):
        convert("imagenet1k", raw1k("official"), out, workers=1, shard_size=9, progress=False, log=quiet)
    third = convert("imagenet1k", raw1k("official"), out, workers=1, shard_size=30, overwrite=True,
                    progress=False, log=quiet)
    assert sorted(p.name for p in out.glob("*.tar")) == sorted(s["name"] for s in third["shards"])


def test_bad_source_gives_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match=r"official: ILSVRC2012_img_train\.tar"):
        convert("imagenet1k", tmp_path / "empty", tmp_path / "out", progress=False, log=quiet)
    with pytest.raises(SourceError, match="not a directory"):
        convert("imagenet1k", tmp_path / "missing", tmp_path / "out2", progress=False, log=quiet)


def test_missing_devkit_is_reported(tmp_path, raw1k):
    src = tmp_path / "nodevkit"
    src.mkdir()
    (src / "ILSVRC2012_img_val.tar").symlink_to(raw1k("official") / "ILSVRC2012_img_val.tar")
    with pytest.raises(SourceError, match="devkit"):
        convert("imagenet1k", src, tmp_path / "out", splits=["validation"], progress=False, log=quiet)


def test_meta_mat_is_read_in_devkit_order(raw1k):
    import tarfile

    from imagenet_pipe.classes import devkit_ids
    from imagenet_pipe.sources.imagenet1k_labels import parse_meta_mat

    with tarfile.open(raw1k("official") / "ILSVRC2012_devkit_t12.tar.gz") as tar:
        data = tar.extractfile("ILSVRC2012_devkit_t12/data/meta.mat").read()
    table = parse_meta_mat(data)
    assert table == devkit_ids()
    assert table[490] == "n01751748" and table[1] == "n02119789"


def test_shuffle_is_a_permutation_of_all_good_samples(shards1k, fake1k):
    keys = [s["__key__"] for s in read_back(shards1k, "train")]
    assert len(keys) == len(set(keys)) == sum(1 for s in fake1k.samples if s.split == "train" and not s.bad)
    rng_positions = np.array([sorted(keys).index(k) for k in keys])
    assert abs(np.corrcoef(rng_positions, np.arange(len(keys)))[0, 1]) < 0.6


def test_shard_writer_bytes_equal_tarfiles(tmp_path):
    """The framed writer produces exactly what tarfile.addfile writes for the same members."""
    import tarfile

    from imagenet_pipe.conversion.writer import ShardWriter

    samples = [(f"k{i}", {"jpg": bytes([i]) * (1000 + 37 * i), "cls": str(i).encode(), "json": b"{}"})
               for i in range(9)]
    with tarfile.open(tmp_path / "ref.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in samples:
            for ext in sorted(members):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size, info.mtime, info.mode = len(members[ext]), 0, 0o444
                info.uname = info.gname = "bigdata"
                tar.addfile(info, io.BytesIO(members[ext]))
    writer = ShardWriter(tmp_path, "ours.tar", "train")
    for key, members in samples:
        writer.write(key, members)
    record = writer.close()
    assert (tmp_path / "ours.tar").read_bytes() == (tmp_path / "ref.tar").read_bytes()
    assert record.bytes == (tmp_path / "ref.tar").stat().st_size
