"""``imagenet-pipe eval``: one evaluation harness for ImageNet-1K and its variants.

A model (see :mod:`imagenet_pipe.models`) runs over the DALI evaluation loader (or the baseline
loader) of every requested split of a converted shard folder. Predictions are collected per sample
key, joined with each sample's json (read from the shards through their ``.idx`` files) and scored
(:mod:`imagenet_pipe.metrics`):

* every split: top-1 / top-5 in the dataset's label space (1000 classes, or 21K's);
* ImageNet-R / -A: also 200-way top-1 / top-5 with the logits restricted to the 200 classes
  (``subset_indices`` from the manifest, target ``label_200``);
* samples carrying ``real_labels`` (IN-1K validation, ImageNet-C): ReaL top-1 / top-5 and the
  number of images left out for an empty list;
* ImageNet-C splits (``<corruption>-<severity>``): error per split, then per corruption the mean
  error, CE and relative CE, and mCE / relative mCE over the benchmark corruptions present (the 4
  extra ones are reported apart). Relative mCE needs the model's clean top-1 error: pass
  ``clean_error`` (a number, a previous result, or its JSON file), or on the command line give an
  ImageNet-1K folder beside the ImageNet-C one and its validation error is used.

Under torchrun every rank evaluates its exact-once share of each split; predictions are gathered
on rank 0, which checks that each sample was seen exactly once, computes the metrics and
broadcasts them, so every rank returns the same result. World size 1 needs no process group.
"""

from __future__ import annotations

import atexit
import fnmatch
import json
import math
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .errors import OptionsError, ShardError
from .eval_cli import PRECISIONS
from .indexes import read_json
from .loaders import DistInfo, LoaderConfig, dist_info, make_loader, resolve_config
from .loaders.common import resolve_device
from .loaders.shardset import ShardSet
from .metrics import corruption_summary, real_accuracy, topk_accuracy
from .models import LoadedModel, load_model
from .shards import idx_name, iter_samples, read_idx

TOPK = 5
PREPROCESSING = ("size", "crop_pct", "interpolation", "mean", "std")


# --- the shard folder ------------------------------------------------------------------------

@dataclass(frozen=True)
class Folder:
    root: Path
    info: dict
    manifest: dict

    @classmethod
    def open(cls, root: str | Path) -> Folder:
        root = Path(root)
        info_path = root / "_info.json"
        if not info_path.exists():
            raise ShardError(f"{info_path} not found: point eval at a folder written by `imagenet-pipe convert`")
        manifest_path = root / "manifest.json"
        manifest = read_json(manifest_path) if manifest_path.exists() else {}
        return cls(root, read_json(info_path), manifest)

    @property
    def dataset(self) -> str:
        return self.manifest.get("dataset") or self.info.get("name", self.root.name)

    @property
    def num_classes(self) -> int:
        return int(self.manifest.get("num_classes") or self.info["num_classes"])

    @property
    def dataset_info(self) -> dict:
        return self.manifest.get("dataset_info") or {}

    def default_splits(self) -> list[str]:
        """Everything but training splits and alternative-label views of another split."""
        splits = self.info.get("splits", {})
        return [s for s, meta in splits.items() if not s.startswith("train") and "alt_label" not in meta]

    def select(self, patterns: Sequence[str] | None) -> list[str]:
        available = list(self.info.get("splits", {}))
        if not patterns:
            chosen = self.default_splits()
            if not chosen:
                raise OptionsError(f"{self.root} has no evaluation split (has: {', '.join(available)}); name one "
                                 "with --splits")
            return chosen
        chosen = []
        for pattern in patterns:
            matches = [s for s in available if fnmatch.fnmatchcase(s, pattern)]
            if not matches:
                raise OptionsError(f"split {pattern!r} matches none of {self.root}'s splits ({', '.join(available)})")
            chosen += [s for s in matches if s not in chosen]
        return chosen


