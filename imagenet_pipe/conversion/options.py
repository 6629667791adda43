"""What a conversion is asked to do: the options that determine its output bytes, merged with
the dataset preset (``configs/datasets/<dataset>.yaml``)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..config import load_preset
from ..errors import ImagenetPipeError
from .hygiene import HygienePolicy

# split names end up in shard, index and DALI .idx file names: no dots (DALI cuts names at the first
# dot), no spaces; '-' and '_' are fine (e.g. ImageNet-C's 'gaussian_noise-3')
SAFE_SPLIT = re.compile(r"^[A-Za-z0-9_-]+$")


class ConvertError(ImagenetPipeError):
    """A conversion cannot start or finish; the message says what to do."""


@dataclass(frozen=True)
class ConvertOptions:
    """Everything that determines the output bytes (``--workers`` deliberately does not)."""

    dataset: str
    source: str
    splits: tuple[str, ...]
    seed: int = 0
    shard_size: dict[str, int] = field(default_factory=dict)
    num_shards: dict[str, int] = field(default_factory=dict)
    layout: str | None = None
    real_labels: bool = True
    hygiene: HygienePolicy = field(default_factory=HygienePolicy)
    dataset_options: dict[str, Any] = field(default_factory=dict)  # passed to the layout's reader

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["splits"] = list(self.splits)
        d["hygiene"]["flags"] = list(self.hygiene.flags)  # compared with the JSON read back on reruns
        return d


def resolve_options(dataset: str, source: Path, *, splits: Iterable[str] | None = None, seed: int = 0,
                    shard_size: int | dict[str, int] | None = None,
                    num_shards: int | dict[str, int] | None = None, layout: str | None = None,
                    real_labels: bool = True, hygiene: HygienePolicy | None = None,
                    dataset_options: dict[str, Any] | None = None) -> ConvertOptions:
    """Merge the dataset preset (``configs/datasets/<dataset>.yaml``) with explicit options."""
    preset = load_preset(dataset, "datasets")
    chosen = _expand_splits(list(splits), preset["splits"]) if splits else tuple(preset["splits"])
    unknown = [s for s in chosen if s not in preset["splits"]]
    if unknown:
        raise ConvertError(f"{dataset} has no split(s) {unknown}; known: {preset['splits']}")
    unsafe = [s for s in chosen if not SAFE_SPLIT.match(s)]
    if unsafe:
        raise ConvertError(f"split name(s) {unsafe} are not usable in file names: use [A-Za-z0-9_-] only")
    per_split_size = _per_split(shard_size, chosen, "shard_size") if shard_size is not None else {}
    per_split_count = _per_split(num_shards, chosen, "num_shards") if num_shards is not None else {}
    preset_size = _per_split(preset["shard_size"], chosen)  # one number, or one per split
    for split in chosen:  # splits given neither a size nor a count keep the preset's size
        if split not in per_split_size and split not in per_split_count:
            per_split_size[split] = preset_size[split]
    for name, table in (("shard size", per_split_size), ("number of shards", per_split_count)):
        if any(v < 1 for v in table.values()):
            raise ConvertError(f"{name} must be at least 1, got {table}")
    hygiene = hygiene or HygienePolicy()
    if not hygiene.flags and preset.get("image_flags"):
        hygiene = replace(hygiene, flags=tuple(preset["image_flags"]))
    return ConvertOptions(dataset, str(Path(source).resolve()), chosen, seed, per_split_size, per_split_count,
                          layout, real_labels, hygiene, dict(dataset_options or {}))


def _expand_splits(requested: list[str], known: list[str]) -> tuple[str, ...]:
    """Split names, where a glob pattern stands for the matching preset splits in preset order
    (ImageNet-C: ``gaussian_noise-*`` for the five severities of one corruption)."""
    out: list[str] = []
    for name in requested:
        if any(ch in name for ch in "*?["):
            matches = [s for s in known if fnmatch.fnmatchcase(s, name)]
            if not matches:
                raise ConvertError(f"split pattern {name!r} matches none of {known}")
            out += [m for m in matches if m not in out]
        elif name not in out:
            out.append(name)
    return tuple(out)


def _per_split(value: int | dict[str, int], splits: tuple[str, ...], what: str | None = None) -> dict[str, int]:
    """One number for every split, or ``{split: number}`` for some of them. With ``what`` (a user's
    option, not the preset), naming a split that is not converted is an error: most likely a typo."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(splits))
        if unknown and what:
            raise ConvertError(f"{what} names split(s) {unknown} that are not being converted ({list(splits)})")
        return {s: int(value[s]) for s in splits if s in value}
    return {s: int(value) for s in splits}

