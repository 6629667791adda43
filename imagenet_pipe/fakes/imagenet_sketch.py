"""A small ImageNet-Sketch (``docs/raw-layouts.md`` section 8): ``ImageNet-Sketch.zip``.

``sketch/<wnid>/sketch_<n>.JPEG`` (with the zip's folder entries), dark strokes on white. The
first class has more images than the others (the real set tops up classes to >= 50 and some have
more). Quirks: a grayscale (mode ``L``) JPEG, an entirely black image (expected ``all_black``), and
PNG bytes behind a ``.JPEG`` name.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from ..classes import ClassTable
from .common import FakeSample, pick, shuffled, with_dirs, write_expected, write_zip
from .images import ImageFactory, jpeg_bytes

QUIRKS = ("grayscale", "black", "png")


@dataclass
class FakeSketch:
    samples: list[FakeSample]
    members: list[tuple[str, bytes]]


def sketch_image(factory: ImageFactory) -> Image.Image:
    """Dark edges of a synthetic photo on white, as an RGB image (most real sketches are RGB)."""
    edges = factory.image().convert("L").filter(ImageFilter.FIND_EDGES)
    return ImageOps.invert(ImageOps.autocontrast(edges)).convert("RGB")


def _encode(img: Image.Image, quirk: str | None) -> bytes:
    if quirk == "grayscale":
        return jpeg_bytes(img.convert("L"), quality=90)
    if quirk == "black":
        return jpeg_bytes(Image.new("RGB", img.size), quality=90)
    if quirk == "png":
        buf = io.BytesIO()
        img.convert("P").save(buf, "PNG")
        return buf.getvalue()
    return jpeg_bytes(img, quality=90)


def make_imagenet_sketch(root: Path, *, num_classes: int = 4, per_class: int = 3, large_class: int = 7,
                         style: str = "photo", seed: int = 0) -> FakeSketch:
    """Write ``ImageNet-Sketch.zip`` into ``root`` and return what it holds."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    factory = ImageFactory(seed, "small" if style == "small" else "photo")
    table = ClassTable.load("imagenet1k")
    pending = list(QUIRKS)
    samples, files = [], []
    for c, wnid in enumerate(pick(rng, table.wnids, num_classes)):
        for n in range(large_class if c == 0 else per_class):
            quirk = pending.pop(0) if pending and n == 1 else None
            name = f"sketch_{n}.JPEG"
            files.append((f"sketch/{wnid}/{name}", _encode(sketch_image(factory), quirk)))
            samples.append(FakeSample("validation", f"{wnid}_sketch_{n}", table.label(wnid), name, wnid, quirk,
                                      extra={"all_black": quirk == "black"}))
    members = with_dirs(shuffled(rng, files))
    write_zip(root / "ImageNet-Sketch.zip", members)
    write_expected(root, "imagenet-sketch", "official", samples)
    return FakeSketch(samples, members)


def scaled_fake(out: Path, *, layout: str | None = None, style: str = "photo", seed: int = 0,
                scale: float = 1.0) -> list[FakeSample]:
    """``imagenet-pipe fake imagenet-sketch``: 6 classes of 3 sketches, one of 7 (times ``scale``);
    one layout, so ``layout`` is not used."""
    n = max(1, round(scale))
    return make_imagenet_sketch(out, num_classes=max(4, round(6 * scale)), per_class=3 * n,
                                large_class=7 * n, style=style, seed=seed).samples
