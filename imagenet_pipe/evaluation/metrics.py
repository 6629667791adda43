"""Evaluation metrics over per-sample predictions (plain numpy, no model, no loader).

* top-k accuracy: the label is among the k highest logits.
* ImageNet-R / -A: logits restricted to the 200 classes' 1000-way indices (hendrycks' ``eval.py``
  mask), prediction = position among the 200, target = the 200-way label (``label_200``).
* ImageNet-ReaL (google-research/reassessed-imagenet, as timm's ``RealLabelsImagenet``): images
  whose label list is empty are left out; a top-k prediction is correct when any of its k classes
  is in the list.
* ImageNet-C (Hendrycks & Dietterich, ICLR 2019, section 3): with E_{s,c} the top-1 error at
  severity s of corruption c,
  ``CE_c = sum_s E_{s,c} / sum_s E^AlexNet_{s,c}``, ``mCE`` = mean of CE_c over the 15 benchmark
  corruptions; ``relative CE_c = sum_s (E_{s,c} - E_clean) / sum_s (E^AlexNet_{s,c} - E^AlexNet_clean)``
  and ``relative mCE`` its mean. The paper prints the relative CE as
  ``(sum_s E_{s,c} - E_clean) / (...)``; its Table 2 values are reproduced only when E_clean is
  subtracted from every severity's error (ResNet-50, Gaussian noise: 104 this way, 83 with a
  single subtraction), so that is what is computed. The sums run over the severities evaluated,
  with AlexNet's errors at those same severities, so a partial evaluation is still normalised
  like for like (and is reported as partial).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

BENCHMARK_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")  # held-out "validation" ones
SEVERITIES = (1, 2, 3, 4, 5)

# AlexNet top-1 error per corruption and severity 1..5, from the table "AlexNet ImageNet-C Error"
# ("Use these values to normalize raw corruption error to calculate mCE") in the README of
# github.com/hendrycks/robustness (added in commit 76d9393, 2019-10-10; removed from the README in
# 5aa129e, 2020-05-05). The table's "Average" column (e.g. 0.886428 for Gaussian noise, the
# ALEXNET_ERR list of google-research/augmix) is the mean of these five values.
ALEXNET_ERRORS: dict[str, tuple[float, float, float, float, float]] = {
    "gaussian_noise": (0.69528, 0.82542, 0.93554, 0.98138, 0.99452),
    "shot_noise": (0.71224, 0.85108, 0.93574, 0.98182, 0.99146),
    "impulse_noise": (0.78374, 0.89808, 0.94870, 0.98720, 0.99548),
    "defocus_blur": (0.65624, 0.73202, 0.85036, 0.91364, 0.94714),
    "glass_blur": (0.64308, 0.75054, 0.88806, 0.91622, 0.93344),
    "motion_blur": (0.58430, 0.70048, 0.82108, 0.89750, 0.92638),
    "zoom_blur": (0.70008, 0.76992, 0.80784, 0.84198, 0.87198),
    "snow": (0.71726, 0.88392, 0.86468, 0.91870, 0.94952),
    "frost": (0.61390, 0.79734, 0.88790, 0.89942, 0.93430),
    "fog": (0.67474, 0.76050, 0.84378, 0.87260, 0.94500),
    "brightness": (0.45140, 0.48502, 0.54048, 0.62166, 0.72440),
    "contrast": (0.64548, 0.76150, 0.88874, 0.97760, 0.99270),
    "elastic_transform": (0.52596, 0.70116, 0.55686, 0.64076, 0.80554),
    "pixelate": (0.52218, 0.54620, 0.73728, 0.87092, 0.91262),
    "jpeg_compression": (0.51002, 0.54718, 0.57294, 0.65458, 0.74778),
    "speckle_noise": (0.66192, 0.74440, 0.90246, 0.94548, 0.97268),
    "gaussian_blur": (0.54732, 0.70444, 0.82574, 0.89864, 0.95940),
    "spatter": (0.47196, 0.62194, 0.75052, 0.84132, 0.90182),
    "saturate": (0.59342, 0.65514, 0.51174, 0.70834, 0.82260),
}
# AlexNet's clean ImageNet validation top-1 error: 43.5% in Table 1 ("Error" column) of Hendrycks &
# Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and Perturbations"
# (ICLR 2019; the paper PDF in hendrycks/robustness, commit de7653a). Printed to one decimal.
ALEXNET_CLEAN_ERROR = 0.435


def topk_accuracy(topk: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose label is among the first ``k`` predictions (``topk``: [N, >=k], best first)."""
    topk, labels = np.asarray(topk), np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    return float((topk[:, :k] == labels[:, None]).any(axis=1).mean())


