"""ImageNet-Sketch (HaohanWang/ImageNet-Sketch): ``ImageNet-Sketch.zip`` -> ``sketch/<wnid>/<file>.JPEG``.

All images are converted (50,889 in TFDS's count, not capped at 50 per class); one split,
``validation``. Label = sorted index of the wnid folder; key = ``<wnid>_<stem>`` (``sketch_13``
repeats across classes). The zip is read member by member; an extracted ``sketch/`` folder works
too. Known bad files: grayscale/palette images and non-JPEG bytes behind ``.JPEG`` (re-encoded by
hygiene), and some entirely black images: the preset switches on the ``all_black`` image flag, so
every sample's json says ``"all_black": true|false`` and the manifest counts them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .archive import Containers
from .base import WNID, Entry, Source, SourceError, class_file, class_key, is_image_name, walk
from .imagenet1k_labels import TABLE

ZIP = "ImageNet-Sketch.zip"
TOP = "sketch"


class ImageNetSketch(Source):
    dataset = "imagenet-sketch"
    layout = "official"
    splits = ("validation",)
    description = f"{ZIP} ({TOP}/<wnid>/sketch_<n>.JPEG inside), or the extracted {TOP}/ folder"

    @classmethod
    def detect(cls, root: Path) -> bool:
        return (root / ZIP).is_file() or (root / TOP).is_dir()

    def scan(self, splits: list[str], containers: Containers) -> Iterator[Entry]:
        path = next((p for p in (self.root / ZIP, self.root / TOP) if p.exists()), None)
        if path is None:
            raise SourceError(f"{self.root} has neither {ZIP} nor {TOP}/")
        for ref in walk(self, containers, path):
            found = class_file(ref.path, TOP)
            where = f"{path.name}/{ref.path}"
            if found is None or not WNID.match(found[0]) or not is_image_name(found[1]):
                self.ignore(where, f"not an image in {TOP}/<wnid>/")
                continue
            wnid, name = found
            label = TABLE.index.get(wnid)
            if label is None:
                raise SourceError(f"{where}: {wnid} is not an ImageNet-1K class")
            if "validation" in splits:
                yield ref.entry("validation", class_key(wnid, name), f"{wnid}/{name}", label)
