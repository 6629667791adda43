"""Class lists and label tables (package data copied from the reference spec).

In every wnid list the label is the 0-based line number. The lists are the ones timm ships
(``timm/data/_info``), so indices agree with timm and TFDS.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources

from .errors import OptionsError

# name -> file in imagenet_pipe/data
WNID_LISTS = {
    "imagenet1k": "imagenet1k_wnids.txt",
    "imagenet21k": "imagenet21k_fall11_wnids.txt",  # timm "22k": 21,841 fall11 classes
    "imagenet21k_goog": "imagenet21k_goog_wnids.txt",
    "imagenet12k": "imagenet12k_wnids.txt",
    "imagenet21k_p": "imagenet21k_p_fall11_wnids.txt",
    "imagenet21k_p_winter21": "imagenet21k_p_winter21_wnids.txt",
    "imagenet_a": "imagenet_a_wnids.txt",
    "imagenet_r": "imagenet_r_wnids.txt",
}


def _data_text(name: str) -> str:
    return (resources.files("imagenet_pipe") / "data" / name).read_text(encoding="utf-8")


@functools.cache
def wnid_list(name: str) -> tuple[str, ...]:
    """Sorted wnids of a class list; ``wnid_list("imagenet1k")[65] == "n01751748"``."""
    try:
        filename = WNID_LISTS[name]
    except KeyError:
        raise OptionsError(f"unknown class list {name!r}; known: {', '.join(WNID_LISTS)}") from None
    return tuple(_data_text(filename).split())


@functools.cache
def lemmas() -> dict[str, str]:
    """wnid -> WordNet 3.0 lemmas joined with ', ' (the official class names)."""
    table = {}
    for line in _data_text("wnid_lemmas.tsv").splitlines():
        wnid, _, names = line.partition("\t")
        table[wnid] = names
    return table


@functools.cache
def devkit_ids() -> dict[int, str]:
    """ILSVRC2012_ID (1..1000, devkit order) -> wnid, the table behind the val ground truth."""
    table = {}
    for line in _data_text("imagenet1k_devkit_ids.tsv").splitlines():
        ilsvrc_id, wnid, _short = line.split("\t")
        table[int(ilsvrc_id)] = wnid
    return table


@functools.cache
def real_labels() -> tuple[tuple[int, ...], ...]:
    """ImageNet-ReaL: entry i lists the valid labels of ILSVRC2012_val_{i+1:08d}.JPEG."""
    return tuple(tuple(labels) for labels in json.loads(_data_text("imagenet_real_labels.json")))


@dataclass(frozen=True)
class ClassTable:
    """Index <-> wnid <-> names for one label space."""

    name: str
    wnids: tuple[str, ...]

    @classmethod
    def load(cls, name: str) -> ClassTable:
        return cls(name, wnid_list(name))

    @functools.cached_property
    def index(self) -> dict[str, int]:
        return {wnid: i for i, wnid in enumerate(self.wnids)}

    def __len__(self) -> int:
        return len(self.wnids)

    def label(self, wnid: str) -> int:
        try:
            return self.index[wnid]
        except KeyError:
            raise KeyError(f"wnid {wnid!r} is not one of the {len(self)} {self.name} classes") from None

    def names(self, label: int) -> str:
        return lemmas().get(self.wnids[label], "")

    def to_tsv(self) -> str:
        """``index<TAB>wnid<TAB>names`` lines, the class table written beside the shards."""
        return "".join(f"{i}\t{w}\t{lemmas().get(w, '')}\n" for i, w in enumerate(self.wnids))


def subset_indices(subset: str, parent: str = "imagenet1k") -> list[int]:
    """Positions of a subset's wnids in the parent list (e.g. ImageNet-R's 200 -> 1000-way)."""
    parent_table = ClassTable.load(parent)
    return [parent_table.label(w) for w in wnid_list(subset)]
