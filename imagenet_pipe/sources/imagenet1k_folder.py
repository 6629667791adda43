"""ImageNet-1K already extracted into class folders (the ImageFolder layout).

``train/<wnid>/<wnid>_<n>.JPEG``; ``val/<wnid>/ILSVRC2012_val_XXXXXXXX.JPEG`` after valprep.sh, or a
flat ``val/`` whose labels come from valprep.sh, a devkit, or Kaggle's ``LOC_val_solution.csv``
found beside it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .archive import Containers
from .base import WNID, Entry, Source, SourceError, file_key, is_image_name, walk_dir
from .imagenet1k_labels import (
    DEVKIT,
    TABLE,
    devkit_val_label,
    kaggle_val_wnids,
    read_devkit,
    real_extra,
    train_label,
    val_number,
    valprep_wnids,
)

VAL_DIRS = ("val", "validation")


class ImageNet1kFolder(Source):
    dataset = "imagenet1k"
    layout = "folder"
    splits = ("train", "validation")
    description = ("train/<wnid>/*.JPEG and val/<wnid>/*.JPEG, or a flat val/ with valprep.sh, "
                   "LOC_val_solution.csv or the devkit beside it")

    @classmethod
    def detect(cls, root: Path) -> bool:
        return (root / "train").is_dir() or any((root / d).is_dir() for d in VAL_DIRS)

    def scan(self, splits: list[str], containers: Containers) -> Iterator[Entry]:
        if "train" in splits:
            if not (self.root / "train").is_dir():
                raise SourceError(f"split 'train' requested but {self.root / 'train'} does not exist")
            for ref in walk_dir(self.root / "train", containers, self):
                parts = ref.path.split("/")
                if len(parts) != 2 or not WNID.match(parts[0]):
                    self.ignore(f"train/{ref.path}", "not in a train/<wnid>/ class folder")
                elif not is_image_name(parts[1]):
                    self.ignore(f"train/{ref.path}", "not an image file name")
                else:
                    yield ref.entry("train", file_key(parts[1]), ref.path, train_label(parts[0], parts[1]))
        if "validation" in splits:
            yield from self._validation(containers)

    def _validation(self, containers: Containers) -> Iterator[Entry]:
        val_dir = next((self.root / d for d in VAL_DIRS if (self.root / d).is_dir()), None)
        if val_dir is None:
            raise SourceError(f"split 'validation' requested but {self.root} has no val/ folder")
        attach_real = self.options.get("real_labels", True)
        flat_labels = None
        for ref in walk_dir(val_dir, containers, self):
            parts = ref.path.split("/")
            number = val_number(parts[-1])
            if number is None:
                if parts[-1] != "valprep.sh":
                    self.ignore(f"{val_dir.name}/{ref.path}", "not an ILSVRC2012_val_XXXXXXXX.JPEG name")
                continue
            if len(parts) == 2 and WNID.match(parts[0]):
                wnid, label = parts[0], TABLE.label(parts[0])
            elif len(parts) == 1:
                if flat_labels is None:
                    flat_labels = self._flat_val_labels(val_dir)
                wnid, label = flat_labels(number, parts[0])
            else:
                self.ignore(f"{val_dir.name}/{ref.path}", "not in val/ or val/<wnid>/")
                continue
            yield ref.entry("validation", file_key(parts[-1]), f"{wnid}/{parts[-1]}", label,
                            real_extra(number) if attach_real else None)

    def _flat_val_labels(self, val_dir: Path):
        """A labeller for a flat val/: valprep.sh, then Kaggle's CSV, then the devkit."""
        for script in (val_dir / "valprep.sh", self.root / "valprep.sh"):
            if script.exists():
                table = valprep_wnids(script.read_text())
                return lambda number, name: _lookup(table, name, script.name)
        csv_path = self.root / "LOC_val_solution.csv"
        if csv_path.exists():
            table = {f"{k}.JPEG": w for k, w in kaggle_val_wnids(csv_path.read_text()).items()}
            return lambda number, name: _lookup(table, name, csv_path.name)
        if (self.root / f"{DEVKIT}.tar.gz").exists() or (self.root / DEVKIT).is_dir():
            gt, id_to_wnid = read_devkit(self.root)
            return lambda number, name: devkit_val_label(number, gt, id_to_wnid)
        raise SourceError(f"{val_dir} is flat and no labels were found: put valprep.sh, LOC_val_solution.csv "
                          f"or {DEVKIT}.tar.gz in {self.root}")


def _lookup(table: dict[str, str], name: str, where: str) -> tuple[str, int]:
    wnid = table.get(name)
    if wnid is None:
        raise SourceError(f"{name} is not listed in {where}")
    return wnid, TABLE.label(wnid)
