"""ImageNet-1K as downloaded from image-net.org: tar of per-class tars, flat val tar, devkit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .archive import Containers, iter_tar
from .base import Entry, Source, SourceError, file_key, is_image_name, iter_class_tars
from .imagenet1k_labels import devkit_val_label, read_devkit, real_extra, train_label, val_number

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"


class ImageNet1kOfficial(Source):
    dataset = "imagenet1k"
    layout = "official"
    splits = ("train", "validation")
    description = (f"{TRAIN_TAR} (1000 <wnid>.tar inside), {VAL_TAR} (50,000 flat JPEGs), "
                   "ILSVRC2012_devkit_t12.tar.gz (validation ground truth + meta.mat)")

    @classmethod
    def detect(cls, root: Path) -> bool:
        return (root / TRAIN_TAR).is_file() or (root / VAL_TAR).is_file()

    def scan(self, splits: list[str], containers: Containers) -> Iterator[Entry]:
        if "train" in splits:
            yield from self._train(containers)
        if "validation" in splits:
            yield from self._validation(containers)

    def _train(self, containers: Containers) -> Iterator[Entry]:
        path = self.root / TRAIN_TAR
        if not path.is_file():
            raise SourceError(f"split 'train' requested but {path} does not exist")
        for wnid, where, cid, members in iter_class_tars(self, path, containers):
            for inner in members:
                name = inner.name.rsplit("/", 1)[-1]
                if not is_image_name(name):
                    self.ignore(f"{where}/{inner.name}", "not an image file name")
                    continue
                yield Entry("train", file_key(name), f"{wnid}/{name}", train_label(wnid, name),
                            cid, inner.offset, inner.size)

    def _validation(self, containers: Containers) -> Iterator[Entry]:
        path = self.root / VAL_TAR
        if not path.is_file():
            raise SourceError(f"split 'validation' requested but {path} does not exist")
        gt, id_to_wnid = read_devkit(self.root)
        attach_real = self.options.get("real_labels", True)
        cid, readable = containers.open_tar(path, self.spool_dir)
        with open(readable, "rb") as f:
            for m in iter_tar(f, VAL_TAR, log=self):
                name = m.name.rsplit("/", 1)[-1]
                number = val_number(name)
                if number is None:
                    self.ignore(f"{VAL_TAR}/{m.name}", "not an ILSVRC2012_val_XXXXXXXX.JPEG name")
                    continue
                wnid, label = devkit_val_label(number, gt, id_to_wnid)
                yield Entry("validation", file_key(name), f"{wnid}/{name}", label, cid, m.offset,
                            m.size, extra=real_extra(number) if attach_real else None)
