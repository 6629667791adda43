"""ImageNet-21K Fall 2011 (timm "22k"): ``fall11_whole.tar``, a tar of 21,841 ``<wnid>.tar`` tars.

Each inner tar holds ``<wnid>_<n>.JPEG`` (some of them PNG/GIF/CMYK data, fixed by hygiene).
Uncompressed, 1.31 TB: samples are read by byte offset, nothing is extracted or copied. Labels,
class lists and the held-out validation split: :mod:`.imagenet21k_common`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .archive import Containers
from .base import Entry, SourceError
from .imagenet21k_common import ImageNet21kSource

ARCHIVE = "fall11_whole.tar"


class ImageNet21kFall11(ImageNet21kSource):
    layout = "fall11"
    description = f"{ARCHIVE} (21,841 <wnid>.tar inside, each <wnid>_<n>.JPEG)"

    @classmethod
    def detect(cls, root: Path) -> bool:
        return (root / ARCHIVE).is_file()

    def scan(self, splits: list[str], containers: Containers) -> Iterator[Entry]:
        path = self.root / ARCHIVE
        if not path.is_file():
            raise SourceError(f"{path} does not exist")
        yield from self.scan_class_tars(path, splits, containers)
