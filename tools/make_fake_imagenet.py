#!/usr/bin/env python
"""Write a fake raw ImageNet download (any dataset, any layout) laid out exactly like the real one.

    python tools/make_fake_imagenet.py imagenet1k /tmp/fake-in1k --layout official
    python tools/make_fake_imagenet.py imagenet1k /tmp/fake-kaggle --layout kaggle --style small
    python tools/make_fake_imagenet.py --stats          # size statistics of the photo-like images

The same generator backs `imagenet-pipe fake`, the demo and the tests (imagenet_pipe/fakes/).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from imagenet_pipe.fakes import make_fake
from imagenet_pipe.fakes.images import ImageFactory


def stats(count: int = 200) -> None:
    factory = ImageFactory(0, "photo")
    sizes, dims = [], []
    for _ in range(count):
        data = factory.jpeg()
        sizes.append(len(data))
        dims.append(Image.open(io.BytesIO(data)).size)
    w, h = np.array(dims).T
    print(f"{count} photo-like JPEGs: mean {np.mean(sizes) / 1024:.1f} KiB (median {np.median(sizes) / 1024:.1f}), "
          f"mean {w.mean():.0f}x{h.mean():.0f} px (ImageNet train: ~110 KiB at ~400x350)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", nargs="?")
    p.add_argument("out", nargs="?", type=Path)
    p.add_argument("--layout")
    p.add_argument("--style", choices=("photo", "small", "real", "objects"), default="photo")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stats", action="store_true", help="print size statistics of the generated images")
    args = p.parse_args()
    if args.stats:
        stats()
        return 0
    if not args.dataset or not args.out:
        p.error("dataset and out are required (or --stats)")
    samples = make_fake(args.dataset, args.out, layout=args.layout, style=args.style, seed=args.seed,
                        scale=args.scale)
    print(f"{len(samples)} files of a fake {args.dataset} download written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
