"""ImageNet-C (hendrycks/robustness): 19 corruptions x 5 severities of the 50,000 validation images.

Downloads ``noise.tar``, ``blur.tar``, ``weather.tar``, ``digital.tar``, ``extra.tar`` (some may be
compressed despite the name: detected from the bytes and spooled), each holding
``<corruption>/<severity>/<wnid>/ILSVRC2012_val_XXXXXXXX.JPEG`` (224x224). Extracted
``<corruption>/`` folders in the source folder are accepted too.

* Split = ``<corruption>-<severity>`` (e.g. ``gaussian_noise-3``): 95 splits, each its own shards and
  timm split; only the archives holding the requested splits are read.
* Label = sorted index of the wnid folder (``ImageFolder(<corruption>/<severity>)`` in ``test.py``).
* Key = ``<corruption>-<severity>-ILSVRC2012_val_XXXXXXXX``: unique across all splits, so shards
  of several splits can be mixed in one loader. The json keeps ``corruption``, ``severity`` and, as
  the images are validation images under their original names, ``real_labels`` (ImageNet-ReaL).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..archive import Containers
from ..catalog import Entry
from ..evaluation.metrics import SEVERITIES
from .base import WNID, FileRef, Source, SourceError, safe_key, walk, walk_dir
from .imagenet1k_labels import TABLE, real_extra, val_number

# archive -> its corruptions, in the order of hendrycks' imagenet_c/__init__.py (extra = held-out ones)
ARCHIVES = {
    "noise.tar": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur.tar": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather.tar": ("snow", "frost", "fog", "brightness"),
    "digital.tar": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
    "extra.tar": ("speckle_noise", "gaussian_blur", "spatter", "saturate"),
}
CORRUPTIONS = tuple(c for group in ARCHIVES.values() for c in group)
SEVERITY_NAMES = frozenset(str(s) for s in SEVERITIES)
SPLITS = tuple(f"{c}-{s}" for c in CORRUPTIONS for s in SEVERITIES)


def split_name(corruption: str, severity: int) -> str:
    return f"{corruption}-{severity}"


class ImageNetC(Source):
    dataset = "imagenet-c"
    layout = "official"
    splits = SPLITS
    description = ("noise.tar, blur.tar, weather.tar, digital.tar, extra.tar (any subset; "
                   "<corruption>/<1..5>/<wnid>/ILSVRC2012_val_XXXXXXXX.JPEG inside)")

    @classmethod
    def detect(cls, root: Path) -> bool:
        return any((root / a).is_file() for a in ARCHIVES) or any((root / c).is_dir() for c in CORRUPTIONS)

    def scan(self, splits: list[str], containers: Containers) -> Iterator[Entry]:
        wanted = set(splits)
        attach_real = self.options.get("real_labels", True)
        for ref, where in self._trees(wanted, containers):
            parts = ref.path.split("/")
            if len(parts) < 4 or parts[-4] not in CORRUPTIONS:
                self.ignore(where, "not <corruption>/<severity>/<wnid>/<file>")
                continue
            corruption, severity, wnid, name = parts[-4:]
            if severity not in SEVERITY_NAMES or not WNID.match(wnid):
                self.ignore(where, "not <corruption>/<1..5>/<wnid>/<file>")
                continue
            split = split_name(corruption, int(severity))
            if split not in wanted:
                continue
            number = val_number(name)
            if number is None:
                self.ignore(where, "not an ILSVRC2012_val_XXXXXXXX.JPEG name")
                continue
            extra = {"corruption": corruption, "severity": int(severity)}
            if attach_real:
                extra.update(real_extra(number))
            yield ref.entry(split, safe_key(f"{split}-{name.split('.', 1)[0]}"), f"{wnid}/{name}",
                            _label(wnid, where), extra)

    def _trees(self, wanted: set[str], containers: Containers) -> Iterator[tuple[FileRef, str]]:
        """Files of every archive (or extracted corruption folder) holding a requested split. All
        are located before any is read: a missing one fails fast, not after a 20 GB spool."""
        plan: list[tuple[str, list[str]]] = []  # (archive, corruptions to read from folders) per group
        for archive, group in ARCHIVES.items():
            needed = [c for c in group if any(split_name(c, s) in wanted for s in SEVERITIES)]
            if not needed:
                continue
            if (self.root / archive).is_file():
                plan.append((archive, []))
                continue
            missing = [c for c in needed if not (self.root / c).is_dir()]
            if missing:
                have = [c for a, group in ARCHIVES.items() for c in group
                        if (self.root / a).is_file() or (self.root / c).is_dir()]
                hint = ",".join(f"{c}-*" for c in have) or "<corruption>-<severity>"
                raise SourceError(f"corruption(s) {missing} are in {archive}, which is not in {self.root}; "
                                  f"download it, or convert only the splits you have: --splits '{hint}'")
            plan.append((archive, needed))
        for archive, folders in plan:
            if not folders:
                for ref in walk(self, containers, self.root / archive):
                    yield ref, f"{archive}/{ref.path}"
            for corruption in folders:
                for ref in walk_dir(self.root / corruption, containers, self):
                    ref = FileRef(f"{corruption}/{ref.path}", ref.cid, ref.offset, ref.size, ref.member)
                    yield ref, ref.path


def _label(wnid: str, where: str) -> int:
    label = TABLE.index.get(wnid)
    if label is None:
        raise SourceError(f"{where}: {wnid} is not an ImageNet-1K class")
    return label