def read_json_members(shards: ShardSet, start: int, end: int) -> dict[str, dict]:
    """key -> parsed ``<key>.json`` for the global samples [start, end) of a split. Uses the DALI
    ``.idx`` offsets to read only the json members (the images are not read again)."""
    out: dict[str, dict] = {}
    for path, first, count in shards.segments(start, end):
        path = Path(path)
        idx = path.with_name(idx_name(path.name))
        if idx.exists():
            with open(path, "rb") as f:
                for components in read_idx(idx)[first:first + count]:
                    key = components[0].name.rsplit("/", 1)[-1].split(".", 1)[0]
                    member = next((c for c in components if c.ext == "json"), None)
                    if member is None:
                        out[key] = {}
                        continue
                    f.seek(member.offset)
                    out[key] = json.loads(f.read(member.size))
        else:
            for i, (key, sample) in enumerate(iter_samples(path)):
                if i >= first + count:
                    break
                if i >= first:
                    out[key] = json.loads(sample["json"]) if "json" in sample else {}
    return out


# --- running the model -----------------------------------------------------------------------

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


def _logits_of(output: Any) -> torch.Tensor:
    """Models that return (logits, aux...) or {"logits": ...} are accepted too."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict) and "logits" in output:
        return output["logits"]
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"the model returned {type(output).__name__}; expected a logits tensor")


def _run_split(loader, model: torch.nn.Module, num_classes: int, subset: torch.Tensor | None, keep_logits: bool,
               autocast_dtype: torch.dtype | None, bar) -> RankOutputs:
    out = RankOutputs()
    t0 = time.perf_counter()
    device = loader.device
    sub_index = subset.to(device) if subset is not None else None
    amp = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
    with torch.inference_mode(), amp:
        for batch in loader:
            logits = _logits_of(model(batch.images)).float()
            if logits.ndim != 2 or logits.shape[1] != num_classes:
                raise OptionsError(f"the model gives logits of shape {tuple(logits.shape)}, but the dataset has "
                                 f"{num_classes} classes")
            out.keys += batch.keys
            out.labels.append(batch.labels.cpu().numpy())
            out.topk.append(logits.topk(min(TOPK, num_classes), dim=1).indices.cpu().numpy())
            if sub_index is not None:
                sub = logits.index_select(1, sub_index)  # hendrycks' eval.py mask: keep the 200 columns
                out.sub_topk.append(sub.topk(min(TOPK, sub.shape[1]), dim=1).indices.cpu().numpy())
            if keep_logits:
                out.logits.append(logits.cpu().numpy())
            if bar is not None:
                bar.update(len(batch.keys))
    out.skipped = list(getattr(loader, "skipped", []))
    out.seconds = time.perf_counter() - t0
    return out


def _concat(parts: list[np.ndarray], width: int | None = None, dtype=np.int64) -> np.ndarray:
    if parts:
        return np.concatenate(parts).astype(dtype, copy=False)
    return np.zeros((0,) if width is None else (0, width), dtype=dtype)


# --- distributed helpers ----------------------------------------------------------------------

def _process_group(dist: DistInfo) -> bool:
    """True when predictions must be gathered; starts a gloo group under torchrun if none exists."""
    if dist.world_size <= 1:
        return False
    import torch.distributed as tdist

    if not tdist.is_initialized():
        # gloo: the gathered predictions are small Python objects, and it works with or without CUDA
        tdist.init_process_group(backend="gloo", rank=dist.rank, world_size=dist.world_size)
        atexit.register(tdist.destroy_process_group)
    elif tdist.get_backend() == "nccl" and torch.cuda.is_available():
        torch.cuda.set_device(dist.local_rank % torch.cuda.device_count())  # object collectives need it
    return True


def _gather(obj: Any, dist: DistInfo, distributed: bool) -> list[Any] | None:
    """Every rank's ``obj`` on rank 0 (None elsewhere)."""
    if not distributed:
        return [obj]
    import torch.distributed as tdist

    gathered = [None] * dist.world_size if dist.rank == 0 else None
    tdist.gather_object(obj, gathered, dst=0)
    return gathered


