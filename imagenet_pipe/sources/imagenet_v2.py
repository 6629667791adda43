"""ImageNet-V2 (modestyachts/ImageNetV2): three test sets of 10,000 images, one split each.

| split               | archive                              | top folder                                 |
|---------------------|--------------------------------------|--------------------------------------------|
| `matched_frequency` | imagenetv2-matched-frequency.tar.gz  | imagenetv2-matched-frequency-format-val/   |
| `threshold_0_7`     | imagenetv2-threshold0.7.tar.gz       | imagenetv2-threshold0.7-format-val/        |
| `top_images`        | imagenetv2-top-images.tar.gz         | imagenetv2-top-images-format-val/          |

The three sets are splits of one dataset (convert one with ``--splits matched_frequency``); split
names avoid dots because DALI cuts ``.idx`` names at the first dot. The ``.tar.gz`` files may be
plain tars under that name: compression is detected from the bytes (plain: read by offset; gzip:
spooled). An extracted top folder is accepted too.

Label = ``int(<class folder>)``: the folders ``0..999`` already are sorted-wnid indices; never
sort them as strings (``ImageFolder`` would give folder ``10`` label 2). The transitional release
with wnid folders is also read (label = sorted index of the wnid). Key = ``<wnid>_<file stem>``
(the file name is a 40-hex sha1, or ``0..9`` in old releases, so the wnid keeps it unique).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .archive import Containers
from .base import WNID, Entry, Source, SourceError, class_file, class_key, is_image_name, walk
from .imagenet1k_labels import TABLE

VARIANTS = {  # split -> (archive, top folder)
    "matched_frequency": ("imagenetv2-matched-frequency.tar.gz", "imagenetv2-matched-frequency-format-val"),
    "threshold_0_7": ("imagenetv2-threshold0.7.tar.gz", "imagenetv2-threshold0.7-format-val"),
    "top_images": ("imagenetv2-top-images.tar.gz", "imagenetv2-top-images-format-val"),
}


class ImageNetV2(Source):
    dataset = "imagenet-v2"
    layout = "official"
    splits = tuple(VARIANTS)
    description = ("any of " + ", ".join(a for a, _ in VARIANTS.values()) +
                   " (<top>-format-val/<class index>/<sha1>.jpeg; gzip or plain tar), or their extracted top folders")

    @classmethod
    def detect(cls, root: Path) -> bool:
        return any(p.exists() for p in cls._candidates(root))

    @staticmethod
    def _candidates(root: Path) -> list[Path]:
        return [root / name for archive, top in VARIANTS.values() for name in (archive, top)]

    def scan(self, splits: list[str], containers: Containers) -> Iterator[Entry]:
        paths = {}
        for split in splits:  # locate every set before reading any
            archive, top = VARIANTS[split]
            paths[split] = next((p for p in (self.root / archive, self.root / top) if p.exists()), None)
            if paths[split] is None:
                have = [s for s, (a, t) in VARIANTS.items() if (self.root / a).exists() or (self.root / t).exists()]
                raise SourceError(f"split {split!r} needs {archive} (or its folder {top}/) in {self.root}; "
                                  f"convert only the sets you have: --splits {','.join(have) or '<set>'}")
        for split, path in paths.items():
            top = VARIANTS[split][1]
            for ref in walk(self, containers, path):
                found = class_file(ref.path, top)
                where = f"{path.name}/{ref.path}"
                if found is None or not is_image_name(found[1]):
                    self.ignore(where, "not an image in <top>/<class index>/")
                    continue
                folder, name = found
                wnid, label = _class(folder, where)
                yield ref.entry(split, class_key(wnid, name), f"{folder}/{name}", label)


def _class(folder: str, where: str) -> tuple[str, int]:
    """(wnid, label) of a class folder: a sorted index 0..999 (numerically!) or a wnid."""
    if folder.isdigit():
        label = int(folder)
        if label < len(TABLE):
            return TABLE.wnids[label], label
    elif WNID.match(folder) and folder in TABLE.index:
        return folder, TABLE.label(folder)
    raise SourceError(f"{where}: class folder {folder!r} is neither an index 0..999 nor an ImageNet-1K wnid")
