"""imagenet-pipe: raw ImageNet downloads -> WebDataset shards -> DALI -> PyTorch.

Public doors (imported lazily, so converting never imports torch or DALI):

* :func:`convert` — raw download -> shuffled WebDataset shards + indexes + manifest;
* :func:`verify` — check a shard folder against its manifest;
* :func:`build_loader` — DALI (or baseline) loader over a split, an iterable of (images, labels).
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "convert": ("imagenet_pipe.conversion", "convert"),
    "verify": ("imagenet_pipe.verification", "verify"),
    "build_loader": ("imagenet_pipe.loaders", "build_loader"),
    "LoaderConfig": ("imagenet_pipe.loaders", "LoaderConfig"),
    "resolve_config": ("imagenet_pipe.loaders", "resolve_config"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'imagenet_pipe' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
