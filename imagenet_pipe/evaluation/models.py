"""Model loading for ``imagenet-pipe eval``: one spec string -> an ``nn.Module`` in eval mode, plus
the preprocessing the model declares (if it declares any).

Spec forms (tried in this order):

* ``timm:<name>`` -- ``timm.create_model(name, pretrained=True)``; preprocessing from timm's
  pretrained data config (size, crop_pct, interpolation, mean, std).
* ``tv:<name>`` or ``torchvision:<name>`` -- ``torchvision.models.get_model(name, weights="DEFAULT")``;
  preprocessing from the weights' transforms (resize, crop, interpolation, mean, std).
* a file path -- a TorchScript archive (``torch.jit.save``; preprocessing may ride along as
  ``_extra_files={"pretrained_cfg.json": ...}``) or a pickled full model (``torch.save(model)``;
  also a dict holding the module under ``"model"``/``"module"``/``"net"``). Unpickling runs code
  from the file: load only checkpoints you trust. A bare state_dict is refused (no architecture).
* ``package.module:callable`` -- the module is imported (the current directory is put on
  ``sys.path`` if needed, so ``tools.models:efficientnet_lite0`` works from the repository root)
  and ``callable()`` must return an ``nn.Module``.
* a bare name (``resnet50``) -- timm if installed, else torchvision.

A model declares its preprocessing with a timm-style ``pretrained_cfg`` dict attribute
(``input_size``, ``crop_pct``, ``interpolation``, ``mean``, ``std``); factories and pickled modules
can carry one too (see ``tools/models.py``).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import OptionsError
from .eval_cli import SPEC_HELP
from .loaders.config import INTERPOLATIONS

PRETRAINED_CFG_FILE = "pretrained_cfg.json"  # TorchScript extra file with a timm-style config


class ModelSpecError(OptionsError):
    """The model spec names nothing loadable; the message says which forms are accepted."""


@dataclass
class LoadedModel:
    module: nn.Module
    spec: str
    kind: str  # timm, torchvision, torchscript, pickle, factory, module
    data_config: dict[str, Any] = field(default_factory=dict)  # loader options the model asks for
    notes: list[str] = field(default_factory=list)  # what could not be honoured, for the report

    def describe(self) -> dict[str, Any]:
        params = sum(p.numel() for p in self.module.parameters()) if hasattr(self.module, "parameters") else None
        return {"spec": self.spec, "kind": self.kind, "class": type(self.module).__name__,
                "parameters": params, "data_config": self.data_config, "notes": self.notes}


def load_model(spec: str | nn.Module) -> LoadedModel:
    """Resolve a model spec (see the module docstring) or wrap a module given directly."""
    if isinstance(spec, nn.Module):
        return _finish(spec, f"<{type(spec).__name__} object>", "module")
    if not isinstance(spec, str) or not spec.strip():
        raise ModelSpecError(f"model spec must be a non-empty string or an nn.Module, not {spec!r}")
    spec = spec.strip()
    prefix, _, rest = spec.partition(":")
    if prefix == "timm" and rest:
        return _from_timm(rest, spec)
    if prefix in ("tv", "torchvision") and rest:
        return _from_torchvision(rest, spec)
    path = Path(spec).expanduser()
    if path.is_file():
        return _from_file(path, spec)
    if ":" in spec:
        return _from_factory(spec)
    if _looks_like_path(spec):
        raise ModelSpecError(f"model file {spec!r} does not exist")
    # a bare architecture name: whichever model zoo is installed
    if _installed("timm"):
        return _from_timm(spec, spec)
    if _installed("torchvision"):
        return _from_torchvision(spec, spec)
    raise ModelSpecError(f"unknown model spec {spec!r}: not a file, not package.module:callable, and neither timm "
                         f"nor torchvision is installed for a model name. Accepted: {SPEC_HELP}")


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or spec.endswith((".pt", ".pth", ".pth.tar", ".ts", ".jit", ".ckpt", ".bin"))


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


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


def _from_timm(name: str, spec: str) -> LoadedModel:
    try:
        import timm
        from timm.data import resolve_data_config
    except ImportError:
        raise ModelSpecError(f"model {spec!r} needs timm (pip install timm)") from None
    try:
        module = timm.create_model(name, pretrained=True)
    except RuntimeError as e:  # timm: "Unknown model (...)"
        raise ModelSpecError(f"timm cannot create {name!r}: {e}") from e
    data_config, notes = config_from_pretrained_cfg(resolve_data_config({}, model=module))
    return _finish(module, spec, "timm", data_config, notes)


def _from_torchvision(name: str, spec: str) -> LoadedModel:
    try:
        from torchvision import models
    except ImportError:
        raise ModelSpecError(f"model {spec!r} needs torchvision (pip install torchvision)") from None
    try:
        weights = models.get_model_weights(name).DEFAULT
        module = models.get_model(name, weights=weights)
    except (ValueError, KeyError) as e:
        raise ModelSpecError(f"torchvision has no model {name!r}: {e}") from e
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
    return _finish(module, spec, "torchvision", data_config, notes)


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
    if not module_name or not attr:
        raise ModelSpecError(f"unknown model spec {spec!r}. Accepted: {SPEC_HELP}")
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
