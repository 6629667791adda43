"""What an evaluation returns: the scores of each split and of the whole folder, as dataclasses, and
their JSON form (what ``imagenet-pipe eval --json`` writes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import __version__

# optional scores, in the order the JSON lists them; absent (None) ones are left out
_OPTIONAL_SCORES = ("top1_200", "top5_200", "real_top1", "real_count", "real_excluded", "real_top5", "corruption",
                    "severity")


@dataclass
class SplitScore:
    """The metrics of one split (fractions; NaN where a split has no image to count)."""

    count: int
    top1: float
    top5: float
    error: float  # 1 - top1, ImageNet-C's E
    seconds: float  # the slowest rank's time in the split's loop
    top1_200: float | None = None  # ImageNet-R / -A: logits masked to the 200 classes
    top5_200: float | None = None
    real_top1: float | None = None  # ImageNet-ReaL, over the images whose label list is not empty
    real_count: int | None = None
    real_excluded: int | None = None
    real_top5: float | None = None
    corruption: str | None = None  # ImageNet-C: the split's corruption and severity
    severity: int | None = None
    skipped: list[list[str]] = field(default_factory=list)  # [shard, key, reason] of bad samples skipped

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"count": self.count, "top1": self.top1, "top5": self.top5, "error": self.error}
        out.update({name: getattr(self, name) for name in _OPTIONAL_SCORES if getattr(self, name) is not None})
        if self.skipped:
            out["skipped"] = self.skipped
        out["seconds"] = self.seconds
        return out


@dataclass
class EvalResult:
    """One shard folder evaluated: per-split scores, ImageNet-C's summary, and how it was run."""

    root: str
    dataset: str
    class_list: str | None
    num_classes: int
    model: dict[str, Any]  # LoadedModel.describe(): spec, kind, class, parameters, data config, notes
    preprocessing: dict[str, Any]  # size, crop_pct, interpolation, mean, std, resize_shorter, sources
    loader: dict[str, Any]  # backend, batch size, device, dtype, autocast, world size, memory format
    splits: dict[str, SplitScore]
    subset: dict[str, Any] | None = None  # ImageNet-R / -A: the 200-class subset
    imagenet_c: dict[str, Any] | None = None  # metrics.corruption_summary() and where the clean error came from
    logits_file: str | None = None
    elapsed_s: float = 0.0
    tool: str = f"imagenet-pipe {__version__}"

    @property
    def counts(self) -> dict[str, int]:
        return {split: score.count for split, score in self.splits.items()}

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tool": self.tool, "root": self.root, "dataset": self.dataset, "class_list": self.class_list,
            "num_classes": self.num_classes, "model": self.model, "preprocessing": self.preprocessing,
            "loader": self.loader, "splits": {s: score.as_json() for s, score in self.splits.items()},
            "counts": self.counts,
        }
        for name in ("subset", "imagenet_c", "logits_file"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        out["elapsed_s"] = self.elapsed_s
        return out
