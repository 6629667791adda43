"""Small ImageNet-R and ImageNet-A downloads (``docs/raw-layouts.md`` sections 6-7), one writer.

``imagenet-r.tar`` -> ``imagenet-r/`` + ``imagenet-r/<wnid>/`` folders, ``art_0.jpg``,
``cartoon_12.jpg``, ... (rendition type + number; names repeat across classes) and
``imagenet-r/README.txt``; ``imagenet-a.tar`` -> the same shape with names such as
``0.000116_digital clock _ digital clock_0.865662.jpg`` (spaces, several dots). README: a few
header lines, then ``<wnid> <name>`` for all 200 classes. A also has a grayscale JPEG.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..classes import ClassTable, lemmas, wnid_list
from .common import FakeSample, pick, shuffled, with_dirs, write_expected, write_tar_file
from .images import ImageFactory

RENDITIONS = ("art", "cartoon", "deviantart", "embroidery", "graffiti", "origami", "painting", "sketch", "toy")
SUBSETS = {"imagenet-r": ("imagenet_r", "imagenet-r"), "imagenet-a": ("imagenet_a", "imagenet-a")}


@dataclass
class FakeRenditions:
    samples: list[FakeSample]
    members: list[tuple[str, bytes]]


def readme(dataset: str, subset: str) -> bytes:
    count = {"imagenet-r": "30,000", "imagenet-a": "7,500"}[dataset]
    head = (f"{dataset.upper()}\n\nThis dataset contains {count} images.\n\n@article{{hendrycks,\n"
            "  title={...},\n}\n\nThere are 200 classes we consider. The WordNet ID and a description of each "
            "class is as follows.\n\n")
    names = lemmas()
    return (head + "".join(f"{w} {names.get(w, '').split(',')[0]}\n" for w in wnid_list(subset))).encode()


def _short(wnid: str) -> str:
    return lemmas().get(wnid, wnid).split(",")[0]


def file_names(dataset: str, wnid: str, count: int, rng: np.random.Generator) -> list[str]:
    if dataset == "imagenet-r":
        return sorted({f"{RENDITIONS[int(rng.integers(len(RENDITIONS)))]}_{int(rng.integers(0, 40))}.jpg"
                       for _ in range(count * 3)})[:count]
    # ImageNet-A: <confidence>_<predicted name> _ <true name>_<probability>.jpg
    others = wnid_list("imagenet1k")
    return sorted({f"{rng.uniform(0, 0.01):.6f}_{_short(others[int(rng.integers(1000))])} _ {_short(wnid)}_"
                   f"{rng.uniform(0.5, 1):.8f}.jpg" for _ in range(count)})


def make_renditions(root: Path, dataset: str = "imagenet-r", *, num_classes: int = 4, per_class: int = 3,
                    style: str = "photo", seed: int = 0) -> FakeRenditions:
    """Write ``imagenet-r.tar`` or ``imagenet-a.tar`` into ``root`` and return what it holds."""
    subset, top = SUBSETS[dataset]
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    factory = ImageFactory(seed, style)
    table, sub_table = ClassTable.load("imagenet1k"), ClassTable.load(subset)
    samples, files = [], []
    for c, wnid in enumerate(pick(rng, wnid_list(subset), num_classes)):
        names = file_names(dataset, wnid, per_class + (c == 0), rng)  # class sizes differ
        for i, name in enumerate(names):
            quirk = "grayscale" if dataset == "imagenet-a" and c == 0 and i == 0 else None
            files.append((f"{top}/{wnid}/{name}", factory.quirk(quirk) if quirk else factory.jpeg()))
            key = f"{wnid}_{i:04d}" if dataset == "imagenet-a" else f"{wnid}_{name.rsplit('.', 1)[0]}"
            samples.append(FakeSample("validation", key, table.label(wnid), name, wnid, quirk,
                                      extra={"label_200": sub_table.label(wnid)}))
    members = with_dirs([(f"{top}/README.txt", readme(dataset, subset)), *shuffled(rng, files)])
    write_tar_file(root / f"{top}.tar", members)
    write_expected(root, dataset, "official", samples)
    return FakeRenditions(samples, members)


def scaled_fake(dataset: str, out: Path, *, layout: str | None = None, style: str = "photo", seed: int = 0,
                scale: float = 1.0) -> list[FakeSample]:
    """``imagenet-pipe fake imagenet-r`` / ``imagenet-a``: 6 classes of 3 images (times ``scale``);
    one layout, so ``layout`` is not used."""
    n = max(1, round(scale))
    return make_renditions(out, dataset, num_classes=max(3, round(6 * scale)), per_class=3 * n, style=style,
                           seed=seed).samples
