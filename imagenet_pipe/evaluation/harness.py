"""``imagenet-pipe eval``: one evaluation harness for ImageNet-1K and its variants.

A model (see :mod:`.spec`) runs over the DALI evaluation loader (or the baseline loader) of every
requested split of a converted shard folder. Predictions are collected per sample key, joined with
each sample's json (read from the shards through their ``.idx`` files) and scored (:mod:`.scoring`,
:mod:`.metrics`):

* every split: top-1 / top-5 in the dataset's label space (1000 classes, or 21K's);
* ImageNet-R / -A: also 200-way top-1 / top-5 with the logits restricted to the 200 classes
  (``subset_indices`` from the manifest, target ``label_200``);
* samples carrying ``real_labels`` (IN-1K validation, ImageNet-C): ReaL top-1 / top-5 and the
  number of images left out for an empty list;
* ImageNet-C splits (``<corruption>-<severity>``): error per split, then per corruption the mean
  error, CE and relative CE, and mCE / relative mCE over the benchmark corruptions present (the 4
  extra ones are reported apart). Relative mCE needs the model's clean top-1 error: pass
  ``clean_error`` (a number, a previous result, or its JSON file), or evaluate an ImageNet-1K
  folder in the same :func:`evaluate_folders` call and its validation error is used.

Several processes (torchrun): every rank evaluates its exact-once share of each split; predictions
are gathered on rank 0, which checks that each sample was seen exactly once, computes the metrics
and broadcasts them, so every rank returns the same result. The caller owns the process group:
``torch.distributed`` must be initialised when the world size is above 1 (``imagenet-pipe eval``
does it under torchrun); one process needs none.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..errors import OptionsError
from ..loaders import DistInfo, LoaderConfig, dist_info, make_loader, resolve_config
from ..loaders.common import resolve_device
from ..loaders.shardset import ShardSet
from .folder import Folder, read_json_members
from .models import LoadedModel, load_model
from .options import EvalOptions
from .results import EvalResult, SplitScore
from .scoring import TOPK, RankOutputs, SplitPredictions, resolve_clean_error, score_corruptions, score_split

PREPROCESSING = ("size", "crop_pct", "interpolation", "mean", "std")


class Progress(Protocol):
    """What the evaluation loop reports images to (a tqdm bar)."""

    def update(self, n: int) -> object: ...


def evaluate(root: str | Path, model: str | torch.nn.Module | LoadedModel, options: EvalOptions | None = None, *,
             dist: DistInfo | None = None) -> EvalResult:
    """Evaluate ``model`` on the splits of one converted shard folder (see :class:`EvalOptions`);
    every rank returns the same result.

    ``model``: a spec string (:mod:`.spec`; zoo models with their pretrained weights), an
    ``nn.Module`` or a :class:`LoadedModel`. The module itself is used, not a copy: it is put in
    eval mode and moved to the loader's device (and to channels-last memory when the preset asks
    for it) in place, as ``nn.Module.to`` moves a module's own parameters; pass a copy to keep the
    original where it is. Under an NCCL process group the current CUDA device is set to this
    rank's GPU, where object collectives run. ``dist``: rank and world size (default: torchrun's
    environment).
    """
    options = options or EvalOptions()
    with Folder.open(root, options.cache_dir, options.cache_limit) as folder:
        return _evaluate_folder(folder, model, options, dist)


def _evaluate_folder(folder: Folder, model: str | torch.nn.Module | LoadedModel, options: EvalOptions,
                     dist: DistInfo | None) -> EvalResult:
    start = time.perf_counter()
    splits = folder.select(options.splits)
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    cfg, sources = resolve_preprocessing(options, loaded)
    loader_dtype, autocast_dtype = precision_dtypes(options.precision, cfg)
    dist = dist or dist_info()
    clean_error, clean_source = resolve_clean_error(options.clean_error)  # a bad value fails before the run
    run = _FolderRun(folder, loaded.module, replace(cfg, dtype=loader_dtype), autocast_dtype, options, dist,
               _distributed(dist))
    scores = run.all(splits)
    result = None
    if dist.rank == 0:
        result = EvalResult(
            root=folder.location, dataset=folder.dataset, class_list=folder.manifest.get("class_list"),
            num_classes=folder.num_classes, model=loaded.describe(),
            preprocessing={**{name: _plain(getattr(cfg, name)) for name in PREPROCESSING},
                           "resize_shorter": cfg.resize_shorter, "sources": sources},
            loader={"backend": options.backend, "batch_size": cfg.batch_size, "device": str(run.device),
                    "dtype": loader_dtype, "autocast": str(autocast_dtype).replace("torch.", "")
                    if autocast_dtype else None, "world_size": dist.world_size, "memory_format": cfg.memory_format},
            splits=scores, subset=run.subset_description(),
            imagenet_c=score_corruptions(scores, clean_error, clean_source))
        if options.save_logits is not None:
            Path(options.save_logits).parent.mkdir(parents=True, exist_ok=True)
            np.savez(options.save_logits, **run.saved)
            result.logits_file = str(options.save_logits)
        result.elapsed_s = round(time.perf_counter() - start, 3)
    return _broadcast(result, run.distributed)


def evaluate_folders(roots: Sequence[str | Path], model: str | torch.nn.Module | LoadedModel,
                     options: EvalOptions | None = None, *, dist: DistInfo | None = None) -> list[EvalResult]:
    """:func:`evaluate` on several shard folders with one model; results in the order given.

    An ImageNet-1K folder is evaluated first, so that its validation error is ImageNet-C's clean
    error when ``options.clean_error`` is not given. ``options.splits`` patterns apply to the
    folders holding matching splits (each folder must hold one); with several folders,
    ``save_logits`` ``out.npz`` becomes ``out.<dataset>.npz`` per folder.
    """
    options = options or EvalOptions()
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    folders = []
    for location in roots:  # their datasets and splits, read once
        with Folder.open(location, options.cache_dir, options.cache_limit) as folder:
            folders.append(folder)
    names = [f.dataset for f in folders]
    order = sorted(range(len(folders)), key=lambda i: folders[i].dataset != "imagenet1k")
    clean = options.clean_error
    results: list[EvalResult | None] = [None] * len(folders)
    for i in order:
        folder = folders[i]
        patterns = folder.matching(options.splits or ())
        if options.splits and not patterns:
            raise OptionsError(f"none of --splits {','.join(options.splits)} is a split of {folder.location}")
        save = options.save_logits
        if save is not None and len(folders) > 1:
            save = Path(save).with_name(f"{Path(save).stem}.{names[i]}"
                                        f"{'' if names.count(names[i]) == 1 else f'-{i}'}.npz")
        result = evaluate(folder.location, loaded, replace(options, splits=patterns or None, clean_error=clean,
                                                       save_logits=save), dist=dist)
        results[i] = result
        if clean is None and folder.dataset == "imagenet1k" and "validation" in result.splits:
            clean = result
    return [r for r in results if r is not None]


def resolve_preprocessing(options: EvalOptions, model: LoadedModel | None) -> tuple[LoaderConfig, dict[str, str]]:
    """The loader config, resolved once: preset < the model's declared preprocessing < the options'
    loader overrides. Returns it and, for each preprocessing field, where its value came from."""
    values: dict[str, Any] = {}
    sources = {name: f"preset {options.preset}" for name in PREPROCESSING}
    if model is not None and options.use_model_config:
        for name, value in model.data_config.items():
            values[name] = value
            sources[name] = f"model ({model.kind})"
    for name, value in options.loader_overrides().items():
        values[name] = value
        if name in sources:
            sources[name] = "override"
    cfg = resolve_config(options.preset, **values, mode="eval", return_keys=True)
    if cfg.memory_format == "nhwc":
        raise OptionsError("memory_format='nhwc' gives NHWC-shaped batches, which models do not take; "
                           "use 'channels_last'")
    return cfg, sources


def precision_dtypes(precision: str, cfg: LoaderConfig) -> tuple[str, torch.dtype | None]:
    """(loader dtype, autocast dtype or None) for a precision of :data:`.options.PRECISIONS`."""
    if precision == "auto":
        gpu = resolve_device(cfg, 0) is not None
        precision = "float16" if gpu else "float32"
    if precision == "float32":
        return "float32", None
    return precision, getattr(torch, precision)


@dataclass
class _FolderRun:
    """The splits of one folder, evaluated one after the other with one model and loader config."""

    folder: Folder
    module: torch.nn.Module
    cfg: LoaderConfig
    autocast: torch.dtype | None
    options: EvalOptions
    dist: DistInfo
    distributed: bool
    device: torch.device | None = None  # where the model is
    saved: dict[str, np.ndarray] = field(default_factory=dict)  # rank 0's logits to save, by npz name
    subset: list[int] | None = field(init=False)  # ImageNet-R / -A: the 200 classes' 1000-way indices
    subset_label: str | None = field(init=False)  # the json field holding the 200-way label

    def __post_init__(self) -> None:
        info = self.folder.dataset_info
        self.subset = info.get("subset_indices")
        self.subset_label = info.get("subset_label", "label_200") if self.subset else None

    def subset_description(self) -> dict[str, Any] | None:
        if not self.subset:
            return None
        return {"name": self.folder.dataset_info.get("subset"), "label": self.subset_label,
                "num_classes": len(self.subset)}

    def all(self, splits: list[str]) -> dict[str, SplitScore]:
        """Every split's score (on rank 0; empty elsewhere), with a progress bar on rank 0."""
        shardsets = {s: ShardSet.open(self.folder.root, s, store=self.folder.store) for s in splits}
        bar = self._progress_bar(shardsets.values())
        scores: dict[str, SplitScore] = {}
        try:
            for split, shards in shardsets.items():
                if bar is not None:
                    bar.set_description(f"{self.folder.dataset} {split}")
                predictions = self.split(split, shards, bar if not self.distributed else _RankBar(bar,
                                                                                               self.dist.world_size))
                if predictions is not None:
                    scores[split] = score_split(predictions, self.subset_label)
                    if self.options.save_logits is not None:
                        self.saved.update({f"{split}/keys": np.array(predictions.keys),
                                           f"{split}/labels": predictions.labels,
                                           f"{split}/logits": predictions.logits})
        finally:
            if bar is not None:
                bar.close()
        return scores

    def split(self, split: str, shards: ShardSet, bar: Progress | None) -> SplitPredictions | None:
        """This rank's share of one split run through the model; every rank's, merged, on rank 0."""
        loader = make_loader(shards, self.cfg, self.options.backend, self.dist)
        try:
            self._place_model(loader.device)
            subset = torch.as_tensor(self.subset, dtype=torch.long) if self.subset else None
            part = _run_split(loader, self.module, self.folder.num_classes, subset,
                              self.options.save_logits is not None, self.autocast, bar)
        finally:
            loader.close()
        start, end = shards.rank_range(self.dist.rank, self.dist.world_size)
        part.meta = read_json_members(shards, start, end)
        unknown = set(part.keys) - set(part.meta)
        if unknown:
            raise RuntimeError(f"{split}: the loader returned keys outside this rank's range, e.g. "
                               f"{sorted(unknown)[0]}")
        parts = _gather(part, self.dist, self.distributed)
        return SplitPredictions.merge(parts, split, shards.num_samples) if self.dist.rank == 0 else None

    def _place_model(self, device: torch.device) -> None:
        """The model on the loader's device (in place: nn.Module.to moves the module's own tensors)."""
        if device == self.device:
            return
        self.device = device
        self.module = self.module.to(device)
        if self.cfg.memory_format == "channels_last":  # the batches are channels-last: match them
            self.module = self.module.to(memory_format=torch.channels_last)

    def _progress_bar(self, shardsets):
        if not self.options.progress or self.dist.rank != 0:
            return None
        from tqdm import tqdm

        mine = sum(len(range(*ss.rank_range(self.dist.rank, self.dist.world_size))) for ss in shardsets)
        return tqdm(total=mine * self.dist.world_size if self.distributed else mine, unit="img", dynamic_ncols=True,
                    desc=f"{self.folder.dataset}", file=sys.stderr)


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
               autocast_dtype: torch.dtype | None, bar: Progress | None) -> RankOutputs:
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