def _broadcast(obj: Any, distributed: bool) -> Any:
    if not distributed:
        return obj
    import torch.distributed as tdist

    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


# --- scoring -----------------------------------------------------------------------------------

def _merge(parts: list[RankOutputs], split: str, expected: int) -> dict[str, Any]:
    keys = [k for p in parts for k in p.keys]
    skipped = [s for p in parts for s in p.skipped]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise RuntimeError(f"{split}: sample {dup} was evaluated more than once")
    if len(keys) + len(skipped) != expected:
        raise RuntimeError(f"{split}: {len(keys)} samples evaluated and {len(skipped)} skipped, but the split "
                           f"has {expected}")
    order = np.argsort(np.array(keys, dtype=object)) if keys else np.zeros(0, dtype=np.int64)
    merged = {
        "keys": [keys[i] for i in order],
        "labels": _concat([a for p in parts for a in p.labels])[order],
        "topk": _concat([a for p in parts for a in p.topk], TOPK)[order],
        "sub_topk": _concat([a for p in parts for a in p.sub_topk], TOPK)[order]
        if any(p.sub_topk for p in parts) else None,
        "logits": _concat([a for p in parts for a in p.logits], dtype=np.float32)[order]
        if any(p.logits for p in parts) else None,
        "meta": {k: v for p in parts for k, v in p.meta.items()},
        "skipped": skipped,
        "seconds": max((p.seconds for p in parts), default=0.0),
    }
    return merged


def score_split(merged: dict[str, Any], subset_label: str | None) -> dict[str, Any]:
    """Metrics of one split from its merged predictions and sample metadata."""
    keys, labels, topk = merged["keys"], merged["labels"], merged["topk"]
    meta = [merged["meta"].get(k, {}) for k in keys]
    for key, label, m in zip(keys, labels, meta, strict=True):
        if "label" in m and int(m["label"]) != int(label):  # the loader read .cls, the json says otherwise
            raise RuntimeError(f"sample {key}: label {label} from .cls but {m['label']} in its json")
    n = len(keys)
    result: dict[str, Any] = {"count": n, "top1": topk_accuracy(topk, labels, 1),
                              "top5": topk_accuracy(topk, labels, TOPK)}
    result["error"] = 1.0 - result["top1"] if n else float("nan")
    if merged["sub_topk"] is not None and subset_label:
        missing = [k for k, m in zip(keys, meta, strict=True) if subset_label not in m]
        if missing:
            raise RuntimeError(f"sample {missing[0]} has no {subset_label!r} in its json")
        target = np.array([int(m[subset_label]) for m in meta], dtype=np.int64)
        result["top1_200"] = topk_accuracy(merged["sub_topk"], target, 1)
        result["top5_200"] = topk_accuracy(merged["sub_topk"], target, TOPK)
    if n and all("real_labels" in m for m in meta):
        real = [m["real_labels"] for m in meta]
        result["real_top1"], result["real_count"], result["real_excluded"] = real_accuracy(topk, real, 1)
        result["real_top5"] = real_accuracy(topk, real, TOPK)[0]
    corruption = {(m.get("corruption"), m.get("severity")) for m in meta}
    if n and len(corruption) == 1 and None not in next(iter(corruption)):
        result["corruption"], result["severity"] = next(iter(corruption))
        result["severity"] = int(result["severity"])
    elif len(corruption) > 1:
        raise RuntimeError(f"one split mixes corruption/severity values {sorted(corruption, key=str)}")
    if merged["skipped"]:
        result["skipped"] = [list(s) for s in merged["skipped"]]
    result["seconds"] = round(merged["seconds"], 3)
    return result


