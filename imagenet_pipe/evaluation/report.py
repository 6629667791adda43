"""The report of an evaluation: the table printed on stdout and the JSON document of every result."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from .results import EvalResult, SplitScore


def results_document(results: Sequence[EvalResult]) -> dict[str, Any]:
    """What ``imagenet-pipe eval --json`` writes: the tool, the model and every folder's result,
    in strict JSON (a metric over zero images is null, not NaN)."""
    doc = {"tool": f"imagenet-pipe {__version__}", "model": results[0].model if results else None,
           "results": [r.as_json() for r in results]}
    return json_safe(doc)


def write_results_json(path: Path, results: Sequence[EvalResult]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results_document(results), indent=2) + "\n")


def json_safe(value: Any) -> Any:
    """NaN (a metric over zero images) becomes null: strict JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:6.2f}"


def format_table(result: EvalResult) -> str:
    """The human-readable report of one :func:`evaluate` result."""
    pre = result.preprocessing
    lines = [f"{result.dataset} ({result.root}) - model {result.model['spec']}",
             f"preprocessing: {pre['size']} px, crop_pct {pre['crop_pct']}, {pre['interpolation']}, "
             f"mean {tuple(round(v, 4) for v in pre['mean'])}, std {tuple(round(v, 4) for v in pre['std'])}"]
    lines += _split_lines(result.splits)
    if result.imagenet_c:
        lines += ["", *_corruption_lines(result.imagenet_c)]
    return "\n".join(lines)


def _split_lines(scores: dict[str, SplitScore]) -> list[str]:
    extra_cols = [c for c in ("top1_200", "top5_200", "real_top1", "real_top5")
                  if any(getattr(s, c) is not None for s in scores.values())]
    header = ["split", "images", "top1 %", "top5 %"] + [f"{c.replace('_', ' ')} %" for c in extra_cols]
    rows = [[name, str(s.count), _pct(s.top1), _pct(s.top5)] + [_pct(getattr(s, c)) for c in extra_cols]
            for name, s in scores.items()]
    lines = _grid(header, rows)
    excluded = {name: s.real_excluded for name, s in scores.items() if s.real_excluded}
    if excluded:
        counts = set(excluded.values())
        where = (f"{counts.pop()} in each of {len(excluded)} splits" if len(counts) == 1 and len(excluded) > 2
                 else ", ".join(f"{name} {n}" for name, n in excluded.items()))
        lines.append(f"ReaL: images with an empty label list left out: {where}")
    skipped = {name: len(s.skipped) for name, s in scores.items() if s.skipped}
    if skipped:
        lines.append("skipped bad samples: " + ", ".join(f"{name} {n}" for name, n in skipped.items()))
    return lines


def _corruption_lines(c: dict[str, Any]) -> list[str]:
    """ImageNet-C: error per corruption and severity, CE and relative CE, then mCE."""
    header = ["corruption", "err s1", "s2", "s3", "s4", "s5", "mean err", "CE %", "rel CE %"]
    rows = []
    for name, entry in c["corruptions"].items():
        errs = [_pct(entry["errors"].get(str(s))) for s in range(1, 6)]
        rows.append([name, *errs, _pct(entry["mean_error"]), _pct(entry["ce"]), _pct(entry.get("relative_ce"))])
    lines = _grid(header, rows)
    if "mce" in c:
        partial = "" if c["complete"] else f" (partial: {_partial(c)})"
        lines.append(f"mCE {_pct(c['mce']).strip()} %   relative mCE {_pct(c.get('relative_mce')).strip()} %   "
                     f"mean error {_pct(c['mean_error']).strip()} %{partial}")
    if "mce" in c["extra"]:
        lines.append(f"extra corruptions ({', '.join(c['extra']['corruptions_used'])}): mean CE "
                     f"{_pct(c['extra']['mce']).strip()} %, not part of mCE")
    clean = f" ({_pct(c['clean_error']).strip()} %)" if c["clean_error"] is not None else ""
    lines.append(c["clean_error_note"] + clean)
    return lines


def _partial(c: dict[str, Any]) -> str:
    used = c["corruptions_used"]
    parts = [f"{len(used)} of 15 benchmark corruptions"]
    short = [f"{n} {','.join(map(str, c['corruptions'][n]['severities']))}" for n in used
             if len(c["corruptions"][n]["severities"]) < 5]
    if short:
        parts.append("severities " + "; ".join(short))
    return ", ".join(parts)


def _grid(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return [fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in rows]
