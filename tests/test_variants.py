"""End-to-end conversion of fake downloads of the ImageNet variants: 21K (fall11, winter21, 21K-P),
V2, C, R, A and Sketch. Each fake is laid out like the real download; the shards are read back with
the webdataset library and compared with what the fake says it holds."""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import webdataset as wds
from PIL import Image

from imagenet_pipe.classes import subset_indices, wnid_list
from imagenet_pipe.config import load_preset
from imagenet_pipe.conversion import ConvertError, convert, resolve_options
from imagenet_pipe.conversion.hygiene import HygienePolicy, clean
from imagenet_pipe.errors import OptionsError
from imagenet_pipe.fakes import FAKES, make_fake, read_expected
from imagenet_pipe.fakes.imagenet21k import make_imagenet21k, plan, plan_p
from imagenet_pipe.fakes.imagenet_c import make_imagenet_c
from imagenet_pipe.fakes.imagenet_ra import make_renditions
from imagenet_pipe.fakes.imagenet_sketch import make_imagenet_sketch
from imagenet_pipe.fakes.imagenet_v2 import make_imagenet_v2
from imagenet_pipe.format import SAFE_KEY, idx_name
from imagenet_pipe.sources import SOURCES, SourceError
from imagenet_pipe.sources.imagenet21k_common import held_out
from imagenet_pipe.sources.imagenet_c import SPLITS as C_SPLITS
from imagenet_pipe.verification import verify

from .conftest import quiet

# docs/raw-layouts.md sections 6 and 7: the 1000-way indices of the 200 classes (timm imagenet_{r,a}_indices.txt)
R_INDICES = ("1,2,4,6,8,9,11,13,22,23,26,29,31,39,47,63,71,76,79,84,90,94,96,97,99,100,105,107,113,122,125,130,132,"
             "144,145,147,148,150,151,155,160,161,162,163,171,172,178,187,195,199,203,207,208,219,231,232,234,235,"
             "242,245,247,250,251,254,259,260,263,265,267,269,276,277,281,288,289,291,292,293,296,299,301,308,309,"
             "310,311,314,315,319,323,327,330,334,335,337,338,340,341,344,347,353,355,361,362,365,366,367,368,372,"
             "388,390,393,397,401,407,413,414,425,428,430,435,437,441,447,448,457,462,463,469,470,471,472,476,483,"
             "487,515,546,555,558,570,579,583,587,593,594,596,609,613,617,621,629,637,657,658,701,717,724,763,768,"
             "774,776,779,780,787,805,812,815,820,824,833,847,852,866,875,883,889,895,907,928,931,932,933,934,936,"
             "937,943,945,947,948,949,951,953,954,957,963,965,967,980,981,983,988")
A_INDICES = ("6,11,13,15,17,22,23,27,30,37,39,42,47,50,57,70,71,76,79,89,90,94,96,97,99,105,107,108,110,113,124,125,"
             "130,132,143,144,150,151,207,234,235,254,277,283,287,291,295,298,301,306,307,308,309,310,311,313,314,"
             "315,317,319,323,324,326,327,330,334,335,336,347,361,363,372,378,386,397,400,401,402,404,407,411,416,"
             "417,420,425,428,430,437,438,445,456,457,461,462,470,472,483,486,488,492,496,514,516,528,530,539,542,"
             "543,549,552,557,561,562,569,572,573,575,579,589,606,607,609,614,626,627,640,641,642,643,658,668,677,"
             "682,684,687,701,704,719,736,746,749,752,758,763,765,768,773,774,776,779,780,786,792,797,802,803,804,"
             "813,815,820,823,831,833,835,839,845,847,850,859,862,870,879,880,888,890,897,900,907,913,924,932,933,"
             "934,937,943,945,947,951,954,956,957,959,971,972,980,981,984,986,987,988")


def run(dataset: str, src: Path, out: Path, workers: int = 2, **options) -> dict:
    return convert(dataset, src, out, workers=workers, progress=False, log=quiet, **options)


