"""``imagenet-pipe sync``: a shard folder copied between a local folder and a bucket."""

from __future__ import annotations

import argparse

from .args import NewParser


def add_parser(new_parser: NewParser) -> argparse.ArgumentParser:
    s = new_parser("sync", help="copy a shard folder between a local folder and s3://bucket/prefix "
                              "(either way)")
    s.add_argument("src", help="local folder or s3://bucket/prefix")
    s.add_argument("dst", help="s3://bucket/prefix or local folder")
    s.add_argument("--threads", type=int, default=8, help="parallel transfers (default 8)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=run)
    return s


def run(args: argparse.Namespace) -> int:
    from ..storage import sync

    report = sync(args.src, args.dst, threads=args.threads, progress=not args.quiet)
    print(f"{len(report.copied)} file(s) copied ({report.bytes_copied / 1e6:.1f} MB), "
          f"{len(report.skipped)} already present with the right checksum")
    return 0
