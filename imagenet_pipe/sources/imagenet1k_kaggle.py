"""ImageNet-1K from Kaggle's ``imagenet-object-localization-challenge`` (CLS-LOC) download.

Accepted as the user got it: the competition zip (holding either the patched ``.tar.gz`` or
``ILSVRC/`` directly), or that zip already unpacked (CSV files plus ``ILSVRC/`` or the ``.tar.gz``).
Labels: 0-based line of ``LOC_synset_mapping.txt`` (= sorted index); validation class = first
token of ``PredictionString`` in ``LOC_val_solution.csv`` (rows unsorted, several boxes per row).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .archive import Containers, open_zip, read_zip_member
from .base import (
    Entry,
    FileRef,
    Source,
    SourceError,
    file_key,
    is_image_name,
    spool_zip_member,
    walk_dir,
    walk_tar,
    walk_zip,
)
from .imagenet1k_labels import TABLE, kaggle_synsets, kaggle_val_wnids, real_extra, train_label, val_number

ZIP = "imagenet-object-localization-challenge.zip"
NESTED_SUFFIX = ".tar.gz"
MAPPING, VAL_CSV = "LOC_synset_mapping.txt", "LOC_val_solution.csv"
DATA = "ILSVRC/Data/CLS-LOC/"


class ImageNet1kKaggle(Source):
    dataset = "imagenet1k"
    layout = "kaggle"
    splits = ("train", "validation")
    description = (f"{ZIP} (or its unpacked content): LOC_synset_mapping.txt, LOC_val_solution.csv and "
                   "ILSVRC/Data/CLS-LOC/{train/<wnid>/,val/} directly or inside "
                   "imagenet_object_localization_patched2019.tar.gz")

    @classmethod
    def detect(cls, root: Path) -> bool:
        return (root / ZIP).is_file() or (root / MAPPING).is_file()

    def scan(self, splits: list[str], containers: Containers) -> Iterator[Entry]:
        top, tree = self._open(containers)
        synsets = kaggle_synsets(top[MAPPING])
        if list(synsets) != list(TABLE.wnids):
            raise SourceError(f"{MAPPING} is not in sorted-wnid order; its line numbers would not be the "
                              "standard labels")
        val_wnids = kaggle_val_wnids(top[VAL_CSV]) if "validation" in splits else {}
        attach_real = self.options.get("real_labels", True)
        for ref in tree:
            at = ref.path.find(DATA)
            if at < 0:
                continue  # annotations, image-set lists, CSVs
            parts = ref.path[at + len(DATA):].split("/")
            if parts[0] == "train" and "train" in splits and len(parts) == 3:
                if not is_image_name(parts[2]):
                    self.ignore(ref.path, "not an image file name")
                    continue
                wnid = parts[1]
                yield ref.entry("train", file_key(parts[2]), f"{wnid}/{parts[2]}", train_label(wnid, parts[2]))
            elif parts[0] == "val" and "validation" in splits and len(parts) == 2:
                number = val_number(parts[1])
                if number is None:
                    self.ignore(ref.path, "not an ILSVRC2012_val_XXXXXXXX.JPEG name")
                    continue
                wnid = val_wnids.get(ref.stem)
                if wnid is None:
                    raise SourceError(f"{ref.stem} has no row in {VAL_CSV}")
                yield ref.entry("validation", file_key(parts[1]), f"{wnid}/{parts[1]}", TABLE.label(wnid),
                                real_extra(number) if attach_real else None)

    def _open(self, containers: Containers) -> tuple[dict[str, str], Iterator[FileRef]]:
        """(top-level text files, file tree) for the zip, or for the unpacked zip."""
        zpath = self.root / ZIP
        if zpath.is_file():
            with open_zip(zpath) as zf:
                names = zf.namelist()
                top = {n.rsplit("/", 1)[-1]: read_zip_member(zf, n).decode() for n in names
                       if n.rsplit("/", 1)[-1] in (MAPPING, VAL_CSV)}
            nested = [n for n in names if n.endswith(NESTED_SUFFIX)]
            tree = (spool_zip_member(self, zpath, nested[0], containers) if nested
                    else walk_zip(zpath, containers))
        else:
            top = {n: (self.root / n).read_text() for n in (MAPPING, VAL_CSV) if (self.root / n).exists()}
            nested_files = sorted(self.root.glob("*" + NESTED_SUFFIX))
            if (self.root / "ILSVRC").is_dir():
                tree = walk_dir(self.root, containers, self, where="")
            elif nested_files:
                tree = walk_tar(self, nested_files[0], containers)
            else:
                raise SourceError(f"{self.root} has {MAPPING} but neither ILSVRC/ nor a *{NESTED_SUFFIX}")
        for needed in (MAPPING, VAL_CSV):
            if needed not in top:
                raise SourceError(f"the Kaggle download in {self.root} lacks {needed}")
        return top, tree