def read_back(out: Path, split: str) -> dict[str, dict]:
    """key -> decoded sample, read with the webdataset library from the shard list in _info.json."""
    info = json.loads((out / "_info.json").read_text())
    urls = [str(out / f) for f in info["splits"][split]["filenames"]]
    samples = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode())
    keys = [s["__key__"] for s in samples]
    assert len(keys) == len(set(keys)), f"{split}: duplicate keys"
    assert all(SAFE_KEY.match(k) for k in keys), f"{split}: unsafe keys"
    return {s["__key__"]: s for s in samples}


def check_split(out: Path, split: str, expected: list, manifest: dict) -> dict[str, dict]:
    """The split holds exactly the decodable expected samples, with their labels and names."""
    got = read_back(out, split)
    assert set(got) == {e.key for e in expected if not e.bad}
    for e in expected:
        if e.bad:
            continue
        s = got[e.key]
        assert s["cls"] == e.label == s["json"]["label"]
        assert s["json"]["wnid"] == e.wnid
        assert s["json"]["filename"].endswith(f"/{e.filename}")
        for name, value in (e.extra or {}).items():
            if name != "subdir":
                assert s["json"][name] == value, f"{e.key}: {name}"
    counts = manifest["splits"][split]
    assert counts["samples_in"] == len(expected)
    assert counts["quarantined"] == sum(e.bad for e in expected)
    return got


def assert_verified(out: Path) -> None:
    report = verify(out, progress=False)
    assert report.ok, report.problems


# --- ImageNet-21K -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fake21k():
    return plan(num_classes=5, max_per_class=8, style="small", seed=3)


@pytest.fixture(scope="module")
def raw21k(tmp_path_factory, fake21k):
    made: dict[tuple, Path] = {}

    def make(layout: str = "fall11", order_seed: int = 0) -> Path:
        if (layout, order_seed) not in made:
            root = tmp_path_factory.mktemp(f"raw21k-{layout}-{order_seed}")
            make_imagenet21k(root, layout, fake=fake21k, order_seed=order_seed)
            made[(layout, order_seed)] = root
        return made[(layout, order_seed)]

    return make


@pytest.fixture(scope="module")
def fall11_out(tmp_path_factory, raw21k):
    out = tmp_path_factory.mktemp("fall11-out")
    return out, run("imagenet21k", raw21k("fall11"), out, shard_size=6)


def test_fall11_labels_keys_and_quirks(fall11_out, fake21k):
    out, manifest = fall11_out
    assert manifest["layout"] == "fall11" and manifest["class_list"] == "imagenet21k"
    assert manifest["num_classes"] == 21841 and len((out / "classes.tsv").read_text().splitlines()) == 21841
    got = check_split(out, "train", fake21k.samples, manifest)
    assert any(s.wnid not in wnid_list("imagenet1k") for s in fake21k.samples)  # classes beyond IN-1K
    assert all(s["json"]["filename"] == f"{s['json']['wnid']}/{s['__key__']}.JPEG" for s in got.values())
    hygiene = {s.quirk: got[s.key]["json"].get("hygiene", []) for s in fake21k.samples if s.quirk and not s.bad}
    assert "png_to_jpeg" in hygiene["png"] and "cmyk_to_rgb" in hygiene["cmyk"]
    assert [q["key"] for q in manifest["quarantine"]] == [s.key for s in fake21k.samples if s.bad]
    # no holdout asked: everything is train, and validation is empty (21K ships none)
    assert manifest["splits"]["validation"]["samples_in"] == 0
    assert "validation" not in json.loads((out / "_info.json").read_text())["splits"]
    assert manifest["dataset_info"]["holdout_per_class"] == 0
    assert_verified(out)


