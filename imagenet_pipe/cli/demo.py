"""``imagenet-pipe demo``: fake ImageNet -> shards -> verify -> DALI loader -> profile."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .args import NewParser


def add_parser(new_parser: NewParser) -> argparse.ArgumentParser:
    m = new_parser("demo", help="fake ImageNet -> shards -> verify -> DALI loader -> profile, end to end")
    m.add_argument("--out", default="demo", help="working folder (default ./demo)")
    m.add_argument("--workers", type=int, default=os.cpu_count())
    m.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    m.add_argument("--scale", type=float, default=1.0, help="multiply the demo's dataset size")
    m.set_defaults(func=run)
    return m


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    return run_demo(Path(args.out), workers=args.workers, device=args.device, scale=args.scale)
