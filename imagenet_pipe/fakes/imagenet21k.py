"""A small ImageNet-21K in each of its raw layouts (``docs/raw-layouts.md`` section 3).

* ``fall11``: ``fall11_whole.tar``, a tar of ``<wnid>.tar`` (no folder prefix), each holding
  ``<wnid>_<n>.JPEG`` with unpadded, non-consecutive numbers, in shuffled member order;
* ``winter21``: ``winter21_whole.tar.gz`` (gzip) -> ``winter21_whole/`` + ``winter21_whole/<wnid>.tar``;
* ``21k-p``: ``imagenet21k_resized/{imagenet21k_train,imagenet21k_val,imagenet21k_small_classes}/<wnid>/``
  with 224x224 images (squished like MIIL's ``resize.py``; an image smaller than 224 is copied
  unchanged), the first files of each class in ``ls`` order moved to ``imagenet21k_val``, a class
  with few images under ``imagenet21k_small_classes``; as a folder, or (variant ``archive``) as
  ``imagenet21k_resized.tar.gz``.

Classes are real wnids: an ImageNet-1K class, classes outside IN-1K (in the 21K-P lists), and for
fall11/winter21 one class outside the 21K-P lists. Quirks: PNG data named ``.JPEG`` (a non-JPEG
file), a CMYK, a grayscale and a truncated (undecodable) JPEG; 21K-P also a ``.PNG``. Labels in the
expectations are those of the reader's default class list (fall11 list; winter21 21K-P list).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..classes import wnid_list
from .common import FakeSample, pick, shuffled, tar_bytes, with_dirs, write_expected, write_files, write_tar_file
from .images import ImageFactory, jpeg_bytes

LAYOUTS = ("fall11", "winter21", "21k-p")
QUIRKS = ("png", "cmyk", "grayscale", "truncated")
P_SIZE = 224


@dataclass
class FakeImageNet21k:
    samples: list[FakeSample]
    data: dict[str, bytes]  # "<wnid>/<name>" -> bytes
    class_list: str  # the list the expected labels index into

    def by_class(self) -> dict[str, list[FakeSample]]:
        out: dict[str, list[FakeSample]] = {}
        for s in self.samples:
            out.setdefault(s.wnid, []).append(s)
        return out


def _classes(rng: np.random.Generator, num_classes: int, with_outside_p: bool) -> list[str]:
    """An IN-1K class, non-IN-1K classes of the winter21 21K-P list, and optionally one fall11
    class in neither 21K-P list (all are fall11 classes)."""
    in1k = set(wnid_list("imagenet1k"))
    p_w21 = wnid_list("imagenet21k_p_winter21")
    fall11 = wnid_list("imagenet21k")
    chosen = pick(rng, [w for w in p_w21 if w in in1k], 1)
    chosen += pick(rng, p_w21, max(1, num_classes - 1 - with_outside_p), exclude=in1k | set(chosen))
    if with_outside_p:
        chosen += pick(rng, fall11, 1, exclude=set(wnid_list("imagenet21k_p")) | in1k)
    return sorted(chosen)


def plan(num_classes: int = 5, max_per_class: int = 8, style: str = "photo", seed: int = 0,
         quirks: bool = True) -> FakeImageNet21k:
    """fall11/winter21 content: heavily skewed per-class counts, as in the real release."""
    rng = np.random.default_rng(seed)
    table = wnid_list("imagenet21k")
    factory = ImageFactory(seed, style)
    wnids = _classes(rng, num_classes, with_outside_p=True)
    counts = [max(1, int(max_per_class / (1 + i))) for i in range(len(wnids))]  # 8, 4, 2, 2, 1, ...
    counts = [counts[i] for i in rng.permutation(len(counts))]
    pending = list(QUIRKS) if quirks else []
    samples, data = [], {}
    for wnid, count in zip(wnids, counts, strict=True):
        numbers = sorted(int(n) for n in rng.choice(np.arange(1, 30000), count, replace=False))
        for n in numbers:
            name = f"{wnid}_{n}.JPEG"
            # quirks go to classes with several images, so each class keeps a clean one
            quirk = pending.pop(0) if pending and count > 1 and n != numbers[0] else None
            data[f"{wnid}/{name}"] = factory.quirk(quirk) if quirk else factory.jpeg()
            samples.append(FakeSample("train", name.split(".")[0], table.index(wnid), name, wnid, quirk,
                                      quirk == "truncated"))
    return FakeImageNet21k(samples, data, "imagenet21k")


def class_tars(fake: FakeImageNet21k, seed: int, prefix: str = "") -> list[tuple[str, bytes]]:
    """``<prefix><wnid>.tar`` members, each a tar of its class's files in shuffled order."""
    rng = np.random.default_rng(seed)
    members = []
    for wnid, samples in sorted(fake.by_class().items()):
        files = [(s.filename, fake.data[f"{wnid}/{s.filename}"]) for s in samples]
        members.append((f"{prefix}{wnid}.tar", tar_bytes(shuffled(rng, files))))
    return shuffled(rng, members)  # outer order is not sorted either


