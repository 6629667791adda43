"""Scoring: every rank's predictions of a split merged into one typed record (each sample exactly
once, sorted by key), the split's metrics (:mod:`.metrics`) computed from it, and ImageNet-C's
summary over the splits of a folder."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OptionsError
from .metrics import corruption_summary, real_accuracy, topk_accuracy
from .results import EvalResult, SplitScore

TOPK = 5


@dataclass
class RankOutputs:
    """What one rank saw of one split, in loader order."""

    keys: list[str] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    topk: list[np.ndarray] = field(default_factory=list)
    sub_topk: list[np.ndarray] = field(default_factory=list)
    logits: list[np.ndarray] = field(default_factory=list)
    meta: dict[str, dict] = field(default_factory=dict)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class SplitPredictions:
    """Every rank's predictions of one split, merged and sorted by key."""

    keys: list[str]
    labels: np.ndarray  # [N] int64, from each sample's .cls
    topk: np.ndarray  # [N, TOPK] class indices, best first
    sub_topk: np.ndarray | None  # [N, TOPK] positions among a subset's classes (ImageNet-R / -A)
    logits: np.ndarray | None  # [N, classes] float32, when kept
    meta: dict[str, dict]  # key -> the sample's json
    skipped: list[tuple[str, str, str]]  # (shard, key, reason) of bad samples skipped
    seconds: float  # the slowest rank's

    @classmethod
    def merge(cls, parts: list[RankOutputs], split: str, expected: int) -> SplitPredictions:
        """Merge the ranks' outputs, checking that each of the split's ``expected`` samples was
        evaluated or skipped exactly once."""
        keys = [k for p in parts for k in p.keys]
        skipped = [s for p in parts for s in p.skipped]
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise RuntimeError(f"{split}: sample {dup} was evaluated more than once")
        if len(keys) + len(skipped) != expected:
            raise RuntimeError(f"{split}: {len(keys)} samples evaluated and {len(skipped)} skipped, but the split "
                               f"has {expected}")
        order = np.argsort(np.array(keys, dtype=object)) if keys else np.zeros(0, dtype=np.int64)
        sub_topk = [a for p in parts for a in p.sub_topk]
        logits = [a for p in parts for a in p.logits]
        return cls(keys=[keys[i] for i in order],
                   labels=_concat([a for p in parts for a in p.labels])[order],
                   topk=_concat([a for p in parts for a in p.topk], TOPK)[order],
                   sub_topk=_concat(sub_topk, TOPK)[order] if sub_topk else None,
                   logits=_concat(logits, dtype=np.float32)[order] if logits else None,
                   meta={k: v for p in parts for k, v in p.meta.items()},
                   skipped=skipped,
                   seconds=max((p.seconds for p in parts), default=0.0))


def _concat(parts: list[np.ndarray], width: int | None = None, dtype=np.int64) -> np.ndarray:
    if parts:
        return np.concatenate(parts).astype(dtype, copy=False)
    return np.zeros((0,) if width is None else (0, width), dtype=dtype)


def score_split(predictions: SplitPredictions, subset_label: str | None) -> SplitScore:
    """Metrics of one split from its merged predictions and sample metadata."""
    keys, labels, topk = predictions.keys, predictions.labels, predictions.topk
    meta = [predictions.meta.get(k, {}) for k in keys]
    for key, label, m in zip(keys, labels, meta, strict=True):
        if "label" in m and int(m["label"]) != int(label):  # the loader read .cls, the json says otherwise
            raise RuntimeError(f"sample {key}: label {label} from .cls but {m['label']} in its json")
    n = len(keys)
    top1 = topk_accuracy(topk, labels, 1)
    score = SplitScore(count=n, top1=top1, top5=topk_accuracy(topk, labels, TOPK),
                       error=1.0 - top1 if n else float("nan"), seconds=round(predictions.seconds, 3),
                       skipped=[list(s) for s in predictions.skipped])
    if predictions.sub_topk is not None and subset_label:
        missing = [k for k, m in zip(keys, meta, strict=True) if subset_label not in m]
        if missing:
            raise RuntimeError(f"sample {missing[0]} has no {subset_label!r} in its json")
        target = np.array([int(m[subset_label]) for m in meta], dtype=np.int64)
        score.top1_200 = topk_accuracy(predictions.sub_topk, target, 1)
        score.top5_200 = topk_accuracy(predictions.sub_topk, target, TOPK)
    if n and all("real_labels" in m for m in meta):
        real = [m["real_labels"] for m in meta]
        score.real_top1, score.real_count, score.real_excluded = real_accuracy(topk, real, 1)
        score.real_top5 = real_accuracy(topk, real, TOPK)[0]
    corruption = {(m.get("corruption"), m.get("severity")) for m in meta}
    if n and len(corruption) == 1 and None not in next(iter(corruption)):
        name, severity = next(iter(corruption))
        score.corruption, score.severity = name, int(severity)
    elif len(corruption) > 1:
        raise RuntimeError(f"one split mixes corruption/severity values {sorted(corruption, key=str)}")
    return score


def score_corruptions(splits: dict[str, SplitScore], clean_error: float | None, clean_source: str | None
                      ) -> dict[str, Any] | None:
    """ImageNet-C's summary over the corruption splits (None when there are none), with a note on
    where the clean error for relative mCE came from."""
    errors = {(s.corruption, s.severity): s.error for s in splits.values() if s.corruption is not None}
    if not errors:
        return None
    if clean_error is None:
        note = ("relative mCE needs the clean error: pass clean_error / --clean-error, or evaluate an "
                "ImageNet-1K folder in the same command")
    else:
        note = f"clean error from {clean_source}"
    return {**corruption_summary(errors, clean_error), "clean_error_note": note}


def resolve_clean_error(value: float | str | Path | EvalResult | dict | None) -> tuple[float | None, str | None]:
    """(clean top-1 error as a fraction, where it came from) from a number, ``"23.9%"``, an
    :class:`EvalResult`, a JSON document of results, or its file."""
    if value is None:
        return None, None
    if isinstance(value, (int, float)):
        number = float(value)
        if not 0 <= number <= 1:
            raise OptionsError(f"clean error {number} must be a fraction in [0, 1] (or a string ending in %)")
        return number, "given"
    if isinstance(value, EvalResult):
        return _clean_error_from_result(value.as_json())
    if isinstance(value, dict):
        return _clean_error_from_result(value)
    text = str(value).strip()
    if text.endswith("%"):
        return resolve_clean_error(float(text[:-1]) / 100)[0], "given"
    try:
        return resolve_clean_error(float(text))[0], "given"
    except ValueError as e:
        if not Path(text).exists():
            if "fraction" in str(e):
                raise
            raise OptionsError(f"clean error {text!r} is neither a number nor an eval JSON file") from None
    return _clean_error_from_result(json.loads(Path(text).read_text()), f" in {text}")


def _clean_error_from_result(result: dict, where: str = "") -> tuple[float, str]:
    """The ImageNet-1K validation top-1 error in a result's JSON (or a JSON document of several)."""
    for r in result.get("results", [result]):
        if r.get("dataset") == "imagenet1k" and "validation" in r.get("splits", {}):
            return float(r["splits"]["validation"]["error"]), f"imagenet1k validation of {r.get('root')}{where}"
    raise OptionsError("the result holds no imagenet1k validation split to take the clean error from")
