"""ImageNet-R and ImageNet-A (hendrycks): one 200-class archive each, same layout, one reader.

``imagenet-r.tar`` -> ``imagenet-r/<wnid>/<file>.jpg`` + ``imagenet-r/README.txt`` (30,000 images);
``imagenet-a.tar`` -> ``imagenet-a/<wnid>/<file>.jpg`` + ``imagenet-a/README.txt`` (7,500 images).
The extracted top folder is accepted too. One split, ``validation``.

* ``cls`` = 1000-way sorted index of the wnid (TFDS); the json adds ``label_200`` = index among the
  dataset's 200 sorted wnids (Hendrycks' ``eval.py``, timm ``--valid-labels``). The preset adds a
  timm split ``validation_200`` over the same shards with ``alt_label: label_200``; the 200
  1000-way indices (timm ``imagenet_{r,a}_indices.txt``) are in the manifest's ``dataset_info``.
* Keys: R names (``art_0.jpg``) repeat across classes -> ``<wnid>_<stem>``; A names contain spaces
  and several dots (``0.000116_digital clock _ digital clock_0.865662.jpg``) -> ``<wnid>_<NNNN>``,
  the running index of the name among its class's sorted names (not archive order). The json
  ``filename`` keeps the original ``<wnid>/<name>``.
* A class folder outside the 200, or a README listing other classes, is an error (wrong archive).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from ..classes import ClassTable, subset_indices
from .archive import ByteReader, Containers
from .base import Entry, FileRef, Source, SourceError, class_file, class_key, is_image_name, safe_key, walk
from .imagenet1k_labels import TABLE

README = "README.txt"
README_CLASS = re.compile(r"^(n\d{8})\s")


class WnidSubsetSource(Source):
    """A tar of ``<top>/<wnid>/<file>`` over a 200-class subset of ImageNet-1K."""

    layout = "official"
    splits = ("validation",)
    archive: ClassVar[str]
    top: ClassVar[str]
    subset: ClassVar[str]  # class list name in imagenet_pipe.classes
    key_by_index: ClassVar[bool]  # names unusable as keys: number them per class

    @classmethod
    def detect(cls, root: Path) -> bool:
        return (root / cls.archive).is_file() or (root / cls.top).is_dir()

    @functools.cached_property
    def subset_table(self) -> ClassTable:
        return ClassTable.load(self.subset)

    def dataset_info(self) -> dict:
        return {"subset": self.subset, "num_subset_classes": len(self.subset_table), "subset_label": "label_200",
                "subset_indices": subset_indices(self.subset)}

    def scan(self, splits: list[str], containers: Containers) -> Iterator[Entry]:
        path = next((p for p in (self.root / self.archive, self.root / self.top) if p.exists()), None)
        if path is None:
            raise SourceError(f"{self.root} has neither {self.archive} nor {self.top}/")
        by_class: dict[str, list[tuple[str, FileRef]]] = {}
        for ref in walk(self, containers, path):
            where = f"{path.name}/{ref.path}"
            found = class_file(ref.path, self.top)
            if found is None and ref.name == README:
                self._check_readme(containers, ref, where)
            elif found is None or not is_image_name(found[1]):
                self.ignore(where, f"not an image in {self.top}/<wnid>/")
            elif found[0] not in self.subset_table.index:
                raise SourceError(f"{where}: {found[0]} is not one of the 200 {self.dataset} classes")
            else:
                by_class.setdefault(found[0], []).append((found[1], ref))
        if "validation" not in splits:
            return
        for wnid, files in sorted(by_class.items()):
            extra = {"label_200": self.subset_table.label(wnid)}
            for i, (name, ref) in enumerate(sorted(files, key=lambda f: f[0])):
                key = safe_key(f"{wnid}_{i:04d}") if self.key_by_index else class_key(wnid, name)
                yield ref.entry("validation", key, f"{wnid}/{name}", TABLE.label(wnid), extra)

    def _check_readme(self, containers: Containers, ref: FileRef, where: str) -> None:
        """The README's ``<wnid> <name>`` lines must list exactly this dataset's 200 classes."""
        reader = ByteReader(containers)
        try:
            text = reader.read(ref.cid, ref.offset, ref.size, ref.member).decode("utf-8", "replace")
        finally:
            reader.close()
        listed = {m.group(1) for line in text.splitlines() if (m := README_CLASS.match(line))}
        if listed and listed != set(self.subset_table.wnids):
            raise SourceError(f"{where} lists {len(listed)} classes that differ from the {len(self.subset_table)} "
                              f"{self.dataset} classes ({sorted(listed ^ set(self.subset_table.wnids))[:3]} ...)")


class ImageNetR(WnidSubsetSource):
    dataset = "imagenet-r"
    archive, top, subset, key_by_index = "imagenet-r.tar", "imagenet-r", "imagenet_r", False
    description = "imagenet-r.tar (imagenet-r/<wnid>/<rendition>_<n>.jpg + README.txt)"


class ImageNetA(WnidSubsetSource):
    dataset = "imagenet-a"
    archive, top, subset, key_by_index = "imagenet-a.tar", "imagenet-a", "imagenet_a", True
    description = "imagenet-a.tar (imagenet-a/<wnid>/<names with spaces and dots>.jpg + README.txt)"