def test_winter21_is_spooled_not_extracted_and_matches_fall11(tmp_path, raw21k, fall11_out):
    src = raw21k("winter21")
    out = tmp_path / "w21"
    manifest = run("imagenet21k", src, out, shard_size=6, keep_work=True)
    assert manifest["layout"] == "winter21"
    spooled = [p.name for p in (out / ".imagenet-pipe-work" / "spool").iterdir()]
    assert spooled == ["winter21_whole.tar.gz.spool.tar"]  # one stream-decompressed tar, no files
    assert sorted(p.name for p in src.iterdir()) == ["_fake_expected.json", "winter21_whole.tar.gz"]
    # same images, labels and names as the fall11 fake: byte-identical shards
    assert [s["sha256"] for s in manifest["shards"]] == [s["sha256"] for s in fall11_out[1]["shards"]]


def test_holdout_is_per_class_seeded_and_independent_of_archive_order(tmp_path, raw21k, fake21k):
    outs = []
    for order_seed in (0, 1):
        out = tmp_path / f"order{order_seed}"
        outs.append(run("imagenet21k", raw21k("fall11", order_seed), out, shard_size=4,
                        dataset_options={"holdout_per_class": 2}))
    assert [s["sha256"] for s in outs[0]["shards"]] == [s["sha256"] for s in outs[1]["shards"]]
    manifest, out = outs[1], tmp_path / "order1"
    val, train = read_back(out, "validation"), read_back(out, "train")
    assert not set(val) & set(train)
    bad = {s.key for s in fake21k.samples if s.bad}
    for wnid, samples in fake21k.by_class().items():
        keys = [s.key for s in samples]
        expected = held_out(keys, 2, 0)
        assert len(expected) == min(2, len(keys) // 2)  # small classes keep half for training
        assert {k for k in val if k.startswith(wnid)} == expected - bad
        assert {k for k in train if k.startswith(wnid)} == set(keys) - expected - bad
    assert manifest["splits"]["validation"]["samples_in"] == sum(
        min(2, len(v) // 2) for v in fake21k.by_class().values())
    # another holdout seed picks other images; converting train alone keeps them out of train
    other = run("imagenet21k", raw21k("fall11"), tmp_path / "seed1", splits=["train"], shard_size=100,
                dataset_options={"holdout_per_class": 2, "holdout_seed": 1})
    train_only = read_back(tmp_path / "seed1", "train")
    assert other["splits"]["train"]["samples_in"] == manifest["splits"]["train"]["samples_in"]
    assert set(train_only) != set(train)


def test_class_list_option_ignores_classes_outside_it(tmp_path, raw21k, fake21k):
    out = tmp_path / "p-labels"
    manifest = run("imagenet21k", raw21k("fall11"), out, shard_size=100,
                   dataset_options={"class_list": "imagenet21k_p"})
    assert manifest["class_list"] == "imagenet21k_p" and manifest["num_classes"] == 11221
    p_list = wnid_list("imagenet21k_p")
    outside = {s.wnid for s in fake21k.samples} - set(p_list)
    assert len(outside) == 1
    (record,) = [r for r in manifest["ignored"] if "is not one of" in r["reason"]]
    assert record["file"].endswith(f"{outside.pop()}.tar") and "11221 imagenet21k_p classes" in record["reason"]
    for s in read_back(out, "train").values():
        assert s["cls"] == p_list.index(s["json"]["wnid"])


def test_21k_options_are_checked(tmp_path, raw21k):
    with pytest.raises(SourceError, match="holdout_per_class must be"):
        run("imagenet21k", raw21k("fall11"), tmp_path / "a", dataset_options={"holdout_per_class": -1})
    with pytest.raises(SourceError, match="unknown class list"):
        run("imagenet21k", raw21k("fall11"), tmp_path / "b", dataset_options={"class_list": "imagenet42k"})


@pytest.fixture(scope="module")
def fake21kp():
    return plan_p(num_classes=4, per_class=5, val_per_class=2, style="small", seed=1)


def test_21k_p_folder_and_archive(tmp_path, fake21kp):
    digests = []
    for variant in ("folder", "archive"):
        src = tmp_path / f"raw-{variant}"
        make_imagenet21k(src, "21k-p", variant=variant, fake=fake21kp)
        out = tmp_path / f"out-{variant}"
        manifest = run("imagenet21k", src, out, shard_size=5)
        assert manifest["layout"] == "21k-p"
        assert manifest["class_list"] == "imagenet21k_p_winter21"  # every class is in the winter21 list
        for split in ("train", "validation"):
            got = check_split(out, split, [s for s in fake21kp.samples if s.split == split], manifest)
            assert all((s["json"]["width"], s["json"]["height"]) == (224, 224) for s in got.values())
        small = {s.wnid for s in fake21kp.samples if s.split == "ignored"}
        (record,) = [r for r in manifest["ignored"] if "is not one of" in r["reason"]]
        assert f"imagenet21k_small_classes/{small.pop()}/" in record["file"]
        assert_verified(out)
        digests.append([s["sha256"] for s in manifest["shards"]])
    assert digests[0] == digests[1]


def test_21k_p_small_classes_join_train_with_a_wider_class_list(tmp_path, fake21kp):
    src = tmp_path / "raw"
    make_imagenet21k(src, "21k-p", fake=fake21kp)
    manifest = run("imagenet21k", src, tmp_path / "out", shard_size=100, dataset_options={"class_list": "imagenet21k"})
    fall11 = wnid_list("imagenet21k")
    train = read_back(tmp_path / "out", "train")
    assert len(train) == sum(s.split in ("train", "ignored") for s in fake21kp.samples)
    assert all(s["cls"] == fall11.index(s["json"]["wnid"]) for s in train.values())
    assert manifest["ignored"] == []
    with pytest.raises(SourceError, match="ships its own validation split"):
        run("imagenet21k", src, tmp_path / "out2", dataset_options={"holdout_per_class": 5})


# --- ImageNet-V2 ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def v2(tmp_path_factory):
    src = tmp_path_factory.mktemp("raw-v2")
    fake = make_imagenet_v2(src, num_classes=8, per_class=2, style="small", seed=0)
    out = tmp_path_factory.mktemp("v2-out")
    return src, fake, out, run("imagenet-v2", src, out, shard_size=7)


def test_v2_labels_are_numeric_folder_names(v2):
    src, fake, out, manifest = v2
    with open(src / "imagenetv2-matched-frequency.tar.gz", "rb") as f:
        assert f.read(2) == b"\x1f\x8b"  # gzip ...
    with open(src / "imagenetv2-threshold0.7.tar.gz", "rb") as f:
        assert f.read(2) != b"\x1f\x8b"  # ... and a plain tar under the same kind of name
    info = json.loads((out / "_info.json").read_text())
    assert list(info["splits"]) == ["matched_frequency", "threshold_0_7", "top_images"]
    for split in info["splits"]:
        got = check_split(out, split, [s for s in fake.samples if s.split == split], manifest)
        labels = {int(s["json"]["filename"].split("/")[0]): s["cls"] for s in got.values()}
        assert all(folder == label for folder, label in labels.items())
        assert {2, 10, 100} <= set(labels)  # a string sort would have given folder 10 label 2
        assert all(s["json"]["filename"].endswith(".jpeg") and len(k) == 9 + 1 + 40 for k, s in got.items())
    for shard in manifest["shards"]:  # split names keep DALI's "cut at the first dot" rule intact
        assert idx_name(shard["name"]) == shard["name"][: -len(".tar")] + ".idx"
        assert (out / idx_name(shard["name"])).exists()
    assert_verified(out)


def test_v2_one_set_only(tmp_path, v2):
    src = tmp_path / "only-mf"
    src.mkdir()
    (src / "imagenetv2-matched-frequency.tar.gz").symlink_to(v2[0] / "imagenetv2-matched-frequency.tar.gz")
    with pytest.raises(SourceError, match="--splits matched_frequency"):
        run("imagenet-v2", src, tmp_path / "out")
    manifest = run("imagenet-v2", src, tmp_path / "out2", splits=["matched_frequency"])
    assert list(manifest["splits"]) == ["matched_frequency"]


# --- ImageNet-C ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def imagenet_c(tmp_path_factory):
    src = tmp_path_factory.mktemp("raw-c")
    fake = make_imagenet_c(src, val_images=4, style="small", seed=0)
    return src, fake


def test_c_every_corruption_and_severity_is_a_split(tmp_path, imagenet_c):
    src, fake = imagenet_c
    with open(src / "blur.tar", "rb") as f:
        assert f.read(2) == b"\x1f\x8b"  # gzip under a .tar name
    out = tmp_path / "out"
    manifest = run("imagenet-c", src, out, shard_size=3, splits=["gaussian_noise-*", "shot_noise-*", "defocus_blur-*"])
    splits = sorted({s.split for s in fake.samples})
    assert len(splits) == 15 and sorted(manifest["splits"]) == splits
    info = json.loads((out / "_info.json").read_text())
    assert sorted(info["splits"]) == splits
    all_keys = []
    for split in splits:
        got = check_split(out, split, [s for s in fake.samples if s.split == split], manifest)
        corruption, severity = split.rsplit("-", 1)
        for s in got.values():
            assert (s["json"]["corruption"], s["json"]["severity"]) == (corruption, int(severity))
            assert (s["json"]["width"], s["json"]["height"]) == (224, 224)
        all_keys += list(got)
    assert len(all_keys) == len(set(all_keys))  # keys are unique across splits, too
    val2 = read_back(out, "gaussian_noise-3")["gaussian_noise-3-ILSVRC2012_val_00000002"]
    assert val2["cls"] == 970 and val2["json"]["real_labels"] == [795, 970]
    assert_verified(out)


def test_c_output_does_not_depend_on_workers(tmp_path, imagenet_c):
    digests = []
    for workers in (1, 2):
        m = run("imagenet-c", imagenet_c[0], tmp_path / f"w{workers}", workers=workers, shard_size=2,
                splits=["shot_noise-2", "defocus_blur-5"])
        digests.append([(s["name"], s["sha256"]) for s in m["shards"]])
    assert digests[0] == digests[1]


def test_c_missing_archive_and_split_names(tmp_path, imagenet_c):
    with pytest.raises(SourceError, match=r"weather\.tar.*--splits 'gaussian_noise-\*"):
        run("imagenet-c", imagenet_c[0], tmp_path / "out")
    preset = load_preset("imagenet-c", "datasets")
    assert tuple(preset["splits"]) == C_SPLITS and len(C_SPLITS) == 95
    with pytest.raises(ConvertError, match="matches none"):
        resolve_options("imagenet-c", imagenet_c[0], splits=["gaussian-*"])


# --- ImageNet-R and ImageNet-A -------------------------------------------------------------------

@pytest.mark.parametrize("dataset,spec_indices", [("imagenet-r", R_INDICES), ("imagenet-a", A_INDICES)])
def test_r_and_a_labels_keys_and_alt_split(tmp_path, dataset, spec_indices):
    src = tmp_path / "raw"
    fake = make_renditions(src, dataset, num_classes=4, per_class=3, style="small", seed=2)
    out = tmp_path / "out"
    manifest = run(dataset, src, out, shard_size=4)
    got = check_split(out, "validation", fake.samples, manifest)
    subset = "imagenet_r" if dataset == "imagenet-r" else "imagenet_a"
    for s in got.values():
        assert s["json"]["label_200"] == wnid_list(subset).index(s["json"]["wnid"])
        assert subset_indices(subset)[s["json"]["label_200"]] == s["cls"]
    if dataset == "imagenet-a":  # original names (spaces, dots) kept in json, keys numbered per class
        assert all(" " in s["json"]["filename"] and s["json"]["filename"].count(".") >= 3 for s in got.values())
    info = manifest["dataset_info"]
    assert info["subset_indices"] == [int(i) for i in spec_indices.split(",")] == subset_indices(subset)
    splits = json.loads((out / "_info.json").read_text())["splits"]
    alt, base = splits["validation_200"], splits["validation"]
    assert alt["alt_label"] == "label_200" and alt["name"] == "validation_200"
    assert (alt["filenames"], alt["shard_lengths"], alt["num_samples"]) == (
        base["filenames"], base["shard_lengths"], base["num_samples"])
    assert [r["file"] for r in manifest["ignored"]] == []  # README.txt is checked, not a sample
    assert_verified(out)


def test_r_wrong_readme_or_class_is_an_error(tmp_path):
    from imagenet_pipe.fakes.common import write_tar_file

    src = tmp_path / "raw"
    fake = make_renditions(src, "imagenet-r", num_classes=2, per_class=1, style="small", seed=0)
    members = [(n, d if not n.endswith("README.txt") else b"n01440764 tench\n") for n, d in fake.members]
    write_tar_file(src / "imagenet-r.tar", members)
    with pytest.raises(SourceError, match=r"README\.txt lists 1 classes"):
        run("imagenet-r", src, tmp_path / "out")
    members = [(n.replace(fake.samples[0].wnid, "n01440764"), d) for n, d in fake.members if "README" not in n]
    write_tar_file(src / "imagenet-r.tar", members)
    with pytest.raises(SourceError, match="n01440764 is not one of the 200 imagenet-r classes"):
        run("imagenet-r", src, tmp_path / "out2")


# --- ImageNet-Sketch -----------------------------------------------------------------------------

def test_sketch_all_images_and_black_flag(tmp_path):
    src = tmp_path / "raw"
    fake = make_imagenet_sketch(src, num_classes=4, per_class=3, large_class=7, style="small", seed=0)
    out = tmp_path / "out"
    manifest = run("imagenet-sketch", src, out, shard_size=5)
    got = check_split(out, "validation", fake.samples, manifest)  # includes the all_black true/false check
    per_class = Counter(s["json"]["wnid"] for s in got.values())
    assert sorted(per_class.values()) == [3, 3, 3, 7]  # not capped
    assert all(k.startswith(s["json"]["wnid"] + "_sketch_") for k, s in got.items())
    quirks = {s.quirk: got[s.key]["json"] for s in fake.samples if s.quirk}
    assert quirks["black"]["all_black"] is True
    assert "grayscale_to_rgb" in quirks["grayscale"]["hygiene"] and "png_to_jpeg" in quirks["png"]["hygiene"]
    assert manifest["image_flags"] == {"all_black": 1}
    assert manifest["options"]["hygiene"]["flags"] == ["all_black"]
    assert_verified(out)
    # a rerun with the same options is recognised (flags survive the JSON round trip)
    again = run("imagenet-sketch", src, out, shard_size=5)
    assert again == manifest


def test_all_black_flag_is_opt_in_and_checked():
    from imagenet_pipe.fakes.images import ImageFactory, jpeg_bytes

    black = jpeg_bytes(Image.new("RGB", (40, 30)))
    photo = ImageFactory(0, "small").jpeg()
    policy = HygienePolicy(flags=("all_black",))
    assert clean(black, policy).flags == {"all_black": True}
    assert clean(photo, policy).flags == {"all_black": False}
    assert clean(black).flags == {}
    with pytest.raises(ValueError, match="unknown image flag"):
        HygienePolicy(flags=("blurry",))


# --- every dataset ---------------------------------------------------------------------------------

def test_the_fakes_registry_matches_the_sources_registry(tmp_path):
    assert list(FAKES) == list(SOURCES)
    with pytest.raises(OptionsError, match="no fake generator for 'imagenet-x'"):
        make_fake("imagenet-x", tmp_path)


def test_presets_and_fakes_exist_for_every_dataset(tmp_path):
    for dataset in SOURCES:
        preset = load_preset(dataset, "datasets")
        assert preset["dataset"] == dataset and SAFE_KEY.match(preset["prefix"])
        assert all(SAFE_KEY.match(s) and "." not in s for s in preset["splits"])
        if dataset == "imagenet1k":
            continue
        root = tmp_path / dataset
        samples = make_fake(dataset, root, style="small")
        assert samples and read_expected(root)["dataset"] == dataset
        assert SOURCES[dataset][0].detect(root)
        for member in (tarfile.open(p) for p in root.glob("*.tar")):
            assert member.getmembers()  # archives are readable tars (plain or compressed)
            member.close()