def resolve_clean_error(value: float | str | Path | dict | None) -> tuple[float | None, str | None]:
    """(clean top-1 error as a fraction, where it came from) from a number, ``"23.9%"``, an eval
    result dict, or its JSON file."""
    if value is None:
        return None, None
    if isinstance(value, (int, float)):
        number = float(value)
        if not 0 <= number <= 1:
            raise OptionsError(f"clean error {number} must be a fraction in [0, 1] (or a string ending in %)")
        return number, "given"
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
    """The ImageNet-1K validation top-1 error in an ``evaluate`` result (or a CLI JSON of several)."""
    for r in result.get("results", [result]):
        if r.get("dataset") == "imagenet1k" and "validation" in r.get("splits", {}):
            return float(r["splits"]["validation"]["error"]), f"imagenet1k validation of {r.get('root')}{where}"
    raise OptionsError("the result holds no imagenet1k validation split to take the clean error from")


# --- the public door ------------------------------------------------------------------------------

def resolve_preprocessing(preset: str | Path | None, model: LoadedModel | None, use_model_config: bool = True,
                          **overrides: Any) -> tuple[LoaderConfig, dict[str, str]]:
    """The loader config, resolved once: preset < the model's declared preprocessing < overrides.
    Returns it and, for each preprocessing field, where its value came from."""
    for name in ("mode", "dtype", "return_keys"):
        if overrides.get(name) is not None:
            raise OptionsError(f"{name} is set by evaluate itself (use precision= for the dtype)")
    values: dict[str, Any] = {}
    sources = {name: f"preset {preset or 'eval-224'}" for name in PREPROCESSING}
    if model is not None and use_model_config:
        for name, value in model.data_config.items():
            values[name] = value
            sources[name] = f"model ({model.kind})"
    for name, value in overrides.items():
        if value is not None:
            values[name] = value
            if name in sources:
                sources[name] = "override"
    cfg = resolve_config(preset or "eval-224", **values, mode="eval", return_keys=True)
    if cfg.memory_format == "nhwc":
        raise OptionsError("memory_format='nhwc' gives NHWC-shaped batches, which models do not take; "
                         "use 'channels_last'")
    return cfg, sources


def _precision(precision: str, cfg: LoaderConfig) -> tuple[str, torch.dtype | None]:
    """(loader dtype, autocast dtype or None)."""
    if precision not in PRECISIONS:
        raise OptionsError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision == "auto":
        gpu = resolve_device(cfg, 0) is not None
        precision = "float16" if gpu else "float32"
    if precision == "float32":
        return "float32", None
    return precision, getattr(torch, precision)


