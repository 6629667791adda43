"""A small ImageNet-V2 (``docs/raw-layouts.md`` section 4): the three ``imagenetv2-*.tar.gz`` archives.

Each holds ``imagenetv2-<set>-format-val/<class index>/<sha1 of the bytes>.jpeg`` (lowercase
``.jpeg``, folders unpadded). Folders ``0, 1, 2, 10, 100, 999`` are always present so that string
sorting (folder ``10`` -> label 2) would be caught. ``matched-frequency`` and ``top-images`` are
real gzip files; ``threshold0.7`` is a plain tar under its ``.tar.gz`` name, as the real sizes
suggest. The sets share some images (the real ones overlap), so a key can occur in several splits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..classes import wnid_list
from ..sources.imagenet_v2 import VARIANTS
from .common import FakeSample, shuffled, with_dirs, write_expected, write_tar_file
from .images import ImageFactory

REQUIRED_FOLDERS = (0, 1, 2, 10, 100, 999)
GZIPPED = {"matched_frequency": True, "threshold_0_7": False, "top_images": True}


@dataclass
class FakeImageNetV2:
    samples: list[FakeSample]
    members: dict[str, list[tuple[str, bytes]]]  # split -> archive members


def make_imagenet_v2(root: Path, *, num_classes: int = 8, per_class: int = 2, style: str = "photo",
                     seed: int = 0, splits: tuple[str, ...] = tuple(VARIANTS)) -> FakeImageNetV2:
    """Write the fake archives of ``splits`` into ``root`` and return what they hold."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    factory = ImageFactory(seed, style)
    wnids = wnid_list("imagenet1k")
    others = [int(i) for i in rng.permutation(1000) if i not in REQUIRED_FOLDERS]
    folders = sorted([*REQUIRED_FOLDERS, *others[: max(0, num_classes - len(REQUIRED_FOLDERS))]])
    shared = {f: factory.jpeg() for f in folders}  # one image per class that every set contains
    samples: list[FakeSample] = []
    members: dict[str, list[tuple[str, bytes]]] = {}
    for split in splits:
        archive, top = VARIANTS[split]
        files = []
        for folder in folders:
            for data in [shared[folder], *(factory.jpeg() for _ in range(per_class - 1))]:
                name = f"{hashlib.sha1(data).hexdigest()}.jpeg"
                files.append((f"{top}/{folder}/{name}", data))
                samples.append(FakeSample(split, f"{wnids[folder]}_{name[:-5]}", folder, name, wnids[folder]))
        members[split] = with_dirs(shuffled(rng, files))
        write_tar_file(root / archive, members[split], compress=GZIPPED[split])
    write_expected(root, "imagenet-v2", "official", samples)
    return FakeImageNetV2(samples, members)


def scaled_fake(out: Path, *, layout: str | None = None, style: str = "photo", seed: int = 0,
                scale: float = 1.0) -> list[FakeSample]:
    """``imagenet-pipe fake imagenet-v2``: 10 classes of 2 images per set (times ``scale``); one
    layout, so ``layout`` is not used."""
    n = max(1, round(scale))
    return make_imagenet_v2(out, num_classes=max(6, round(10 * scale)), per_class=2 * n, style=style,
                            seed=seed).samples
