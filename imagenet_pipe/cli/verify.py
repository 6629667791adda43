"""``imagenet-pipe verify``: a shard folder (or bucket prefix) against its manifest."""

from __future__ import annotations

import argparse
import os
import sys

from ..storage.url import is_s3_url
from .args import NewParser


def add_parser(new_parser: NewParser) -> argparse.ArgumentParser:
    v = new_parser("verify", help="check shards, indexes and counts against manifest.json")
    v.add_argument("dir", help="shard folder, or s3://bucket/prefix (each shard downloaded once)")
    v.add_argument("--decode", action="store_true", help="also decode every image")
    v.add_argument("--workers", type=int, default=os.cpu_count())
    v.add_argument("--quiet", action="store_true")
    v.set_defaults(func=run)
    return v


def run(args: argparse.Namespace) -> int:
    # the library code this command drives, imported here so that building the parser stays light
    from ..storage import verify_remote
    from ..verification import verify

    check = verify_remote if is_s3_url(args.dir) else verify
    report = check(args.dir, decode=args.decode, workers=args.workers, progress=not args.quiet, log=print)
    for problem in report.problems:
        print(f"  {problem}", file=sys.stderr)
    return 0 if report.ok else 1