def evaluate(root: str | Path, model: str | torch.nn.Module | LoadedModel, splits: Sequence[str] | None = None,
             preset: str | Path | None = "eval-224", *, backend: str = "dali", precision: str = "auto",
             clean_error: float | str | Path | dict | None = None, save_logits: str | Path | None = None,
             use_model_config: bool = True, progress: bool = True, dist: DistInfo | None = None,
             **loader_overrides: Any) -> dict[str, Any]:
    """Evaluate ``model`` on the splits of one converted shard folder; returns the result dict
    (also what ``imagenet-pipe eval --json`` writes for it).

    ``model``: a spec string (:func:`imagenet_pipe.models.load_model`), an ``nn.Module`` or a
    :class:`LoadedModel`. ``splits``: names or glob patterns (default: every split that is not
    ``train*`` or an alternative-label view). Preprocessing: ``preset``, then the model's own data
    config (timm / ``pretrained_cfg``) unless ``use_model_config=False``, then ``loader_overrides``
    (``size``, ``crop_pct``, ``interpolation``, ``mean``, ``std``, ``batch_size``, ``device``, ...).
    ``precision``: ``auto`` (float16 autocast on a GPU, float32 on the CPU), ``float32``,
    ``float16`` or ``bfloat16``. ``clean_error``: the model's clean top-1 error for ImageNet-C's
    relative mCE (a fraction, ``"23.9%"``, a previous result or its JSON file). ``save_logits``:
    an ``.npz`` written by rank 0 with ``<split>/keys``, ``<split>/labels`` and ``<split>/logits``
    (float32, sorted by key).
    """
    t_start = time.perf_counter()
    folder = Folder.open(root)
    chosen = folder.select([splits] if isinstance(splits, str) else splits)
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    cfg, sources = resolve_preprocessing(preset, loaded, use_model_config, **loader_overrides)
    loader_dtype, autocast_dtype = _precision(precision, cfg)
    dist = dist or dist_info()
    distributed = _process_group(dist)
    clean_value, clean_source = resolve_clean_error(clean_error)

    info = folder.dataset_info
    subset = info.get("subset_indices")
    subset_label = info.get("subset_label", "label_200") if subset else None
    subset_t = torch.as_tensor(subset, dtype=torch.long) if subset else None
    keep_logits = save_logits is not None
    loader_cfg = replace(cfg, mode="eval", return_keys=True, dtype=loader_dtype)

    shardsets = {s: ShardSet.open(folder.root, s) for s in chosen}
    mine = sum(len(range(*ss.rank_range(dist.rank, dist.world_size))) for ss in shardsets.values())
    bar = None
    if progress and dist.rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=mine * dist.world_size if distributed else mine, unit="img", dynamic_ncols=True,
                   desc=f"{folder.dataset}", file=sys.stderr)
    module = loaded.module
    device = None
    split_results: dict[str, dict] = {}
    saved: dict[str, np.ndarray] = {}
    try:
        for split in chosen:
            if bar is not None:
                bar.set_description(f"{folder.dataset} {split}")
            loader = make_loader(shardsets[split], loader_cfg, backend, dist)
            try:
                if device != loader.device:
                    device = loader.device
                    module = module.to(device)
                    if cfg.memory_format == "channels_last":  # the batches are channels-last: match them
                        module = module.to(memory_format=torch.channels_last)
                part = _run_split(loader, module, folder.num_classes, subset_t, keep_logits, autocast_dtype,
                                  bar if not distributed else _RankBar(bar, dist.world_size))
            finally:
                loader.close()
            start, end = shardsets[split].rank_range(dist.rank, dist.world_size)
            part.meta = read_json_members(shardsets[split], start, end)
            unknown = set(part.keys) - set(part.meta)
            if unknown:
                raise RuntimeError(f"{split}: the loader returned keys outside this rank's range, e.g. "
                                   f"{sorted(unknown)[0]}")
            parts = _gather(part, dist, distributed)
            if dist.rank == 0:
                merged = _merge(parts, split, shardsets[split].num_samples)
                split_results[split] = score_split(merged, subset_label)
                if keep_logits:
                    saved[f"{split}/keys"] = np.array(merged["keys"])
                    saved[f"{split}/labels"] = merged["labels"]
                    saved[f"{split}/logits"] = merged["logits"]
    finally:
        if bar is not None:
            bar.close()

    result: dict[str, Any] | None = None
    if dist.rank == 0:
        result = {
            "tool": f"imagenet-pipe {__version__}",
            "root": str(folder.root),
            "dataset": folder.dataset,
            "class_list": folder.manifest.get("class_list"),
            "num_classes": folder.num_classes,
            "model": loaded.describe(),
            "preprocessing": {
                **{name: _plain(getattr(cfg, name)) for name in PREPROCESSING},
                "resize_shorter": cfg.resize_shorter,
                "sources": sources,
            },
            "loader": {"backend": backend, "batch_size": cfg.batch_size, "device": str(device),
                       "dtype": loader_dtype, "autocast": str(autocast_dtype).replace("torch.", "")
                       if autocast_dtype else None, "world_size": dist.world_size,
                       "memory_format": cfg.memory_format},
            "splits": split_results,
            "counts": {s: r["count"] for s, r in split_results.items()},
        }
        if subset:
            result["subset"] = {"name": info.get("subset"), "label": subset_label, "num_classes": len(subset)}
        errors = {(r["corruption"], r["severity"]): r["error"] for r in split_results.values() if "corruption" in r}
        if errors:
            if clean_value is None:
                note = ("relative mCE needs the clean error: pass clean_error / --clean-error, or evaluate an "
                        "ImageNet-1K folder in the same command")
            else:
                note = f"clean error from {clean_source}"
            result["imagenet_c"] = {**corruption_summary(errors, clean_value), "clean_error_note": note}
        if keep_logits:
            Path(save_logits).parent.mkdir(parents=True, exist_ok=True)
            np.savez(save_logits, **saved)
            result["logits_file"] = str(save_logits)
        result["elapsed_s"] = round(time.perf_counter() - t_start, 3)
    return _broadcast(result, distributed)


