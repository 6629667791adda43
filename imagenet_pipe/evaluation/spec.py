"""The one model-spec grammar: how ``imagenet-pipe eval --model``, ``imagenet-pipe bench --model``
and ``tools/train_example.py --model`` name a model. Parsing is plain string work (no torch
import), so that command parsers can use it; :func:`imagenet_pipe.evaluation.load_model` builds
what a spec names.

Forms, tried in this order:

* ``small`` -- the built-in small CNN (:class:`imagenet_pipe.evaluation.models.SmallCNN`), random
  weights: the profiler's model step, the training example and the tests use it;
* ``timm:<name>`` -- ``timm.create_model(name)``;
* ``tv:<name>`` or ``torchvision:<name>`` -- ``torchvision.models.get_model(name)``;
* a file that exists -- a TorchScript archive (``torch.jit.save``) or a pickled full model
  (``torch.save(model)``, also a dict holding it under ``"model"``/``"module"``/``"net"``);
* ``package.module:callable`` -- a factory returning an ``nn.Module`` (or a module-level
  ``nn.Module``).

A bare architecture name (``resnet50``) is refused: timm and torchvision both have one by that
name, with different weights and preprocessing, so the spec says which (``timm:resnet50`` or
``tv:resnet50``). Whether a zoo model gets pretrained weights is the caller's choice
(``load_model(..., pretrained=...)``): evaluation asks for them, the profiler and the training
example do not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import OptionsError

SPEC_HELP = ("small (built-in CNN), timm:<name>, tv:<name> (torchvision), a TorchScript or torch.save(model) "
             "file, or package.module:callable returning an nn.Module")
KINDS = ("small", "timm", "torchvision", "file", "factory")
_ZOO_PREFIXES = {"timm": "timm", "tv": "torchvision", "torchvision": "torchvision"}
_MODEL_FILE_SUFFIXES = (".pt", ".pth", ".pth.tar", ".ts", ".jit", ".ckpt", ".bin")


class ModelSpecError(OptionsError):
    """The model spec names nothing loadable; the message says which forms are accepted."""


@dataclass(frozen=True)
class ModelSpec:
    """A parsed spec: ``kind`` (one of :data:`KINDS`) and ``target`` (the zoo's model name, the
    file path or ``package.module:attribute``); ``text`` is the spec as written."""

    kind: str
    target: str
    text: str


def parse_model_spec(text: str) -> ModelSpec:
    """Parse ``text`` by the grammar of the module docstring (a file spec must exist)."""
    if not isinstance(text, str) or not text.strip():
        raise ModelSpecError(f"model spec must be a non-empty string, not {text!r}")
    text = text.strip()
    if text == "small":
        return ModelSpec("small", text, text)
    prefix, _, rest = text.partition(":")
    if prefix in _ZOO_PREFIXES and rest:
        return ModelSpec(_ZOO_PREFIXES[prefix], rest, text)
    if Path(text).expanduser().is_file():
        return ModelSpec("file", str(Path(text).expanduser()), text)
    if ":" in text:
        module, _, attribute = text.partition(":")
        if module and attribute:
            return ModelSpec("factory", text, text)
        raise ModelSpecError(f"unknown model spec {text!r}. Accepted: {SPEC_HELP}")
    if os.sep in text or text.endswith(_MODEL_FILE_SUFFIXES):
        raise ModelSpecError(f"model file {text!r} does not exist")
    raise ModelSpecError(f"model spec {text!r} is a bare name: write timm:{text} or tv:{text} (timm and torchvision "
                         f"models of the same name differ in weights and preprocessing). Accepted: {SPEC_HELP}")
