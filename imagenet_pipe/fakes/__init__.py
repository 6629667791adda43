"""Fake raw downloads laid out exactly like the real ones, for tests, the demo and trying the tool
without ImageNet. ``make_fake(dataset, out)`` is the door; one module per dataset."""

from __future__ import annotations

from pathlib import Path

from .common import EXPECTED_FILE, FakeSample, read_expected


def make_fake(dataset: str, out: Path, layout: str | None = None, style: str = "photo", seed: int = 0,
              scale: float = 1.0) -> list[FakeSample]:
    """Write a fake download of ``dataset`` into ``out``; returns the samples it holds."""
    if dataset == "imagenet1k":
        from .imagenet1k import make_imagenet1k

        fake = make_imagenet1k(out, layout or "official", num_classes=max(6, round(10 * scale)),
                               train_per_class=max(2, round(20 * scale)), val_images=max(5, round(50 * scale)),
                               style=style, seed=seed)
        return fake.samples
    n = max(1, round(scale))  # images per class grow with the scale
    if dataset == "imagenet21k":
        from .imagenet21k import make_imagenet21k

        return make_imagenet21k(out, layout or "fall11", num_classes=max(5, round(5 * scale)),
                                max_per_class=max(8, round(8 * scale)), style=style, seed=seed).samples
    if dataset == "imagenet-v2":
        from .imagenet_v2 import make_imagenet_v2

        return make_imagenet_v2(out, num_classes=max(6, round(10 * scale)), per_class=2 * n, style=style,
                                seed=seed).samples
    if dataset == "imagenet-c":
        from .imagenet_c import make_imagenet_c

        return make_imagenet_c(out, val_images=max(4, round(6 * scale)), style=style, seed=seed).samples
    if dataset in ("imagenet-r", "imagenet-a"):
        from .imagenet_ra import make_renditions

        return make_renditions(out, dataset, num_classes=max(3, round(6 * scale)), per_class=3 * n, style=style,
                               seed=seed).samples
    if dataset == "imagenet-sketch":
        from .imagenet_sketch import make_imagenet_sketch

        return make_imagenet_sketch(out, num_classes=max(4, round(6 * scale)), per_class=3 * n,
                                    large_class=7 * n, style=style, seed=seed).samples
    raise ValueError(f"no fake generator for {dataset!r}")


__all__ = ["EXPECTED_FILE", "FakeSample", "make_fake", "read_expected"]
