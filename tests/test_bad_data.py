"""Bad input never costs a sample silently: every damaged or unusual raw download (generated with
``imagenet_pipe.fakes.damage``) ends in samples in = written + quarantined with a reason, a
recorded repair, or an error naming the file (archive, member, offset, line), and never in an
output folder that claims to be complete without being so."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagenet_pipe.cli import main as cli_main
from imagenet_pipe.conversion import ConvertError, convert
from imagenet_pipe.conversion.hygiene import HygienePolicy
from imagenet_pipe.errors import ArchiveError, ImagenetPipeError, SourceError
from imagenet_pipe.fakes import damage
from imagenet_pipe.fakes.imagenet1k import make_imagenet1k
from imagenet_pipe.fakes.images import ImageFactory
from imagenet_pipe.format import SAFE_KEY, TRASH_DIR, WORK_DIR, iter_samples
from imagenet_pipe.verification import verify

from .conftest import quiet

TRAIN_TAR, VAL_TAR = "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"
GT = "ILSVRC2012_devkit_t12.tar.gz/data/ILSVRC2012_validation_ground_truth.txt"


def run(src: Path, out: Path, dataset: str = "imagenet1k", **options) -> dict:
    return convert(dataset, src, out, workers=1, shard_size=100, progress=False, log=quiet, **options)


def raw(tmp_path: Path, fake1k, layout: str = "official", variant: str | None = None) -> Path:
    root = tmp_path / f"raw-{layout}"
    make_imagenet1k(root, layout, variant=variant, fake=fake1k)
    return root


def samples_of(out: Path, manifest: dict) -> dict[str, dict]:
    """key -> {cls, jpg, json} of every written sample, read straight from the shards."""
    got = {}
    for shard in manifest["shards"]:
        for key, sample in iter_samples(out / shard["name"]):
            got[key] = {**sample, "json": json.loads(sample["json"])}
    return got


def assert_accounted(out: Path, manifest: dict, samples_in: dict[str, int]) -> None:
    """Every sample is written or quarantined with a reason, and the folder verifies."""
    for split, n in samples_in.items():
        counts = manifest["splits"][split]
        assert counts["samples_in"] == n == counts["written"] + counts["quarantined"], (split, counts)
    assert all(q["reason"] for q in manifest["quarantine"])
    report = verify(out, decode=True, workers=1, progress=False)
    assert report.ok, report.problems


def assert_not_complete(out: Path) -> None:
    """A failed run leaves nothing that claims to be a finished conversion."""
    assert not (out / "manifest.json").exists() or not verify(out, workers=1, progress=False).ok


def class_tar(fake1k, index: int = 0) -> tuple[str, int]:
    """(member name in the train tar, number of images) of the index-th class."""
    wnid = sorted(fake1k.train_counts)[index]
    return f"{wnid}.tar", fake1k.train_counts[wnid]


def counts(fake1k) -> dict[str, int]:
    return {split: sum(1 for s in fake1k.samples if s.split == split) for split in ("train", "validation")}


# --- 1. ground truth --------------------------------------------------------------------------

@pytest.mark.parametrize("edit,message", [
    (lambda lines: lines[1:], "has 49999 lines, expected 50000"),  # val 1 would get val 2's label
    (lambda lines: [*lines, "1"], "has 50001 lines, expected 50000"),
    (lambda lines: lines[:10], "has 10 lines, expected 50000"),
    (lambda lines: [*lines[:6], "49O", *lines[7:]], "line 7: '49O' is not an ILSVRC2012_ID"),
])
def test_ground_truth_of_the_wrong_length_or_not_integers_is_refused(tmp_path, fake1k, edit, message):
    src = raw(tmp_path, fake1k)
    damage.edit_ground_truth(src, edit)
    with pytest.raises(SourceError, match=re.escape(f"{GT}") + ".*" + re.escape(message)):
        run(src, tmp_path / "out", splits=["validation"])
    assert_not_complete(tmp_path / "out")


# --- 2. damaged class tars inside the train tar -------------------------------------------------

@pytest.mark.parametrize("edit,message", [
    (lambda tar: damage.break_header_checksum(tar, 3), r"damaged tar header at offset \d+ \(byte \d+ of the outer"),
    (lambda tar: damage.cut_in_header(tar, 3), r"truncated inside the header at offset \d+ .*100 of 512 bytes"),
    (lambda tar: damage.cut_in_data(tar, 3), r"truncated inside member 'n\d+_\d+\.JPEG' at offset \d+"),
    (damage.garble_first_header, r"not a readable tar: header at offset 0"),
])
def test_a_damaged_class_tar_stops_the_run_naming_both_archives_and_the_offset(tmp_path, fake1k, edit, message):
    src = raw(tmp_path, fake1k)
    member, _ = class_tar(fake1k, 2)
    damage.edit_member(src / TRAIN_TAR, member, edit)
    with pytest.raises(ArchiveError, match=re.escape(f"{TRAIN_TAR}/{member}: ") + message):
        run(src, tmp_path / "out", splits=["train"])
    assert_not_complete(tmp_path / "out")


def test_a_class_tar_without_end_blocks_is_a_warning_and_strict_refuses_it(tmp_path, fake1k):
    src = raw(tmp_path, fake1k)
    member, _ = class_tar(fake1k, 1)
    damage.edit_member(src / TRAIN_TAR, member, damage.without_end_blocks)
    manifest = run(src, tmp_path / "out", splits=["train"])
    (warning,) = manifest["warnings"]
    assert warning.startswith(f"{TRAIN_TAR}/{member}: ends after its last member without the end-of-archive blocks")
    assert_accounted(tmp_path / "out", manifest, {"train": counts(fake1k)["train"]})  # every member still there
    with pytest.raises(ConvertError, match=re.escape(f"--strict: {TRAIN_TAR}/{member}: ends after its last member")):
        run(src, tmp_path / "strict", splits=["train"], strict=True)
    assert_not_complete(tmp_path / "strict")


def test_links_and_special_members_of_a_class_tar_are_recorded(tmp_path, fake1k):
    src = raw(tmp_path, fake1k)
    member, _ = class_tar(fake1k, 0)
    wnid = member[:-4]
    specials = {f"{wnid}_90001.JPEG": ("symlink", f"{wnid}_1.JPEG"), f"{wnid}_90002.JPEG": ("hardlink", "x.JPEG"),
                f"{wnid}_90003.JPEG": ("fifo", "")}
    damage.edit_member(src / TRAIN_TAR, member, lambda tar: damage.with_special_members(tar, specials))
    manifest = run(src, tmp_path / "out", splits=["train"])
    ignored = {i["file"]: i["reason"] for i in manifest["ignored"]}
    assert ignored[f"{TRAIN_TAR}/{member}/{wnid}_90001.JPEG"] == \
        f"symbolic link to '{wnid}_1.JPEG': not a regular file, not read"
    assert ignored[f"{TRAIN_TAR}/{member}/{wnid}_90002.JPEG"] == "hard link to 'x.JPEG': not a regular file, not read"
    assert ignored[f"{TRAIN_TAR}/{member}/{wnid}_90003.JPEG"] == "FIFO: not a regular file, not read"
    assert_accounted(tmp_path / "out", manifest, {"train": counts(fake1k)["train"]})


# --- 3. the source changes between an interruption and the rerun -------------------------------

def test_resume_after_the_source_changed_starts_over(tmp_path, fake1k):
    from imagenet_pipe.fakes.imagenet1k import plan

    from .test_resume_verify import _kill_when, _start

    src = raw(tmp_path, fake1k)
    out = tmp_path / "out"
    proc = _start(src, out, slow=0.02)
    _kill_when(proc, lambda: len(list((out / WORK_DIR / "inspect").glob("*.npz"))) >= 1)
    other = plan(num_classes=8, train_per_class=5, val_images=9, style="small", seed=7)  # rewritten download
    make_imagenet1k(src, "official", fake=other)
    lines = []
    manifest = convert("imagenet1k", src, out, workers=2, shard_size=5, progress=False, log=lines.append)
    assert any("changed since the interrupted run: starting over" in line for line in lines)
    ref = convert("imagenet1k", src, tmp_path / "ref", workers=2, shard_size=5, progress=False, log=quiet)
    assert manifest["shards"] == ref["shards"]  # same bytes as a fresh conversion of the new files
    assert_accounted(out, manifest, counts(other))


def test_a_finished_conversion_whose_source_changed_needs_overwrite(tmp_path, fake1k):
    src = raw(tmp_path, fake1k)
    run(src, tmp_path / "out", splits=["validation"])
    damage.edit_ground_truth(src, lambda lines: [*lines[1:], lines[0]])  # same length, labels moved
    with pytest.raises(ConvertError, match="changed since"):
        run(src, tmp_path / "out", splits=["validation"])
    assert run(src, tmp_path / "out", splits=["validation"], overwrite=True)["splits"]["validation"]["written"] > 0


# --- 4, 9. folders: unreadable, linked, special files ------------------------------------------

def test_an_unreadable_class_folder_stops_the_scan(tmp_path, fake1k):
    src = raw(tmp_path, fake1k, "folder", "classes")
    wnid = sorted(fake1k.train_counts)[3]
    folder = src / "train" / wnid
    folder.chmod(0)
    try:
        message = _scan_error_without_privileges(src) if os.geteuid() == 0 else _scan_error(src)
    finally:
        folder.chmod(0o755)
    assert message == f"cannot list folder {folder}: Permission denied"


def _scan_error(src: Path) -> str:
    from imagenet_pipe.sources import open_source
    from imagenet_pipe.sources.archive import Containers

    source = open_source("imagenet1k", src, src.parent / "work", "folder")
    try:
        list(source.scan(["train"], Containers()))
    except SourceError as e:
        return str(e)
    return "no error"


def _scan_error_without_privileges(src: Path) -> str:
    """root reads any folder: scan in a child process that drops to an unprivileged user."""
    for path in (src.parent, *src.parent.parents):
        path.chmod(path.stat().st_mode | 0o005)  # let 'nobody' reach the fake download
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            except OSError as e:
                os.write(write, f"cannot drop privileges: {e}".encode())
            else:
                os.write(write, _scan_error(src).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as f:
        message = f.read()
    if message.startswith("cannot drop privileges"):
        pytest.skip(message)  # e.g. a user namespace without uid 65534
    return message


def test_a_fifo_named_jpeg_is_skipped_with_a_record_not_opened(tmp_path, fake1k):
    src = raw(tmp_path, fake1k, "folder", "classes")
    wnid = sorted(fake1k.train_counts)[0]
    os.mkfifo(src / "train" / wnid / f"{wnid}_77777.JPEG")
    (src / "train" / wnid / f"{wnid}_88888.JPEG").symlink_to(src / "nowhere.JPEG")

    def hung(*_):
        raise TimeoutError("the converter blocked on the FIFO")

    signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        manifest = run(src, tmp_path / "out", splits=["train"])
    finally:
        signal.alarm(0)
    ignored = {i["file"]: i["reason"] for i in manifest["ignored"]}
    assert ignored[f"train/{wnid}/{wnid}_77777.JPEG"] == "FIFO: not a regular file, not read"
    assert ignored[f"train/{wnid}/{wnid}_88888.JPEG"] == "broken symbolic link: not a regular file, not read"
    assert_accounted(tmp_path / "out", manifest, {"train": counts(fake1k)["train"]})


def test_linked_class_folders_are_followed_and_loops_recorded(tmp_path, fake1k):
    src = raw(tmp_path, fake1k, "folder", "classes")
    wnid = sorted(fake1k.train_counts)[0]
    elsewhere = tmp_path / "elsewhere"
    shutil.move(src / "train" / wnid, elsewhere)
    (src / "train" / wnid).symlink_to(elsewhere)  # a class folder kept on another disk
    (elsewhere / "loop").symlink_to(src / "train")
    manifest = run(src, tmp_path / "out", splits=["train"])
    assert manifest["splits"]["train"]["samples_in"] == counts(fake1k)["train"]
    assert {"file": f"train/{wnid}/loop/", "reason": "link to a folder already walked (a loop): not followed"} \
        in manifest["ignored"]
    assert_accounted(tmp_path / "out", manifest, {"train": counts(fake1k)["train"]})


# --- 5, 6. problem images ---------------------------------------------------------------------

def add_train_images(src: Path, fake1k, images: dict[str, bytes], index: int = 0) -> str:
    """Add images (name suffix -> bytes) to a class tar of the official fake; returns the wnid."""
    member, _ = class_tar(fake1k, index)
    wnid = member[:-4]
    damage.edit_member(src / TRAIN_TAR, member,
                       lambda tar: damage.with_members(tar, [(f"{wnid}_{n}.JPEG", d) for n, d in images.items()]))
    return wnid


def test_decompression_bombs_are_quarantined_from_their_header(tmp_path, fake1k):
    src = raw(tmp_path, fake1k)
    wnid = add_train_images(src, fake1k, {"90001": damage.bomb_jpeg(30_000, 30_000),
                                          "90002": damage.bomb_png(10_000, 9_000)})
    manifest = run(src, tmp_path / "out", splits=["train"])
    reasons = {q["key"]: q["reason"] for q in manifest["quarantine"]}
    assert reasons[f"{wnid}_90001"] == ("decompression bomb: the header declares 30000x30000 = 900 M pixels, "
                                        "more than --max-pixels 89478485")
    assert reasons[f"{wnid}_90002"].startswith("decompression bomb: the header declares 10000x9000 = 90 M pixels")
    assert_accounted(tmp_path / "out", manifest, {"train": counts(fake1k)["train"] + 2})
    # the limit is an option: a small one quarantines ordinary images too, with the same reason
    small = run(src, tmp_path / "small", splits=["train"], hygiene=HygienePolicy(max_pixels=7000))
    assert small["splits"]["train"]["quarantined"] > manifest["splits"]["train"]["quarantined"] + 5
    assert_accounted(tmp_path / "small", small, {"train": counts(fake1k)["train"] + 2})


def test_a_file_too_large_to_be_an_image_is_quarantined_unread(tmp_path, fake1k):
    src = raw(tmp_path, fake1k, "folder", "classes")
    wnid = sorted(fake1k.train_counts)[0]
    huge = src / "train" / wnid / f"{wnid}_99999.JPEG"
    with open(huge, "wb") as f:
        f.truncate(1 << 30)  # 1 GiB, sparse: reading it would take 1 GiB of memory
    manifest = run(src, tmp_path / "out", splits=["train"])
    (q,) = [q for q in manifest["quarantine"] if q["key"] == f"{wnid}_99999"]
    limit = HygienePolicy().max_file_bytes
    assert q["reason"] == (f"too large: 1,073,741,824 bytes, larger than any image within the pixel limit "
                           f"({limit:,} bytes): {huge.parent.parent}/{wnid}/{huge.name}")
    assert_accounted(tmp_path / "out", manifest, {"train": counts(fake1k)["train"] + 1})


def test_16_bit_pngs_are_scaled_and_32_bit_tiffs_quarantined(tmp_path, fake1k):
    src = raw(tmp_path, fake1k)
    photo = ImageFactory(5, "small").image()
    wnid = add_train_images(src, fake1k, {"90001": damage.png_16bit(photo), "90002": damage.tiff_int32(photo),
                                          "90003": damage.tiff_float(photo)})
    manifest = run(src, tmp_path / "out", splits=["train"])
    reasons = {q["key"]: q["reason"] for q in manifest["quarantine"]}
    assert reasons[f"{wnid}_90002"] == "32-bit integer pixels (mode I) have no defined 8-bit range"
    assert reasons[f"{wnid}_90003"] == "floating-point pixels (mode F) have no defined 8-bit range"
    sample = samples_of(tmp_path / "out", manifest)[f"{wnid}_90001"]
    assert sample["json"]["hygiene"] == ["png_to_jpeg", "grayscale16_to_rgb", "reencoded:q95"]
    stored = np.asarray(Image.open(io.BytesIO(sample["jpg"])).convert("L"), dtype=np.float64)
    original = np.asarray(photo.convert("L"), dtype=np.float64)
    assert abs(stored.mean() - original.mean()) < 2 and np.abs(stored - original).mean() < 3  # not 99 % white
    assert_accounted(tmp_path / "out", manifest, {"train": counts(fake1k)["train"] + 3})


def test_bytes_after_the_jpeg_end_marker_are_trimmed_and_recorded(tmp_path, fake1k):
    """Issue 8: whatever ``verify --decode`` accepts, the loaders load; the stored JPEG ends with EOI."""
    src = raw(tmp_path, fake1k)
    jpeg = ImageFactory(6, "small").jpeg()
    junk = b"\x00" * 37 + b"\xff\xd9 trailing junk"
    wnid = add_train_images(src, fake1k, {"90001": damage.with_trailing_bytes(jpeg, junk)})
    manifest = run(src, tmp_path / "out", splits=["train"])
    sample = samples_of(tmp_path / "out", manifest)[f"{wnid}_90001"]
    assert sample["jpg"] == jpeg and sample["jpg"].endswith(b"\xff\xd9")
    assert sample["json"]["hygiene"] == [f"trailing_bytes_trimmed:{len(junk)}"]
    assert manifest["hygiene"]["trailing_bytes_trimmed"] == 1
    assert_accounted(tmp_path / "out", manifest, {"train": counts(fake1k)["train"] + 1})
    from imagenet_pipe import build_loader

    for backend in ("dali", "baseline"):  # verify --decode accepted it: both loaders load it
        loader = build_loader(tmp_path / "out", "train", "eval-224", batch_size=8, return_keys=True, device="cpu",
                              backend=backend, num_threads=1)
        keys = [k for batch in loader for k in batch.keys]
        assert f"{wnid}_90001" in keys and len(keys) == manifest["splits"]["train"]["written"], backend


# --- 7, 8. interrupted --overwrite, interrupted clean-up ----------------------------------------

def test_an_interrupted_overwrite_leaves_no_index_of_the_previous_conversion(tmp_path, fake1k):
    from .test_resume_verify import _kill_when, _start

    src = raw(tmp_path, fake1k)
    out = tmp_path / "out"
    previous = convert("imagenet1k", src, out, workers=1, shard_size=3, progress=False, log=quiet)
    old_shards = {n for s in previous["shards"] for n in (s["name"], s["name"][:-4] + ".idx")}  # -00 .. -15
    proc = _start(src, out, slow=0.02, extra=["--overwrite"])  # --shard-size 5: shards -0 .. -9
    _kill_when(proc, lambda: len(list((out / WORK_DIR / "inspect").glob("*.npz"))) >= 1)
    left = {p.name for p in out.iterdir()}
    assert not left & {"manifest.json", "_info.json", "info.json", "sizes.json", "README.md", "classes.tsv",
                       "imagenet1k-train.json", "imagenet1k-validation.json"}, left
    assert not left & old_shards, "shards of the previous conversion remain"
    manifest = convert("imagenet1k", src, out, workers=2, shard_size=5, progress=False, log=quiet)  # resumes
    ref = convert("imagenet1k", src, tmp_path / "ref", workers=2, shard_size=5, progress=False, log=quiet)
    assert manifest["shards"] == ref["shards"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "ref").iterdir())
    assert_accounted(out, manifest, counts(fake1k))


def test_a_clean_up_killed_part_way_finishes_on_the_rerun(tmp_path, fake1k):
    src = raw(tmp_path, fake1k)
    out = tmp_path / "out"
    first = run(src, out, keep_work=True)  # as if killed just before the work folder goes
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert run(src, out) == first  # resumes every phase as done, same manifest, no "different options"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files
    run(src, out, keep_work=True, overwrite=True)
    (out / WORK_DIR).rename(out / TRASH_DIR)  # killed while deleting: renamed, half deleted
    (out / TRASH_DIR / "options.json").unlink()
    assert run(src, out) == first  # a finished conversion: nothing to do
    assert not (out / TRASH_DIR).exists()
    assert_accounted(out, first, counts(fake1k))


def test_a_damaged_manifest_needs_overwrite_and_its_shards_are_replaced(tmp_path, fake1k):
    src = raw(tmp_path, fake1k)
    out = tmp_path / "out"
    convert("imagenet1k", src, out, workers=1, shard_size=3, progress=False, log=quiet)
    damage.truncate(out / "manifest.json", 0.5)
    with pytest.raises(ConvertError, match=r"manifest\.json: not readable JSON .*pass --overwrite"):
        run(src, out)
    manifest = run(src, out, overwrite=True)  # 1 shard per split: the old ones go by their name pattern
    assert sorted(p.name for p in out.glob("*.tar")) == sorted(s["name"] for s in manifest["shards"])
    assert_accounted(out, manifest, counts(fake1k))


# --- 10. file names ---------------------------------------------------------------------------

def test_any_file_name_gets_a_safe_unique_key_and_keeps_its_name(tmp_path, fake1k):
    src = raw(tmp_path, fake1k, "folder", "classes")
    wnid = sorted(fake1k.train_counts)[0]
    folder = src / "train" / wnid
    names = [f"{wnid}_1 copy.JPEG", f"{wnid}_1_copy.JPEG", f"{wnid}_ñandú.JPEG", f"{wnid}_{'x' * 150}.JPEG",
             f"{wnid}_2.x.JPEG"]
    jpeg = ImageFactory(7, "small").jpeg()
    for name in names:
        (folder / name).write_bytes(jpeg)
    manifest = run(src, tmp_path / "out", splits=["train"])
    by_name = {s["json"]["filename"]: key for key, s in samples_of(tmp_path / "out", manifest).items()}
    keys = [by_name[f"{wnid}/{name}"] for name in names]
    assert len(set(keys)) == len(keys) and all(SAFE_KEY.match(k) for k in keys)
    assert keys[1] == f"{wnid}_1_copy" and keys[0].startswith(f"{wnid}_1_copy-")  # safe names are kept as they are
    assert_accounted(tmp_path / "out", manifest, {"train": counts(fake1k)["train"] + len(names)})


def test_two_names_for_one_key_are_refused_at_scan_time_naming_both(tmp_path, fake1k):
    src = raw(tmp_path, fake1k, "folder", "classes")
    wnid = sorted(fake1k.train_counts)[0]
    jpeg = ImageFactory(8, "small").jpeg()
    (src / "train" / wnid / f"{wnid}_5.JPEG").write_bytes(jpeg)
    (src / "train" / wnid / f"{wnid}_5.jpeg").write_bytes(jpeg)
    with pytest.raises(SourceError, match=re.escape(f"{wnid}/{wnid}_5.JPEG") + ".*" + re.escape(f"{wnid}_5.jpeg")):
        run(src, tmp_path / "out", splits=["train"])
    assert not (tmp_path / "out" / WORK_DIR / "inspect").exists()  # before any image was read


# --- 11. truncated archives of every layout ------------------------------------------------------

def _truncated_official(tmp_path, fake1k, name: str) -> Path:
    src = raw(tmp_path, fake1k)
    damage.truncate(src / name, 0.6)
    return src


def _variant(make: Callable[[Path], object], name: str, keep: float = 0.6) -> Callable[[Path], Path]:
    def build(tmp_path: Path) -> Path:
        src = tmp_path / "raw"
        make(src)
        damage.truncate(src / name, keep)
        return src
    return build


def _fakes():
    from imagenet_pipe.fakes.imagenet_c import make_imagenet_c
    from imagenet_pipe.fakes.imagenet_ra import make_renditions
    from imagenet_pipe.fakes.imagenet_sketch import make_imagenet_sketch
    from imagenet_pipe.fakes.imagenet_v2 import make_imagenet_v2

    return {
        "imagenet-r": _variant(lambda s: make_renditions(s, "imagenet-r", num_classes=2, style="small"),
                               "imagenet-r.tar"),
        "imagenet-c": _variant(lambda s: make_imagenet_c(s, corruptions=("defocus_blur",), val_images=2,
                                                         style="small"), "blur.tar"),  # gzip under a .tar name
        "imagenet-sketch": _variant(lambda s: make_imagenet_sketch(s, num_classes=2, per_class=1, large_class=2,
                                                                   style="small"), "ImageNet-Sketch.zip"),
        "imagenet-v2": _variant(lambda s: make_imagenet_v2(s, num_classes=6, per_class=1, style="small",
                                                           splits=("matched_frequency",)),
                                "imagenetv2-matched-frequency.tar.gz"),
    }


@pytest.mark.parametrize("name,message", [
    (TRAIN_TAR, r"ILSVRC2012_img_train\.tar: truncated inside member 'n\d+\.tar' at offset \d+"),
    (VAL_TAR, r"ILSVRC2012_img_val\.tar: truncated inside (member 'ILSVRC2012_val_\d+\.JPEG'|the header) at offset"),
    ("ILSVRC2012_devkit_t12.tar.gz", r"ILSVRC2012_devkit_t12\.tar\.gz: cannot read the devkit archive \(EOFError"),
])
def test_truncated_official_archives_are_named(tmp_path, fake1k, name, message):
    src = _truncated_official(tmp_path, fake1k, name)
    with pytest.raises(ArchiveError, match=message):
        run(src, tmp_path / "out")
    assert_not_complete(tmp_path / "out")


def test_garbage_meta_mat_and_truncated_kaggle_zip_are_named(tmp_path, fake1k):
    src = raw(tmp_path, fake1k)
    damage.edit_member(src / "ILSVRC2012_devkit_t12.tar.gz", damage.META_MAT, lambda _: b"MATLAB garbage" * 20)
    with pytest.raises(SourceError, match=r"ILSVRC2012_devkit_t12\.tar\.gz/data/meta\.mat: not a devkit meta\.mat"):
        run(src, tmp_path / "out", splits=["validation"])
    kaggle = raw(tmp_path, fake1k, "kaggle", "nested")
    damage.truncate(kaggle / "imagenet-object-localization-challenge.zip", 0.7)
    with pytest.raises(ArchiveError, match=r"imagenet-object-localization-challenge\.zip: not a readable zip"):
        run(kaggle, tmp_path / "out-kaggle")


@pytest.mark.parametrize("dataset,message", [
    ("imagenet-r", r"imagenet-r\.tar: truncated inside (member|the header)"),
    ("imagenet-c", r"blur\.tar: gz data cannot be decompressed \(Compressed file ended"),
    ("imagenet-sketch", r"ImageNet-Sketch\.zip: not a readable zip"),  # not misread as a tar
    ("imagenet-v2", r"imagenetv2-matched-frequency\.tar\.gz: gz data cannot be decompressed"),
])
def test_truncated_variant_archives_are_named_and_the_cli_says_it_in_one_line(tmp_path, capsys, dataset, message):
    src = _fakes()[dataset](tmp_path)
    splits = {"imagenet-c": ["defocus_blur-*"], "imagenet-v2": ["matched_frequency"]}.get(dataset)
    with pytest.raises(ImagenetPipeError, match=message):
        run(src, tmp_path / "out", dataset, splits=splits)
    args = ["convert", dataset, str(src), "--out", str(tmp_path / "cli"), "--quiet", "--workers", "1"]
    args += ["--splits", ",".join(splits)] if splits else []
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err  # the progress log, then the error on its last line
    assert re.match("imagenet-pipe convert: error: .*" + message, err.strip().splitlines()[-1])
    assert cli_main([*args, "--debug"]) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_debug_shows_the_traceback_for_any_command(tmp_path, capsys, monkeypatch):
    from imagenet_pipe.cli import build_parser

    missing = str(tmp_path / "missing")
    assert cli_main(["convert", "imagenet1k", missing, "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == f"imagenet-pipe convert: error: source {missing} is not a directory: pass the " \
                                      "folder holding the download\n"
    monkeypatch.setenv("IMAGENET_PIPE_DEBUG", "1")
    assert cli_main(["convert", "imagenet1k", missing, "--out", str(tmp_path / "o")]) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    parser = build_parser()
    for argv in (["--debug", "verify", "d"], ["verify", "d", "--debug"], ["eval", "d", "--model", "m", "--debug"],
                 ["bench", "d", "--debug"], ["datasets", "--debug"], ["fake", "imagenet1k", "o", "--debug"]):
        assert parser.parse_args(argv).debug is True, argv


def test_an_unreadable_zip_member_is_quarantined_with_its_reason(tmp_path):
    from imagenet_pipe.fakes.imagenet_sketch import make_imagenet_sketch

    src = tmp_path / "raw"
    fake = make_imagenet_sketch(src, num_classes=2, per_class=2, large_class=3, style="small")
    zpath = src / "ImageNet-Sketch.zip"
    import zipfile

    with zipfile.ZipFile(zpath) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(".JPEG"))
    data = bytearray(zpath.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + 5] ^= 0xFF  # flip a bit of its compressed data
    zpath.write_bytes(bytes(data))
    manifest = run(src, tmp_path / "out", "imagenet-sketch")
    (q,) = [q for q in manifest["quarantine"] if q["filename"].endswith(info.filename.split("/", 1)[1])]
    assert q["reason"].startswith(f"unreadable: cannot read {zpath}:{info.filename}: ")
    assert_accounted(tmp_path / "out", manifest, {"validation": len(fake.samples)})


# --- 12. options may change before anything is converted ---------------------------------------

def test_v2_rerun_with_the_suggested_splits_into_the_same_folder(tmp_path):
    from imagenet_pipe.fakes.imagenet_v2 import make_imagenet_v2

    src = tmp_path / "raw"
    make_imagenet_v2(src, num_classes=6, per_class=1, style="small", splits=("matched_frequency",))
    out = tmp_path / "out"
    with pytest.raises(SourceError, match="--splits matched_frequency"):
        run(src, out, "imagenet-v2")
    manifest = run(src, out, "imagenet-v2", splits=["matched_frequency"])
    assert list(manifest["splits"]) == ["matched_frequency"]
    assert_accounted(out, manifest, {"matched_frequency": 6})


# --- 14. verify -------------------------------------------------------------------------------

def _edit_manifest(out: Path, edit: Callable[[dict], None]) -> None:
    manifest = json.loads((out / "manifest.json").read_text())
    edit(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest))


VERIFY_DAMAGE = {
    "totals": (lambda out: _edit_manifest(out, lambda m: m["totals"].update(written=m["totals"]["written"] + 5)),
               "manifest.json: totals say written"),
    "truncated manifest": (lambda out: damage.truncate(out / "manifest.json", 0.5),
                           "manifest.json: not readable JSON"),
    "no shards": (lambda out: _edit_manifest(out, lambda m: m.pop("shards")), "manifest.json: lacks 'shards'"),
    "shard without sha256": (lambda out: _edit_manifest(out, lambda m: m["shards"][1].pop("sha256")),
                             "manifest.json: shards[1]: lacks 'sha256'"),
    "empty idx": (lambda out: (out / "imagenet1k-train-2.idx").write_text(""),
                  "imagenet1k-train-2.idx: " ),
    "truncated shard": (lambda out: damage.truncate(out / "imagenet1k-train-3.tar", 0.5), "imagenet1k-train-3.tar"),
    "stray shard": (lambda out: shutil.copy(out / "imagenet1k-train-0.tar", out / "imagenet1k-train-99.tar"),
                    "imagenet1k-train-99.tar: stray shard file"),
    "partial file": (lambda out: (out / "imagenet1k-train-0.tar.partial-123").write_bytes(b"x"),
                     "imagenet1k-train-0.tar.partial-123: temporary file"),
    "work folder": (lambda out: (out / WORK_DIR).mkdir(), f"{WORK_DIR}/: work folder"),
    "classes.tsv": (lambda out: damage.truncate(out / "classes.tsv", 100), "classes.tsv: does not match"),
    "dataset card": (lambda out: (out / "README.md").write_text("---\n---\n"), "README.md: does not match"),
}


@pytest.mark.parametrize("kind", list(VERIFY_DAMAGE))
def test_verify_names_every_damage_without_a_traceback(tmp_path, shards1k, kind):
    out = tmp_path / "copy"
    shutil.copytree(shards1k, out)
    make_damage, expect = VERIFY_DAMAGE[kind]
    make_damage(out)
    report = verify(out, workers=2, progress=False)
    assert not report.ok and any(expect in p for p in report.problems), report.problems
    assert cli_main(["verify", str(out), "--quiet", "--workers", "2"]) == 1


# --- 15. a split that lost every sample ---------------------------------------------------------

def test_a_split_whose_every_sample_is_quarantined_is_an_error_unless_allowed(tmp_path, fake1k):
    src = raw(tmp_path, fake1k, "folder", "classes")
    for path in (src / "val").rglob("*.JPEG"):
        path.write_bytes(b"<html>404 Not Found</html>")  # a download that saved error pages
    with pytest.raises(ConvertError, match=r"split 'validation': all 12 samples were quarantined \(e\.g\. n\d+/"
                                           r"ILSVRC2012_val_\d+\.JPEG: not an image.*--allow-empty-splits"):
        run(src, tmp_path / "out")
    assert_not_complete(tmp_path / "out")
    manifest = run(src, tmp_path / "out", allow_empty_splits=True)  # resumes, writes train only
    assert manifest["splits"]["validation"] == {"samples_in": 12, "written": 0, "quarantined": 12, "shards": 0}
    assert_accounted(tmp_path / "out", manifest, counts(fake1k))


# --- 16. Hugging Face datasets ------------------------------------------------------------------

@pytest.mark.parametrize("num_shards", [{"train": 1, "validation": 1}, {"train": 3, "validation": 2}])
def test_hf_datasets_loads_the_output_folder(tmp_path, fake1k, monkeypatch, num_shards):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    import datasets

    src = raw(tmp_path, fake1k)
    out = tmp_path / "out"
    manifest = convert("imagenet1k", src, out, workers=1, num_shards=num_shards, progress=False, log=quiet)
    loaded = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))
    written = samples_of(out, manifest)
    assert set(loaded) == {"train", "validation"}
    for split in ("train", "validation"):
        rows = loaded[split]
        assert rows.num_rows == manifest["splits"][split]["written"]
        for row in rows:
            sample = written[row["__key__"]]
            assert row["cls"] == sample["json"]["label"] == row["json"]["label"]
            assert row["json"]["hygiene"] == sample["json"]["hygiene"]
            assert row["jpg"].size == (sample["json"]["width"], sample["json"]["height"])
        if split == "validation":
            assert all(isinstance(r["real_labels"], list) for r in rows["json"])
    train_hygiene = [r["hygiene"] for r in loaded["train"]["json"]]
    assert ["cmyk_to_rgb", "reencoded:q95"] in train_hygiene and [] in train_hygiene


def test_hf_datasets_loads_imagenet_c_with_its_split_names_made_hf_safe(tmp_path, monkeypatch):
    from imagenet_pipe.fakes.imagenet_c import make_imagenet_c

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    import datasets

    make_imagenet_c(tmp_path / "raw", corruptions=("defocus_blur",), val_images=2, style="small")
    manifest = run(tmp_path / "raw", tmp_path / "out", "imagenet-c", splits=["defocus_blur-*"])
    loaded = datasets.load_dataset(str(tmp_path / "out"), cache_dir=str(tmp_path / "hf-cache"))
    assert {s: loaded[s].num_rows for s in loaded} == {f"defocus_blur_{n}": 2 for n in range(1, 6)}
    assert {r["json"]["severity"] for s in loaded for r in loaded[s]} == {1, 2, 3, 4, 5}
    assert "`defocus_blur-3` as `defocus_blur_3`" in (tmp_path / "out" / "README.md").read_text()
    assert manifest["sample_fields"]["corruption"] == "string"


def test_every_manifest_field_verify_needs_is_written(shards1k):
    """The dataset card and the manifest fields the checks above rely on exist in a real conversion."""
    manifest = json.loads((shards1k / "manifest.json").read_text())
    assert manifest["warnings"] == [] and manifest["source_files"]
    assert manifest["sample_fields"]["hygiene"] == "list[string]"
    assert manifest["sample_fields"]["real_labels"] == "list[int64]"
    card = (shards1k / "README.md").read_text()
    assert card.startswith("---\n") and "data_files:" in card and "num_examples: 47" in card
    with tarfile.open(shards1k / manifest["shards"][0]["name"]) as tar:
        assert all(len(m.name) < 100 for m in tar.getmembers())
