"""ImageNet-21K Winter 2021: ``winter21_whole.tar.gz`` -> ``winter21_whole/<wnid>.tar`` (19,167 classes).

The gzip stream cannot be read at random, so it is decompressed once, as a stream, into a spool
tar in the work folder (``Containers.open_tar``; never extracted into files) and then read by
offset like fall11. Labels default to the fall11 list, so the two releases share one label space;
classes outside the chosen list are ignored per class (:mod:`.imagenet21k_common`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .archive import Containers
from .base import Entry, SourceError
from .imagenet21k_common import ImageNet21kSource

ARCHIVES = ("winter21_whole.tar.gz", "winter21_whole.tar")  # as downloaded, or already gunzipped


class ImageNet21kWinter21(ImageNet21kSource):
    layout = "winter21"
    description = f"{ARCHIVES[0]} (gzip; winter21_whole/<wnid>.tar inside, each <wnid>_<n>.JPEG)"

    @classmethod
    def detect(cls, root: Path) -> bool:
        return any((root / name).is_file() for name in ARCHIVES)

    def scan(self, splits: list[str], containers: Containers) -> Iterator[Entry]:
        path = next((self.root / n for n in ARCHIVES if (self.root / n).is_file()), None)
        if path is None:
            raise SourceError(f"{self.root} has neither {' nor '.join(ARCHIVES)}")
        yield from self.scan_class_tars(path, splits, containers)