def write_fall11(root: Path, fake: FakeImageNet21k, seed: int = 0) -> None:
    write_tar_file(root / "fall11_whole.tar", class_tars(fake, seed))


def write_winter21(root: Path, fake: FakeImageNet21k, seed: int = 0) -> None:
    members = [("winter21_whole/", b""), *class_tars(fake, seed, "winter21_whole/")]
    write_tar_file(root / "winter21_whole.tar.gz", members, compress=True)


# --- ImageNet-21K-P ---------------------------------------------------------------------------

def plan_p(num_classes: int = 4, per_class: int = 5, val_per_class: int = 2, style: str = "photo",
           seed: int = 0, quirks: bool = True) -> FakeImageNet21k:
    """21K-P content: classes of the winter21 21K-P list (the official download) + a small class."""
    rng = np.random.default_rng(seed)
    table = wnid_list("imagenet21k_p_winter21")
    factory = ImageFactory(seed, style)
    wnids = _classes(rng, num_classes, with_outside_p=False)
    small = pick(rng, wnid_list("imagenet21k"), 1, exclude=set(wnid_list("imagenet21k_p")))[0]
    pending = ["png", "grayscale"] if quirks else []
    samples, data = [], {}
    for wnid in [*wnids, small]:
        numbers = sorted(int(n) for n in rng.choice(np.arange(1, 30000), per_class, replace=False))
        names = sorted(f"{wnid}_{n}.JPEG" for n in numbers)  # `ls` order: MIIL moved the first ones to val
        for i, name in enumerate(names):
            quirk = pending.pop(0) if pending and wnid != small and i == len(names) - 1 else None
            if quirk == "png":
                name = name.replace(".JPEG", ".PNG")  # MIIL's validator counts .PNG files too
            img = factory.image()
            if not (wnid == small and i == 0):  # one image under 224 px is copied unchanged
                img = img.resize((P_SIZE, P_SIZE), Image.BILINEAR)
            data[f"{wnid}/{name}"] = _encode(img, quirk)
            if wnid == small:
                split, sub = "ignored", "imagenet21k_small_classes"
            else:
                split, sub = ("validation", "imagenet21k_val") if i < val_per_class else ("train", "imagenet21k_train")
            label = table.index(wnid) if wnid in table else -1
            samples.append(FakeSample(split, name.split(".")[0], label, name, wnid, quirk, extra={"subdir": sub}))
    return FakeImageNet21k(samples, data, "imagenet21k_p_winter21")


def _encode(img: Image.Image, quirk: str | None) -> bytes:
    if quirk == "png":
        buf = io.BytesIO()
        img.save(buf, "PNG")
        return buf.getvalue()
    if quirk == "grayscale":
        return jpeg_bytes(img.convert("L"), quality=90)
    return jpeg_bytes(img, quality=90)


def p_members(fake: FakeImageNet21k) -> list[tuple[str, bytes]]:
    return with_dirs([(f"imagenet21k_resized/{s.extra['subdir']}/{s.wnid}/{s.filename}",
                       fake.data[f"{s.wnid}/{s.filename}"]) for s in fake.samples])


def write_p(root: Path, fake: FakeImageNet21k, variant: str = "folder") -> None:
    members = p_members(fake)
    if variant == "folder":
        write_files(root, [(n, d) for n, d in members if not n.endswith("/")])
    elif variant == "archive":
        write_tar_file(root / "imagenet21k_resized.tar.gz", members, compress=True)
    else:
        raise ValueError(f"unknown 21k-p variant {variant!r}; choose folder or archive")


def make_imagenet21k(root: Path, layout: str = "fall11", *, num_classes: int = 5, max_per_class: int = 8,
                     style: str = "photo", seed: int = 0, order_seed: int | None = None, variant: str | None = None,
                     fake: FakeImageNet21k | None = None) -> FakeImageNet21k:
    """Write a fake ImageNet-21K download into ``root``. ``order_seed`` shuffles archive members
    differently without changing the content (for order-independence tests)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    order = seed if order_seed is None else order_seed
    if layout in ("fall11", "winter21"):
        fake = fake or plan(num_classes, max_per_class, style, seed)
        (write_fall11 if layout == "fall11" else write_winter21)(root, fake, order)
    elif layout == "21k-p":
        fake = fake or plan_p(max(2, num_classes - 1), max(3, max_per_class // 2 + 1), 2, style, seed)
        write_p(root, fake, variant or "folder")
    else:
        raise ValueError(f"unknown layout {layout!r}; choose from {LAYOUTS}")
    write_expected(root, "imagenet21k", layout, fake.samples, class_list=fake.class_list, variant=variant)
    return fake


def scaled_fake(out: Path, *, layout: str | None = None, style: str = "photo", seed: int = 0,
                scale: float = 1.0) -> list[FakeSample]:
    """``imagenet-pipe fake imagenet21k``: 5 classes of up to 8 images (times ``scale``) in
    ``layout`` (default ``fall11``)."""
    return make_imagenet21k(out, layout or "fall11", num_classes=max(5, round(5 * scale)),
                            max_per_class=max(8, round(8 * scale)), style=style, seed=seed).samples
