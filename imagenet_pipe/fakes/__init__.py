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
    raise ValueError(f"no fake generator for {dataset!r}")


__all__ = ["EXPECTED_FILE", "FakeSample", "make_fake", "read_expected"]
