"""DALI helpers shared by the loader's graph (:mod:`.dali_graph`) and its augmentation layers
(:mod:`.dali_augment`), which the graph composes."""

from __future__ import annotations


def interp_type(name: str):
    from nvidia.dali import types

    return {"bilinear": types.INTERP_LINEAR, "bicubic": types.INTERP_CUBIC, "lanczos": types.INTERP_LANCZOS3}[name]
