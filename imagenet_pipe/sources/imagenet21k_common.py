"""ImageNet-21K rules shared by its three raw layouts (``docs/raw-layouts.md`` section 3).

* **Label** = 0-based index of the wnid in the chosen class list (dataset option ``class_list``,
  any list of :mod:`imagenet_pipe.classes`). Defaults: the 21,841 sorted fall11 wnids (timm's "22k"
  order) for ``fall11`` and ``winter21``; for ``21k-p`` the 21K-P list of the release found (see
  :mod:`.imagenet21k_p`). ``class_list=imagenet12k`` on fall11 gives timm's 12k label space.
* **Classes outside the list** are not samples: they are ignored with one record per class (file
  count included), never one per image, so a 12k conversion of fall11 does not log 2 M lines.
* **Validation** for fall11/winter21, which ship none: ``holdout_per_class=N`` holds out, per
  class, the ``min(N, n // 2)`` images whose keys rank first by ``blake2b(holdout_seed, key)``
  (ties by key), so small classes keep at least half their images for training. The choice
  depends only on the class's key set and ``holdout_seed`` (default 0): not on archive order, and
  not on the shuffle ``--seed``, so a validation set stays the same across shuffles. Held-out
  images are never in ``train``, whichever splits are converted. With N = 0 (default) every image
  is in ``train`` and ``validation`` stays empty.

Scale (14.2 M images): the readers keep one class's members at a time (at most a few thousand);
every sample is addressed by byte offset into the tar (or its decompressed spool).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from ..classes import ClassTable, wnid_list
from .archive import Containers
from .base import WNID, Entry, Source, SourceError, class_key, is_image_name, iter_class_tars

DEFAULT_CLASS_LIST = "imagenet21k"  # sorted fall11 wnids (timm imagenet22k_synsets.txt)

# (key, filename, cid, offset, size, member) of one image, before its split is known
ClassFile = tuple[str, str, int, int, int, str]


def held_out(keys: list[str], per_class: int, seed: int) -> set[str]:
    """Keys of a class held out for validation: the first ``min(per_class, len // 2)`` by hash."""
    count = min(per_class, len(keys) // 2)
    if count <= 0:
        return set()
    ranked = sorted(keys, key=lambda k: (hashlib.blake2b(f"{seed}/{k}".encode(), digest_size=8).digest(), k))
    return set(ranked[:count])


class ImageNet21kSource(Source):
    """Options, label table, hold-out and per-class ignore records shared by the 21K layouts."""

    dataset = "imagenet21k"
    splits = ("train", "validation")
    default_class_list: str | None = DEFAULT_CLASS_LIST  # None: chosen from the download (21k-p)
    has_validation = False  # True where the download has its own validation folder

    def __init__(self, root: Path, workdir: Path, **options) -> None:
        super().__init__(root, workdir, **options)
        self.holdout = _int_option(options, "holdout_per_class", 0)
        self.holdout_seed = _int_option(options, "holdout_seed", 0)
        if self.holdout and self.has_validation:
            raise SourceError(f"the {self.layout} layout ships its own validation split; holdout_per_class "
                              "applies to fall11 and winter21")
        requested = options.get("class_list")
        self._class_list = requested if requested not in (None, "", "auto") else self.default_class_list
        self._table: ClassTable | None = None
        if self._class_list is not None:
            self._use(self._class_list)

    def _use(self, name: str) -> None:
        try:
            wnid_list(name)
        except ValueError as e:
            raise SourceError(f"class_list: {e}") from None
        self._class_list, self._table = name, ClassTable.load(name)

    @property
    def class_list(self) -> str | None:
        return self._class_list

    @property
    def table(self) -> ClassTable:
        assert self._table is not None, "class list not chosen yet"
        return self._table

    def dataset_info(self) -> dict:
        info = {"class_list": self._class_list, "num_classes": len(self.table)}
        if not self.has_validation:
            info.update(holdout_per_class=self.holdout, holdout_seed=self.holdout_seed,
                        holdout_rule="per class min(N, n // 2) images, first by blake2b(seed/key)")
        return info

    def ignore_class(self, where: str, wnid: str, count: int) -> None:
        self.ignore(where, f"class {wnid} is not one of the {len(self.table)} {self._class_list} classes "
                           f"({count} file(s))")

    def emit_class(self, label: int, files: list[ClassFile], splits: list[str]) -> Iterator[Entry]:
        """Entries of one class, split into train / held-out validation."""
        held = held_out([f[0] for f in files], self.holdout, self.holdout_seed) if self.holdout else set()
        for key, filename, cid, offset, size, member in files:
            split = "validation" if key in held else "train"
            if split in splits:
                yield Entry(split, key, filename, label, cid, offset, size, member)

    def scan_class_tars(self, path: Path, splits: list[str], containers: Containers) -> Iterator[Entry]:
        """A tar (possibly compressed: spooled) of per-class ``<wnid>.tar`` tars, read by offset."""
        for wnid, where, cid, members in iter_class_tars(self, path, containers):
            label = self.table.index.get(wnid)
            if label is None:
                self.ignore_class(where, wnid, sum(1 for _ in members))
                continue
            files: list[ClassFile] = []
            for inner in members:
                name = inner.name.rsplit("/", 1)[-1]
                if not is_image_name(name):
                    self.ignore(f"{where}/{inner.name}", "not an image file name")
                elif WNID.match(name[:9]) and not name.startswith(f"{wnid}_"):
                    self.ignore(f"{where}/{inner.name}", f"named for another class than {wnid}")
                else:
                    files.append((class_key(wnid, name), f"{wnid}/{name}", cid, inner.offset, inner.size, ""))
            yield from self.emit_class(label, files, splits)


def _int_option(options: dict, name: str, default: int) -> int:
    value = options.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SourceError(f"{name} must be a non-negative integer, not {value!r}")
    return value
