"""ImageNet-21K-P (Alibaba-MIIL, "imagenet21k_resized"): class folders resized to 224x224.

```
imagenet21k_resized/imagenet21k_train/<wnid>/<wnid>_<n>.JPEG          -> train
imagenet21k_resized/imagenet21k_val/<wnid>/<wnid>_<n>.JPEG            -> validation (50 per class)
imagenet21k_resized/imagenet21k_small_classes/<wnid>/...              -> train if in the class list
```
Accepted as the folder (``imagenet21k_resized/`` in the source folder, or the source folder
itself) or as the downloaded ``imagenet21k_resized.tar.gz`` (spooled, not extracted).

Labels follow MIIL's ``ImageFolder`` over ``imagenet21k_train`` = index in the sorted 21K-P list.
Unless ``class_list`` is given, the list is chosen from the download: the winter21 list (10,450
classes, the official image-net.org download) when every train/val class belongs to it, else the
fall11 list (11,221). The small classes (<= 500 images) are in neither list, so by default they are
ignored (one record per class); with a wider ``class_list`` (e.g. ``imagenet21k``) they join train.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from ..classes import wnid_list
from .archive import Containers
from .base import WNID, Entry, FileRef, SourceError, class_key, is_image_name, walk
from .imagenet21k_common import ImageNet21kSource

TOP = "imagenet21k_resized"
ARCHIVES = (f"{TOP}.tar.gz", f"{TOP}.tar")
TRAIN, VAL, SMALL = "imagenet21k_train", "imagenet21k_val", "imagenet21k_small_classes"
SUBDIRS = {TRAIN: "train", VAL: "validation", SMALL: "train"}
P_LISTS = ("imagenet21k_p_winter21", "imagenet21k_p")  # auto choice, in order of preference


class ImageNet21kP(ImageNet21kSource):
    layout = "21k-p"
    description = (f"{TOP}/{{{TRAIN},{VAL},{SMALL}}}/<wnid>/*.JPEG (extracted), or {ARCHIVES[0]}")
    default_class_list = None
    has_validation = True

    @classmethod
    def detect(cls, root: Path) -> bool:
        return (root / TOP).is_dir() or (root / TRAIN).is_dir() or any((root / a).is_file() for a in ARCHIVES)

    def _tree_path(self) -> Path:
        for path in (self.root / TOP, *(self.root / a for a in ARCHIVES)):
            if path.exists():
                return path
        if (self.root / TRAIN).is_dir():
            return self.root
        raise SourceError(f"{self.root} has neither {TOP}/ nor {ARCHIVES[0]}")

    def scan(self, splits: list[str], containers: Containers) -> Iterator[Entry]:
        path = self._tree_path()
        if self.class_list is None:
            self._use(self._auto_class_list(path, containers))
        ignored: Counter[tuple[str, str]] = Counter()  # (subdir, wnid) -> files, for classes not in the list
        for ref in walk(self, containers, path):
            parsed = _parse(ref)
            if parsed is None:
                self.ignore(f"{path.name}/{ref.path}", f"not in {{{TRAIN},{VAL},{SMALL}}}/<wnid>/")
                continue
            sub, wnid, name = parsed
            if not is_image_name(name):
                self.ignore(f"{path.name}/{ref.path}", "not an image file name")
                continue
            label = self.table.index.get(wnid)
            if label is None:
                ignored[(sub, wnid)] += 1
                continue
            split = SUBDIRS[sub]
            if split in splits:
                yield ref.entry(split, class_key(wnid, name), f"{wnid}/{name}", label)
        for (sub, wnid), count in sorted(ignored.items()):
            self.ignore_class(f"{path.name}/{sub}/{wnid}/", wnid, count)

    def _auto_class_list(self, path: Path, containers: Containers) -> str:
        """The 21K-P list that holds every train/val class of the download (small classes aside)."""
        if path.is_dir():
            found = {d for sub in (TRAIN, VAL) if (path / sub).is_dir() for d in os.listdir(path / sub)}
        else:  # one extra pass over the archive's headers (the spool is reused by the real pass)
            found = {p[1] for ref in walk(self, containers, path)
                     if (p := _parse(ref)) is not None and p[0] != SMALL}
        found = {w for w in found if WNID.match(w)}
        for name in P_LISTS:
            if found <= set(wnid_list(name)):
                return name
        outside = sorted(found - set(wnid_list(P_LISTS[-1])))
        raise SourceError(f"{len(outside)} class folder(s) of {path} are in neither 21K-P list (e.g. {outside[:3]}); "
                          "pass class_list (e.g. imagenet21k) to choose the label space")


def _parse(ref: FileRef) -> tuple[str, str, str] | None:
    """(subdir, wnid, file name) of ``[imagenet21k_resized/]<subdir>/<wnid>/<file>``."""
    parts = ref.path.split("/")
    if len(parts) >= 3 and parts[-3] in SUBDIRS and WNID.match(parts[-2]):
        return parts[-3], parts[-2], parts[-1]
    return None