class _RankBar:
    """Under torchrun rank 0 counts its own images for every rank (the others have no bar)."""

    def __init__(self, bar, world: int) -> None:
        self.bar, self.world = bar, world

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n * self.world)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _json_safe(value: Any) -> Any:
    """NaN (a metric over zero images) becomes null: strict JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


# --- output -------------------------------------------------------------------------------------

def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:6.2f}"


def format_table(result: dict[str, Any]) -> str:
    """The human-readable report of one ``evaluate`` result."""
    lines = [f"{result['dataset']} ({result['root']}) - model {result['model']['spec']}"]
    pre = result["preprocessing"]
    lines.append(f"preprocessing: {pre['size']} px, crop_pct {pre['crop_pct']}, {pre['interpolation']}, "
                 f"mean {tuple(round(v, 4) for v in pre['mean'])}, std {tuple(round(v, 4) for v in pre['std'])}")
    splits = result["splits"]
    extra_cols = [c for c in ("top1_200", "top5_200", "real_top1", "real_top5") if any(c in r for r in splits.values())]
    header = ["split", "images", "top1 %", "top5 %"] + [f"{c.replace('_', ' ')} %" for c in extra_cols]
    rows = [[s, str(r["count"]), _pct(r["top1"]), _pct(r["top5"])] + [_pct(r.get(c)) for c in extra_cols]
            for s, r in splits.items()]
    lines += _grid(header, rows)
    excluded = {s: r["real_excluded"] for s, r in splits.items() if r.get("real_excluded")}
    if excluded:
        counts = set(excluded.values())
        where = (f"{counts.pop()} in each of {len(excluded)} splits" if len(counts) == 1 and len(excluded) > 2
                 else ", ".join(f"{s} {n}" for s, n in excluded.items()))
        lines.append(f"ReaL: images with an empty label list left out: {where}")
    skipped = {s: len(r["skipped"]) for s, r in splits.items() if r.get("skipped")}
    if skipped:
        lines.append("skipped bad samples: " + ", ".join(f"{s} {n}" for s, n in skipped.items()))
    c = result.get("imagenet_c")
    if c:
        lines.append("")
        header = ["corruption", "err s1", "s2", "s3", "s4", "s5", "mean err", "CE %", "rel CE %"]
        rows = []
        for name, entry in c["corruptions"].items():
            errs = [_pct(entry["errors"].get(str(s))) for s in range(1, 6)]
            rows.append([name, *errs, _pct(entry["mean_error"]), _pct(entry["ce"]), _pct(entry.get("relative_ce"))])
        lines += _grid(header, rows)
        if "mce" in c:
            partial = "" if c["complete"] else f" (partial: {_partial(c)})"
            lines.append(f"mCE {_pct(c['mce']).strip()} %   relative mCE {_pct(c.get('relative_mce')).strip()} %   "
                         f"mean error {_pct(c['mean_error']).strip()} %{partial}")
        if "mce" in c["extra"]:
            lines.append(f"extra corruptions ({', '.join(c['extra']['corruptions_used'])}): mean CE "
                         f"{_pct(c['extra']['mce']).strip()} %, not part of mCE")
        lines.append(c["clean_error_note"] + (f" ({_pct(c['clean_error']).strip()} %)" if c["clean_error"] is not None
                                             else ""))
    return "\n".join(lines)


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


# --- command line ------------------------------------------------------------------------------------
