"""A small ImageNet-1K in each of its real raw layouts (``docs/raw-layouts.md`` sections 1-2).

* ``official``: ``ILSVRC2012_img_train.tar`` (a tar of ``<wnid>.tar`` tars), ``ILSVRC2012_img_val.tar``
  (flat, members in shuffled order) and ``ILSVRC2012_devkit_t12.tar.gz`` with a structured
  ``data/meta.mat`` in devkit ID order and ``data/ILSVRC2012_validation_ground_truth.txt``;
* ``kaggle``: ``imagenet-object-localization-challenge.zip`` with the LOC_*.csv files and either a
  nested ``imagenet_object_localization_patched2019.tar.gz`` or ``ILSVRC/`` directly;
* ``folder``: extracted ``train/<wnid>/`` and ``val/<wnid>/`` (or a flat ``val/`` with valprep.sh).

Real wnids and the real quirks: val 1..4 carry the real ground-truth IDs 490, 361, 171, 822 (sorted
labels 65, 970, 230, 809); ``n01739381_1309.JPEG`` is CMYK, ``n02105855_2933.JPEG`` is an RGBA PNG,
``ILSVRC2012_val_00019877.JPEG`` is CMYK; plus a grayscale, an EXIF-rotated, a progressive and a
truncated (undecodable) JPEG. With ``style="objects"`` each validation image is a crop of a real
photo of an ImageNet class and is labelled with that class (val 1..4 included), so that a
pretrained model's accuracy means something.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..classes import ClassTable, devkit_ids, lemmas
from .common import FakeSample, shuffled, tar_bytes, write_expected, write_files, write_tar_file, write_zip
from .images import ImageFactory

LAYOUTS = ("official", "kaggle", "folder")
# sorted labels the spec's worked examples and bad-file list need
REQUIRED_LABELS = (59, 65, 230, 809, 970, 998)
VAL_GT_FIRST = {1: 490, 2: 361, 3: 171, 4: 822}  # real ILSVRC2012_IDs of val 1..4
CMYK_TRAIN = "n01739381_1309"
PNG_TRAIN = "n02105855_2933"
CMYK_VAL = 19877
NUM_VAL = 50_000


@dataclass
class FakeImageNet1k:
    """The content shared by all layouts: which files exist, their labels and their bytes."""

    samples: list[FakeSample]
    data: dict[tuple[str, str], bytes]  # (split, filename) -> bytes
    gt_ids: list[int]  # 50,000 ILSVRC2012_IDs, line i = val i+1
    train_counts: dict[str, int]

    def files(self, split: str) -> Iterator[FakeSample]:
        return (s for s in self.samples if s.split == split)


def plan(num_classes: int = 10, train_per_class: int = 8, val_images: int = 20, style: str = "photo",
         seed: int = 0, quirks: bool = True) -> FakeImageNet1k:
    """Decide the fake content. ``val_images`` >= 5 always include val 1..4 and 19877."""
    rng = np.random.default_rng(seed)
    table = ClassTable.load("imagenet1k")
    wnid_to_id = {w: i for i, w in devkit_ids().items()}
    others = [i for i in rng.permutation(1000) if i not in REQUIRED_LABELS]
    labels = sorted(REQUIRED_LABELS + tuple(int(i) for i in others[: max(0, num_classes - len(REQUIRED_LABELS))]))
    factory = ImageFactory(seed, style)
    samples: list[FakeSample] = []
    data: dict[tuple[str, str], bytes] = {}

    def add(split: str, key: str, label: int, filename: str, quirk: str | None = None,
            payload: bytes | None = None) -> None:
        if payload is None:
            payload = factory.quirk(quirk) if quirk else factory.jpeg()
        samples.append(FakeSample(split, key, label, filename, table.wnids[label], quirk, quirk == "truncated"))
        data[(split, filename)] = payload

    train_quirks = {CMYK_TRAIN: "cmyk", PNG_TRAIN: "png"}
    extra_quirks = ["grayscale", "exif_rotated", "truncated", "progressive"] if quirks else []
    train_counts = {}
    for label in labels:
        wnid = table.wnids[label]
        # image numbers are unpadded and not consecutive, as in the real tars
        numbers = sorted(int(n) for n in rng.choice(np.arange(1, 40000), train_per_class, replace=False))
        names = [f"{wnid}_{n}" for n in numbers]
        if quirks:
            names = [q for q in train_quirks if q.startswith(wnid)] + names
            names = names[:train_per_class]
        for name in names:
            quirk = train_quirks.get(name) if quirks else None
            if quirk is None and extra_quirks and name == names[-1]:
                quirk = extra_quirks.pop(0)
            add("train", name, label, f"{name}.JPEG", quirk)
        train_counts[wnid] = len(names)

    # validation: numbers 1..4 and 19877 are fixed by the spec, the rest random
    gt_ids = [int(x) for x in rng.integers(1, 1001, NUM_VAL)]
    chosen = [1, 2, 3, 4, CMYK_VAL] if quirks or val_images >= 5 else []
    rest = [int(n) for n in rng.permutation(np.arange(5, NUM_VAL + 1)) if n != CMYK_VAL]
    chosen += rest[: max(0, val_images - len(chosen))]
    for n in chosen:
        quirk = "cmyk" if (n == CMYK_VAL and quirks) else None
        payload = None
        if style == "objects" and quirk is None:
            # the label follows the photo's subject, so that a pretrained model can get it right
            payload = factory.jpeg()
            gt_ids[n - 1] = wnid_to_id[factory.last_wnid]
        elif n in VAL_GT_FIRST:
            gt_ids[n - 1] = VAL_GT_FIRST[n]
        elif n == CMYK_VAL:
            gt_ids[n - 1] = wnid_to_id[table.wnids[998]]
        else:
            gt_ids[n - 1] = wnid_to_id[table.wnids[labels[int(rng.integers(len(labels)))]]]
        label = table.label(devkit_ids()[gt_ids[n - 1]])
        key = f"ILSVRC2012_val_{n:08d}"
        add("validation", key, label, f"{key}.JPEG", quirk, payload)
    return FakeImageNet1k(samples, data, gt_ids, train_counts)


# --- devkit --------------------------------------------------------------------------------

def meta_mat_bytes(train_counts: dict[str, int]) -> bytes:
    """A ``meta.mat`` shaped like the real one: (n, 1) struct array, devkit ID order, 1000
    leaves then ancestors (1001 = entity is the root) with ``children`` lists."""
    import scipy.io

    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children",
              "wordnet_height", "num_train_images"]
    ids = devkit_ids()
    names = lemmas()
    rows = []
    for i in range(1, 1001):
        wnid = ids[i]
        rows.append((i, wnid, names.get(wnid, ""), f"gloss of {wnid}", 0, np.zeros(0, dtype=np.uint16),
                     0, train_counts.get(wnid, 1300)))
    # a trimmed hierarchy: entity -> {animal, artifact} -> leaves (IDs > 1000 are ancestors)
    animals = np.arange(1, 400, dtype=np.uint16)
    artifacts = np.arange(400, 1001, dtype=np.uint16)
    rows.append((1001, "n00001740", "entity", "that which is perceived", 2, np.array([1002, 1003], np.uint16), 19, 0))
    rows.append((1002, "n00015388", "animal, animate being, beast, brute, creature, fauna",
                 "a living organism", len(animals), animals, 15, 0))
    rows.append((1003, "n00021939", "artifact, artefact", "a man-made object", len(artifacts), artifacts, 17, 0))
    arr = np.zeros((len(rows), 1), dtype=[(f, object) for f in fields])
    for r, row in enumerate(rows):
        for f, value in zip(fields, row, strict=True):
            arr[r, 0][f] = value
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"synsets": arr})
    return buf.getvalue()


def devkit_members(fake: FakeImageNet1k) -> list[tuple[str, bytes]]:
    top = "ILSVRC2012_devkit_t12"
    gt = "".join(f"{i}\n" for i in fake.gt_ids).encode()
    return [
        (f"{top}/COPYING", b"Copyright ImageNet (fake)\n"),
        (f"{top}/readme.txt", b"ILSVRC2012 development kit (fake, generated by imagenet-pipe)\n"),
        (f"{top}/data/meta.mat", meta_mat_bytes(fake.train_counts)),
        (f"{top}/data/ILSVRC2012_validation_ground_truth.txt", gt),
        (f"{top}/evaluation/demo.val.pred.txt", b"1 2 3 4 5\n"),
    ]


# --- layouts -------------------------------------------------------------------------------

def write_official(root: Path, fake: FakeImageNet1k, seed: int = 0) -> None:
    rng = np.random.default_rng(seed + 1)
    by_wnid: dict[str, list[tuple[str, bytes]]] = {}
    for s in fake.files("train"):
        by_wnid.setdefault(s.wnid, []).append((s.filename, fake.data[("train", s.filename)]))
    inner = [(f"{w}.tar", tar_bytes(shuffled(rng, m))) for w, m in sorted(by_wnid.items())]
    write_tar_file(root / "ILSVRC2012_img_train.tar", inner)
    val = [(s.filename, fake.data[("validation", s.filename)]) for s in fake.files("validation")]
    write_tar_file(root / "ILSVRC2012_img_val.tar", shuffled(rng, val))  # tar order is not sorted
    write_tar_file(root / "ILSVRC2012_devkit_t12.tar.gz", devkit_members(fake), compress=True)


def kaggle_members(fake: FakeImageNet1k, seed: int = 0) -> tuple[list, list]:
    """(top-level csv/txt files, ILSVRC/ tree files) of the Kaggle download."""
    rng = np.random.default_rng(seed + 2)
    table = ClassTable.load("imagenet1k")
    names = lemmas()
    mapping = "".join(f"{w} {names.get(w, '')}\n" for w in table.wnids).encode()

    def boxes(wnid: str) -> str:
        return " ".join(f"{wnid} {int(rng.integers(0, 200))} {int(rng.integers(0, 200))} "
                        f"{int(rng.integers(200, 400))} {int(rng.integers(200, 400))}"
                        for _ in range(int(rng.integers(1, 4))))

    val = list(fake.files("validation"))
    val_rows = [f"{s.key},{boxes(s.wnid)} \n" for s in shuffled(rng, val)]  # unsorted, multi-box
    train = list(fake.files("train"))
    train_rows = [f"{s.key},{boxes(s.wnid)} \n" for s in train[::3]]  # only images with boxes
    top = [
        ("LOC_synset_mapping.txt", mapping),
        ("LOC_val_solution.csv", ("ImageId,PredictionString\n" + "".join(val_rows)).encode()),
        ("LOC_train_solution.csv", ("ImageId,PredictionString\n" + "".join(train_rows)).encode()),
        ("LOC_sample_submission.csv", b"ImageId,PredictionString\nILSVRC2012_test_00000001,n01440764 0 0 1 1\n"),
    ]
    base = "ILSVRC/Data/CLS-LOC"
    tree = [(f"{base}/train/{s.wnid}/{s.filename}", fake.data[("train", s.filename)]) for s in train]
    tree += [(f"{base}/val/{s.filename}", fake.data[("validation", s.filename)]) for s in val]
    factory = ImageFactory(seed + 3, "small")
    tree += [(f"{base}/test/ILSVRC2012_test_{i:08d}.JPEG", factory.jpeg()) for i in (1, 2, 3)]
    tree += [(f"ILSVRC/Annotations/CLS-LOC/train/{s.wnid}/{s.key}.xml", b"<annotation/>\n") for s in train[::3]]
    tree += [(f"ILSVRC/Annotations/CLS-LOC/val/{s.key}.xml", b"<annotation/>\n") for s in val]
    train_cls = "".join(f"{s.wnid}/{s.key} {i + 1}\n" for i, s in enumerate(train))  # running number
    tree += [("ILSVRC/ImageSets/CLS-LOC/train_cls.txt", train_cls.encode()),
             ("ILSVRC/ImageSets/CLS-LOC/val.txt", "".join(f"{s.key} {i + 1}\n" for i, s in enumerate(val)).encode())]
    return top, tree


def write_kaggle(root: Path, fake: FakeImageNet1k, seed: int = 0, variant: str = "nested") -> None:
    """``variant``: ``nested`` (zip holding the tar.gz), ``direct`` (zip holding ILSVRC/), or
    ``extracted`` (the zip already unpacked, tar.gz kept)."""
    top, tree = kaggle_members(fake, seed)
    nested = ("imagenet_object_localization_patched2019.tar.gz", _gzip(tar_bytes(tree)))
    if variant == "nested":
        write_zip(root / "imagenet-object-localization-challenge.zip", [*top, nested])
    elif variant == "direct":
        write_zip(root / "imagenet-object-localization-challenge.zip", top + tree)
    elif variant == "extracted":
        write_files(root, [*top, nested])
    else:
        raise ValueError(f"unknown kaggle variant {variant!r}")


def write_folder(root: Path, fake: FakeImageNet1k, val_layout: str = "classes") -> None:
    """``val_layout``: ``classes`` (after valprep.sh) or ``flat`` (with valprep.sh beside it)."""
    write_files(root, [(f"train/{s.wnid}/{s.filename}", fake.data[("train", s.filename)])
                       for s in fake.files("train")])
    val = list(fake.files("validation"))
    if val_layout == "classes":
        write_files(root, [(f"val/{s.wnid}/{s.filename}", fake.data[("validation", s.filename)]) for s in val])
    elif val_layout == "flat":
        write_files(root, [(f"val/{s.filename}", fake.data[("validation", s.filename)]) for s in val])
        table = ClassTable.load("imagenet1k")
        # valprep.sh: mkdir lines for all classes, then one mv per image; every line ends in a tab
        lines = [f"mkdir -p {w}\t\n" for w in table.wnids]
        lines += [f"mv {s.filename} {s.wnid}/\t\n" for s in sorted(val, key=lambda s: s.filename)]
        (root / "val" / "valprep.sh").write_text("".join(lines))
    else:
        raise ValueError(f"unknown val layout {val_layout!r}")


def _gzip(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data, compresslevel=1, mtime=0)


def make_imagenet1k(root: Path, layout: str = "official", *, num_classes: int = 10, train_per_class: int = 8,
                    val_images: int = 20, style: str = "photo", seed: int = 0, quirks: bool = True,
                    variant: str | None = None, fake: FakeImageNet1k | None = None) -> FakeImageNet1k:
    """Write a fake ImageNet-1K download into ``root`` and return what it contains."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    fake = fake or plan(num_classes, train_per_class, val_images, style, seed, quirks)
    if layout == "official":
        write_official(root, fake, seed)
    elif layout == "kaggle":
        write_kaggle(root, fake, seed, variant or "nested")
    elif layout == "folder":
        write_folder(root, fake, variant or "classes")
    else:
        raise ValueError(f"unknown layout {layout!r}; choose from {LAYOUTS}")
    write_expected(root, "imagenet1k", layout, fake.samples, variant=variant)
    return fake


def scaled_fake(out: Path, *, layout: str | None = None, style: str = "photo", seed: int = 0,
                scale: float = 1.0) -> list[FakeSample]:
    """``imagenet-pipe fake imagenet1k``: 10 classes of 20 train images and 50 validation images
    (times ``scale``) in ``layout`` (default ``official``)."""
    fake = make_imagenet1k(out, layout or "official", num_classes=max(6, round(10 * scale)),
                           train_per_class=max(2, round(20 * scale)), val_images=max(5, round(50 * scale)),
                           style=style, seed=seed)
    return fake.samples
