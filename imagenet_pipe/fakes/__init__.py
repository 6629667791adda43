"""Fake raw downloads laid out exactly like the real ones, for tests, the demo and trying the tool
without ImageNet. ``make_fake(dataset, out)`` is the door; one module per dataset, registered in
:data:`FAKES` under the dataset names of the sources' registry (:data:`imagenet_pipe.sources.SOURCES`)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from ..errors import OptionsError
from . import imagenet1k, imagenet21k, imagenet_c, imagenet_ra, imagenet_sketch, imagenet_v2
from .common import EXPECTED_FILE, FakeSample, read_expected

# dataset -> its default-sized fake: (out, *, layout, style, seed, scale) -> the samples written
FAKES: dict[str, Callable[..., list[FakeSample]]] = {
    "imagenet1k": imagenet1k.scaled_fake,
    "imagenet21k": imagenet21k.scaled_fake,
    "imagenet-v2": imagenet_v2.scaled_fake,
    "imagenet-c": imagenet_c.scaled_fake,
    "imagenet-r": partial(imagenet_ra.scaled_fake, "imagenet-r"),
    "imagenet-a": partial(imagenet_ra.scaled_fake, "imagenet-a"),
    "imagenet-sketch": imagenet_sketch.scaled_fake,
}


def make_fake(dataset: str, out: Path, layout: str | None = None, style: str = "photo", seed: int = 0,
              scale: float = 1.0) -> list[FakeSample]:
    """Write a fake download of ``dataset`` into ``out``; returns the samples it holds."""
    if dataset not in FAKES:
        raise OptionsError(f"no fake generator for {dataset!r}; known: {', '.join(FAKES)}")
    return FAKES[dataset](Path(out), layout=layout, style=style, seed=seed, scale=scale)


__all__ = ["EXPECTED_FILE", "FAKES", "FakeSample", "make_fake", "read_expected"]