# --- several processes: the caller's process group --------------------------------------------------

def _distributed(dist: DistInfo) -> bool:
    """True when predictions must be gathered, which needs the caller's process group."""
    if dist.world_size <= 1:
        return False
    import torch.distributed as tdist

    if not (tdist.is_available() and tdist.is_initialized()):
        raise OptionsError(f"evaluation on {dist.world_size} ranks needs an initialised torch.distributed process "
                           "group: call torch.distributed.init_process_group() first (imagenet-pipe eval does "
                           "it under torchrun)")
    if tdist.get_backend() == "nccl" and torch.cuda.is_available():
        torch.cuda.set_device(dist.local_rank % torch.cuda.device_count())  # object collectives need it
    return True


def _gather(obj: Any, dist: DistInfo, distributed: bool) -> list[Any]:
    """Every rank's ``obj`` on rank 0 (an empty list elsewhere)."""
    if not distributed:
        return [obj]
    import torch.distributed as tdist

    gathered = [None] * dist.world_size if dist.rank == 0 else None
    tdist.gather_object(obj, gathered, dst=0)
    return gathered or []


def _broadcast(obj: Any, distributed: bool) -> Any:
    if not distributed:
        return obj
    import torch.distributed as tdist

    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


class _RankBar:
    """Under torchrun rank 0 counts its own images for every rank (the others have no bar)."""

    def __init__(self, bar: Progress | None, world: int) -> None:
        self.bar, self.world = bar, world

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n * self.world)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
