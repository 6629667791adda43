"""Building what a model spec names (:mod:`.spec`): an ``nn.Module`` in eval mode, plus the
preprocessing the model declares (if it declares any).

Preprocessing comes from timm's pretrained data config, from torchvision's weights transforms, or
from a timm-style ``pretrained_cfg`` dict attribute on the module (``input_size``, ``crop_pct``,
``interpolation``, ``mean``, ``std``); factories and pickled modules can carry one (see
``tools/models.py``), and a TorchScript archive can carry it as the extra file
``pretrained_cfg.json``. Unpickling a ``torch.save`` file runs code from it: load only files you
trust. A bare ``state_dict`` is refused (weights without an architecture).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..loaders.config import INTERPOLATIONS
from .spec import SPEC_HELP, ModelSpec, ModelSpecError, parse_model_spec

PRETRAINED_CFG_FILE = "pretrained_cfg.json"  # TorchScript extra file with a timm-style config


@dataclass
class LoadedModel:
    """A built model and what the evaluation report says about it."""

    module: nn.Module
    spec: str
    kind: str  # builtin, timm, torchvision, torchscript, pickle, factory, module
    data_config: dict[str, Any] = field(default_factory=dict)  # loader options the model asks for
    notes: list[str] = field(default_factory=list)  # what could not be honoured, for the report

    def describe(self) -> dict[str, Any]:
        params = sum(p.numel() for p in self.module.parameters()) if hasattr(self.module, "parameters") else None
        return {"spec": self.spec, "kind": self.kind, "class": type(self.module).__name__,
                "parameters": params, "data_config": self.data_config, "notes": self.notes}


def load_model(spec: str | ModelSpec | nn.Module, *, pretrained: bool = True,
               num_classes: int | None = None) -> LoadedModel:
    """Build what ``spec`` names (see :mod:`.spec`), or wrap a module given directly; the module is
    put in eval mode (``nn.Module.eval`` works in place, also on a module passed in).

    ``pretrained``: zoo models (timm, torchvision) with their published weights (evaluation) or
    freshly initialised (the profiler, the training example); ``small`` always starts from random
    weights. ``num_classes``: the head's width for the built-in CNN and zoo models (default: the
    model's own, 1000); files and factories are taken as they are.
    """
    if isinstance(spec, nn.Module):
        return _finish(spec, f"<{type(spec).__name__} object>", "module")
    parsed = spec if isinstance(spec, ModelSpec) else parse_model_spec(spec)
    head = {"num_classes": num_classes} if num_classes else {}
    if parsed.kind == "small":
        notes = ["random weights: the built-in small CNN is not trained"] if pretrained else []
        return _finish(SmallCNN(**head), parsed.text, "builtin", notes=notes)
    if parsed.kind == "timm":
        return _from_timm(parsed, pretrained, head)
    if parsed.kind == "torchvision":
        return _from_torchvision(parsed, pretrained, head)
    if parsed.kind == "file":
        return _from_file(Path(parsed.target), parsed.text)
    return _from_factory(parsed.text)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """The built-in model (spec ``small``): six strided 3x3 conv blocks and a linear head, cheap
    enough for CPU runs. The profiler's model step, the training example and the tests use it."""

    def __init__(self, num_classes: int = 1000, width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(_block(3, w), _block(w, w), _block(w, 2 * w), _block(2 * w, 2 * w),
                                      _block(2 * w, 4 * w), _block(4 * w, 8 * w))
        self.head = nn.Linear(8 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


def _finish(module: nn.Module, spec: str, kind: str, data_config: dict | None = None,
            notes: list[str] | None = None) -> LoadedModel:
    if not isinstance(module, nn.Module):
        raise ModelSpecError(f"{spec!r} gave a {type(module).__name__}, not a torch.nn.Module")
    module.eval()
    notes = list(notes or [])
    if data_config is None:
        data_config, more = config_from_pretrained_cfg(getattr(module, "pretrained_cfg", None))
        notes += more
    return LoadedModel(module, spec, kind, data_config, notes)


def config_from_pretrained_cfg(cfg: Any) -> tuple[dict[str, Any], list[str]]:
    """timm-style ``pretrained_cfg`` / data config -> loader options (size, crop_pct, interpolation,
    mean, std), and notes on what the loader cannot do."""
    if not isinstance(cfg, dict):
        return {}, []
    out: dict[str, Any] = {}
    notes: list[str] = []
    size = cfg.get("test_input_size") or cfg.get("input_size")
    if size:
        h, w = int(size[-2]), int(size[-1])
        if h != w:
            notes.append(f"non-square input {h}x{w}: evaluating at {w}x{w}")
        out["size"] = w
    crop_pct = cfg.get("test_crop_pct") or cfg.get("crop_pct")
    if crop_pct:
        out["crop_pct"] = float(crop_pct)
    interpolation = cfg.get("interpolation")
    if interpolation in INTERPOLATIONS:
        out["interpolation"] = interpolation
    elif interpolation:
        notes.append(f"interpolation {interpolation!r} is not available in the loader: preset value kept")
    for name in ("mean", "std"):
        if cfg.get(name) is not None:
            values = tuple(float(v) for v in cfg[name])
            out[name] = values * 3 if len(values) == 1 else values
    crop_mode = cfg.get("crop_mode")
    if crop_mode not in (None, "center"):
        notes.append(f"crop_mode {crop_mode!r} is not available in the loader: center crop used")
    return out, notes


def _from_timm(spec: ModelSpec, pretrained: bool, head: dict[str, int]) -> LoadedModel:
    try:
        import timm
        from timm.data import resolve_data_config
    except ImportError:
        raise ModelSpecError(f"model {spec.text!r} needs timm (pip install timm)") from None
    try:
        module = timm.create_model(spec.target, pretrained=pretrained, **head)
    except RuntimeError as e:  # timm: "Unknown model (...)"
        raise ModelSpecError(f"timm cannot create {spec.target!r}: {e}") from e
    data_config, notes = config_from_pretrained_cfg(resolve_data_config({}, model=module))
    return _finish(module, spec.text, "timm", data_config, notes)


def _from_torchvision(spec: ModelSpec, pretrained: bool, head: dict[str, int]) -> LoadedModel:
    try:
        from torchvision import models
    except ImportError:
        raise ModelSpecError(f"model {spec.text!r} needs torchvision (pip install torchvision)") from None
    try:
        weights = models.get_model_weights(spec.target).DEFAULT if pretrained else None
        module = models.get_model(spec.target, weights=weights, **head)
    except (ValueError, KeyError) as e:
        raise ModelSpecError(f"torchvision has no model {spec.target!r}: {e}") from e
    if weights is None:  # preprocessing is declared by the weights
        return _finish(module, spec.text, "torchvision", {})
    data_config: dict[str, Any] = {}
    notes: list[str] = []
    preprocess = weights.transforms()  # ImageClassification: resize_size, crop_size, mean, std, interpolation
    crop = int(preprocess.crop_size[0])
    resize = int(preprocess.resize_size[0])
    data_config["size"] = crop
    data_config["crop_pct"] = crop / resize
    interpolation = str(getattr(preprocess.interpolation, "value", preprocess.interpolation)).lower()
    if interpolation in INTERPOLATIONS:
        data_config["interpolation"] = interpolation
    else:
        notes.append(f"interpolation {interpolation!r} is not available in the loader: preset value kept")
    data_config["mean"] = tuple(float(v) for v in preprocess.mean)
    data_config["std"] = tuple(float(v) for v in preprocess.std)
    return _finish(module, spec.text, "torchvision", data_config, notes)


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives hold compiled code (``<top>/code/``); ``torch.save`` zips do not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n or n.startswith("code/") for n in z.namelist())


def _from_file(path: Path, spec: str) -> LoadedModel:
    if _is_torchscript(path):
        # preprocessing can travel inside the archive: torch.jit.save(m, f, _extra_files={PRETRAINED_CFG_FILE: json})
        extra = {PRETRAINED_CFG_FILE: ""}
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        cfg = json.loads(extra[PRETRAINED_CFG_FILE]) if extra[PRETRAINED_CFG_FILE] else None
        data_config, notes = config_from_pretrained_cfg(cfg)
        return _finish(module, spec, "torchscript", data_config, notes)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)  # a full model: unpickling is needed
    except Exception as e:
        raise ModelSpecError(f"{spec!r} is neither a TorchScript archive nor a torch.save() file: {e}") from e
    if isinstance(obj, dict):
        for name in ("model", "module", "net", "model_ema"):
            if isinstance(obj.get(name), nn.Module):
                obj = obj[name]
                break
        else:
            if "state_dict" in obj or (obj and all(isinstance(v, torch.Tensor) for v in obj.values())):
                raise ModelSpecError(f"{spec!r} holds a state_dict (weights without an architecture): write a "
                                     "package.module:callable factory that builds the model and loads it")
            raise ModelSpecError(f"{spec!r} holds a dict without an nn.Module under 'model', 'module' or 'net'")
    return _finish(obj, spec, "pickle")


def _from_factory(spec: str) -> LoadedModel:
    module_name, _, attr = spec.partition(":")
    try:
        mod = _import(module_name)
    except ImportError as e:
        raise ModelSpecError(f"cannot import {module_name!r} for model spec {spec!r} ({e}). "
                             f"Accepted: {SPEC_HELP}") from e
    target: Any = mod
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ModelSpecError(f"{module_name!r} has no attribute {attr!r} (model spec {spec!r})") from None
    if isinstance(target, nn.Module):
        return _finish(target, spec, "factory")
    if not callable(target):
        raise ModelSpecError(f"{spec!r} is neither callable nor an nn.Module")
    return _finish(target(), spec, "factory")


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        # the console script's sys.path lacks the working directory; retry with it, as `python -m` would
        cwd = os.getcwd()
        if e.name is None or not name.startswith(e.name) or cwd in sys.path:
            raise
        sys.path.insert(0, cwd)
        return importlib.import_module(name)
