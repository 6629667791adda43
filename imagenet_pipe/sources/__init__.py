"""Raw-layout readers, one module per layout, and the factory that picks one for a download."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..errors import OptionsError
from .base import Source, SourceError
from .imagenet1k_folder import ImageNet1kFolder
from .imagenet1k_kaggle import ImageNet1kKaggle
from .imagenet1k_official import ImageNet1kOfficial
from .imagenet21k_fall11 import ImageNet21kFall11
from .imagenet21k_p import ImageNet21kP
from .imagenet21k_winter21 import ImageNet21kWinter21
from .imagenet_c import ImageNetC
from .imagenet_ra import ImageNetA, ImageNetR
from .imagenet_sketch import ImageNetSketch
from .imagenet_v2 import ImageNetV2

# dataset -> its layouts, in detection order (most specific first)
SOURCES: dict[str, list[type[Source]]] = {
    "imagenet1k": [ImageNet1kOfficial, ImageNet1kKaggle, ImageNet1kFolder],
    "imagenet21k": [ImageNet21kFall11, ImageNet21kWinter21, ImageNet21kP],
    "imagenet-v2": [ImageNetV2],
    "imagenet-c": [ImageNetC],
    "imagenet-r": [ImageNetR],
    "imagenet-a": [ImageNetA],
    "imagenet-sketch": [ImageNetSketch],
}


def layouts(dataset: str) -> list[type[Source]]:
    try:
        return SOURCES[dataset]
    except KeyError:
        raise OptionsError(f"unknown dataset {dataset!r}; known: {', '.join(SOURCES)}") from None


def open_source(dataset: str, root: Path, workdir: Path, layout: str | None = None, **options) -> Source:
    """The reader for ``root``: the named ``layout``, or the first whose files are present."""
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"source {root} is not a directory: pass the folder holding the download")
    candidates = layouts(dataset)
    if layout is not None:
        chosen = [c for c in candidates if c.layout == layout]
        if not chosen:
            raise OptionsError(f"{dataset} has no layout {layout!r}; known: {[c.layout for c in candidates]}")
        return chosen[0](root, workdir, **options)
    for cls in candidates:
        if cls.detect(root):
            return cls(root, workdir, **options)
    expected = "\n".join(f"  {c.layout}: {c.description}" for c in candidates)
    raise SourceError(f"{root} does not hold a {dataset} download in a known layout. Expected one of:\n{expected}")


FINGERPRINT_BLOCK = 64 << 10


def source_fingerprint(root: Path, exclude: Path | None = None) -> dict[str, str]:
    """What identifies a download without reading it: for each top-level file its size, mtime and
    a hash of its first and last 64 KiB (archives, devkit, CSVs); for each top-level folder a hash
    of every sub-folder's name and mtime (files added, removed or renamed). ``exclude``: an output
    folder inside the source. A resumed conversion compares it to refuse a stale catalog."""
    root = Path(root)
    skip = os.path.realpath(exclude) if exclude is not None else None
    out = {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith(".") or os.path.realpath(entry.path) == skip:
            continue
        h = hashlib.sha256()
        if entry.is_dir():
            seen = {os.path.realpath(entry.path), skip}
            for dirpath, dirnames, _ in os.walk(entry.path, followlinks=True):  # links followed once, as scanned
                real = {d: os.path.realpath(os.path.join(dirpath, d)) for d in dirnames}
                dirnames[:] = sorted(d for d in dirnames if real[d] not in seen)
                seen.update(real.values())
                h.update(f"{os.path.relpath(dirpath, entry.path)}:{os.stat(dirpath).st_mtime_ns}\n".encode())
        elif entry.is_file():
            st = entry.stat()
            h.update(f"{st.st_size}:{st.st_mtime_ns}\n".encode())
            with open(entry.path, "rb") as f:
                h.update(f.read(FINGERPRINT_BLOCK))
                f.seek(max(0, st.st_size - FINGERPRINT_BLOCK))
                h.update(f.read(FINGERPRINT_BLOCK))
        out[entry.name] = h.hexdigest()[:16]
    return out


__all__ = ["SOURCES", "Source", "SourceError", "layouts", "open_source", "source_fingerprint"]
