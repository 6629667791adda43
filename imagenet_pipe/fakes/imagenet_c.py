"""A small ImageNet-C (``docs/raw-layouts.md`` section 5): some of the five corruption-group archives.

Members ``<corruption>/<severity>/<wnid>/ILSVRC2012_val_XXXXXXXX.JPEG``: validation images after
Resize(256) + CenterCrop(224), corrupted with a strength growing with the severity, saved by PIL as
JPEG quality 85, optimize=True. Defaults: ``gaussian_noise`` and ``shot_noise`` in ``noise.tar``
(plain tar) and ``defocus_blur`` in ``blur.tar``, which is gzip-compressed under its ``.tar`` name.
The validation images include val 1..4 with their real classes (labels 65, 970, 230, 809), so
their ImageNet-ReaL labels are the real ones (val 1 has none); with ``style="objects"`` every
image is labelled with its photo's class instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from ..classes import devkit_ids, real_labels, wnid_list
from ..sources.imagenet_c import ARCHIVES, SEVERITIES, split_name
from .common import FakeSample, shuffled, with_dirs, write_expected, write_tar_file
from .images import ImageFactory, jpeg_bytes

VAL_FIRST_IDS = {1: 490, 2: 361, 3: 171, 4: 822}  # real ILSVRC2012_IDs of val 1..4
DEFAULT_CORRUPTIONS = ("gaussian_noise", "shot_noise", "defocus_blur")
COMPRESSED = ("blur.tar",)  # gzip data under a .tar name


@dataclass
class FakeImageNetC:
    samples: list[FakeSample]
    archives: dict[str, list[tuple[str, bytes]]]


def corrupt(img: Image.Image, corruption: str, severity: int, rng: np.random.Generator) -> Image.Image:
    """A stand-in for hendrycks' corruption functions: blur or noise growing with the severity."""
    if corruption.endswith("blur"):
        return img.filter(ImageFilter.GaussianBlur(0.8 * severity))
    x = np.asarray(img, dtype=np.float32)
    if corruption == "shot_noise":
        x = rng.poisson(np.maximum(x, 0) / (8 * severity)) * (8 * severity)
    else:
        x = x + rng.normal(0, 8 * severity, x.shape)
    return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))


def _val_224(img: Image.Image) -> Image.Image:
    """torchvision Resize(256) + CenterCrop(224)."""
    scale = 256 / min(img.size)
    img = img.resize((max(256, round(img.width * scale)), max(256, round(img.height * scale))), Image.BILINEAR)
    left, top = (img.width - 224) // 2, (img.height - 224) // 2
    return img.crop((left, top, left + 224, top + 224))


def make_imagenet_c(root: Path, *, corruptions: tuple[str, ...] = DEFAULT_CORRUPTIONS, val_images: int = 4,
                    style: str = "photo", seed: int = 0) -> FakeImageNetC:
    """Write the archives holding ``corruptions`` into ``root`` and return what they hold."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    factory = ImageFactory(seed, style)
    table = wnid_list("imagenet1k")
    numbers = sorted({*list(VAL_FIRST_IDS)[:val_images],
                      *(int(n) for n in rng.choice(np.arange(5, 50001), max(0, val_images - 4), replace=False))})
    classes = {n: devkit_ids()[VAL_FIRST_IDS[n]] if n in VAL_FIRST_IDS else table[int(rng.integers(1000))]
               for n in numbers}
    base = {}
    for n in numbers:
        base[n] = _val_224(factory.image())
        if style == "objects":  # the label follows the photo's subject (see ImageFactory)
            classes[n] = factory.last_wnid
    samples: list[FakeSample] = []
    archives: dict[str, list[tuple[str, bytes]]] = {}
    for archive, group in ARCHIVES.items():
        files = []
        for corruption in (c for c in group if c in corruptions):
            for severity in SEVERITIES:
                split = split_name(corruption, severity)
                for n in numbers:
                    wnid, name = classes[n], f"ILSVRC2012_val_{n:08d}.JPEG"
                    data = jpeg_bytes(corrupt(base[n], corruption, severity, rng), quality=85, optimize=True)
                    files.append((f"{corruption}/{severity}/{wnid}/{name}", data))
                    extra = {"corruption": corruption, "severity": severity,
                             "real_labels": sorted(real_labels()[n - 1])}
                    samples.append(FakeSample(split, f"{split}-{name[:-5]}", table.index(wnid), name, wnid,
                                              extra=extra))
        if files:
            archives[archive] = with_dirs(shuffled(rng, files))
            write_tar_file(root / archive, archives[archive], compress=archive in COMPRESSED)
    write_expected(root, "imagenet-c", "official", samples)
    return FakeImageNetC(samples, archives)


def scaled_fake(out: Path, *, layout: str | None = None, style: str = "photo", seed: int = 0,
                scale: float = 1.0) -> list[FakeSample]:
    """``imagenet-pipe fake imagenet-c``: 6 validation images (times ``scale``) under every default
    corruption and severity; one layout, so ``layout`` is not used."""
    return make_imagenet_c(out, val_images=max(4, round(6 * scale)), style=style, seed=seed).samples
