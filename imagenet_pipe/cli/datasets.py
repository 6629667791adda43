"""``imagenet-pipe datasets``: the datasets and the raw layouts each accepts."""

from __future__ import annotations

import argparse

from .args import NewParser


def add_parser(new_parser: NewParser) -> argparse.ArgumentParser:
    d = new_parser("datasets", help="list datasets and the raw layouts each accepts")
    d.set_defaults(func=run)
    return d


def run(args: argparse.Namespace) -> int:
    from ..sources import SOURCES

    for dataset, layouts in SOURCES.items():
        print(dataset)
        for layout in layouts:
            print(f"  {layout.layout:10s} {layout.description}")
    return 0