def real_accuracy(topk: np.ndarray, real_labels: Sequence[Sequence[int]], k: int = 1) -> tuple[float, int, int]:
    """ImageNet-ReaL top-k: (accuracy over images with a non-empty label list, images counted,
    images left out because their list is empty)."""
    hits, used = 0, 0
    for row, valid in zip(np.asarray(topk)[:, :k], real_labels, strict=True):
        if not valid:
            continue
        used += 1
        hits += bool(set(int(p) for p in row) & set(int(v) for v in valid))
    excluded = len(real_labels) - used
    return (hits / used if used else float("nan")), used, excluded


def corruption_summary(errors: Mapping[tuple[str, int], float], clean_error: float | None = None) -> dict[str, Any]:
    """ImageNet-C summary from top-1 errors per (corruption, severity).

    Returns per-corruption mean error, CE and relative CE (relative needs ``clean_error``, the
    model's clean validation top-1 error), then ``mce`` / ``relative_mce`` over the benchmark
    corruptions present, ``complete`` (all 15 x 5 present), the corruptions used, and the same
    for the 4 extra corruptions under ``extra`` (never part of mCE).
    """
    unknown = sorted({c for c, _ in errors} - set(ALEXNET_ERRORS))
    if unknown:
        raise ValueError(f"no AlexNet reference errors for corruption(s) {unknown}")
    per: dict[str, dict[str, Any]] = {}
    for corruption in ALEXNET_ERRORS:
        sevs = sorted(s for c, s in errors if c == corruption)
        if not sevs:
            continue
        model = np.array([errors[(corruption, s)] for s in sevs], dtype=np.float64)
        alex = np.array([ALEXNET_ERRORS[corruption][s - 1] for s in sevs], dtype=np.float64)
        entry: dict[str, Any] = {
            "severities": sevs,
            "errors": {str(s): float(e) for s, e in zip(sevs, model, strict=True)},
            "mean_error": float(model.mean()),
            "alexnet_mean_error": float(alex.mean()),
            "ce": float(model.sum() / alex.sum()),
        }
        if clean_error is not None:
            entry["relative_ce"] = float((model - clean_error).sum() / (alex - ALEXNET_CLEAN_ERROR).sum())
        per[corruption] = entry

    def block(names: Iterable[str]) -> dict[str, Any]:
        used = [c for c in names if c in per]
        out: dict[str, Any] = {"corruptions_used": used}
        if not used:
            return out
        out["mce"] = float(np.mean([per[c]["ce"] for c in used]))
        out["mean_error"] = float(np.mean([per[c]["mean_error"] for c in used]))  # test.py's unnormalised mCE
        if clean_error is not None:
            out["relative_mce"] = float(np.mean([per[c]["relative_ce"] for c in used]))
        return out

    bench = block(BENCHMARK_CORRUPTIONS)
    bench["complete"] = all(per.get(c, {}).get("severities") == list(SEVERITIES) for c in BENCHMARK_CORRUPTIONS)
    extra = block(EXTRA_CORRUPTIONS)
    extra["complete"] = all(per.get(c, {}).get("severities") == list(SEVERITIES) for c in EXTRA_CORRUPTIONS)
    return {
        "corruptions": per,
        **bench,
        "extra": extra,
        "clean_error": clean_error,
        "alexnet_clean_error": ALEXNET_CLEAN_ERROR,
        "reference": "AlexNet errors: hendrycks/robustness README (2019-10-10 .. 2020-05-05); "
                     "clean error: Hendrycks & Dietterich (ICLR 2019) Table 1",
    }
