"""``imagenet-pipe fake``: a fake raw download, laid out like the real one."""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import NewParser


def add_parser(new_parser: NewParser) -> argparse.ArgumentParser:
    f = new_parser("fake", help="write a small fake raw download (for trying things without ImageNet)")
    f.add_argument("dataset")
    f.add_argument("out", type=Path)
    f.add_argument("--layout", help="raw layout to imitate (default: the dataset's main one)")
    f.add_argument("--style", choices=("photo", "small", "real", "objects"), default="photo",
                   help="photo-like synthetic images at ImageNet sizes, tiny ones, or crops of real photos")
    f.add_argument("--scale", type=float, default=1.0, help="multiply the default number of images")
    f.add_argument("--seed", type=int, default=0)
    f.set_defaults(func=run)
    return f


def run(args: argparse.Namespace) -> int:
    from ..fakes import make_fake

    make_fake(args.dataset, args.out, layout=args.layout, style=args.style, seed=args.seed, scale=args.scale)
    print(f"fake {args.dataset} ({args.layout or 'default'} layout) written to {args.out}")
    return 0
