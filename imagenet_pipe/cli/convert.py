"""``imagenet-pipe convert``: raw download -> shards, into a folder or a bucket."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import OptionsError
from ..storage.url import is_s3_url
from .args import NewParser, csv_list, split_sizes


def add_parser(new_parser: NewParser) -> argparse.ArgumentParser:
    c = new_parser("convert", help="raw download -> shuffled WebDataset shards + indexes + manifest")
    c.add_argument("dataset", help="imagenet1k, imagenet21k, imagenet-v2, imagenet-c, imagenet-r, imagenet-a, "
                   "imagenet-sketch (see `imagenet-pipe datasets`)")
    c.add_argument("source", type=Path, help="folder holding the download as you got it (archives are not extracted)")
    c.add_argument("--out", help="output folder, or s3://bucket/prefix (default: shards/<dataset>)")
    c.add_argument("--staging", help="with --out s3://...: local folder for the converter's state and the shards "
                   "not yet uploaded, in a subfolder per URL (default: ~/.cache/imagenet-pipe/staging)")
    c.add_argument("--splits", type=csv_list, help="comma-separated splits (default: all the dataset has)")
    c.add_argument("--workers", type=int, help="processes (default: one per CPU); with --executor ray, tasks at a "
                   "time (default: the cluster's CPUs). The output is identical for any value")
    c.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where the tasks run: local processes (default), or the nodes of a Ray cluster (needs "
                   "imagenet-pipe[ray]; source and --out at the same path on every node); the output is identical")
    c.add_argument("--ray-address", help="with --executor ray: the cluster (head:port; default: RAY_ADDRESS, else the "
                   "cluster `ray start` made on this machine, else a Ray started for this run)")
    c.add_argument("--seed", type=int, default=0, help="shuffle seed")
    size = c.add_mutually_exclusive_group()
    size.add_argument("--shard-size", type=split_sizes,
                      help="samples per shard, e.g. 1252 or train=1252,validation=782 (default: the dataset preset)")
    size.add_argument("--num-shards", type=split_sizes, help="number of shards, e.g. 1024 or train=1024,validation=64")
    c.add_argument("--layout", help="force a raw layout instead of detecting it")
    c.add_argument("--max-side", type=int, help="re-encode images whose longer side exceeds this (opt-in)")
    c.add_argument("--quality", type=int, default=95, help="JPEG quality of re-encoded images (default 95)")
    c.add_argument("--max-pixels", type=int,
                   help="quarantine images whose header declares more pixels: decompression bombs "
                        "(default 89,478,485, Pillow's limit)")
    c.add_argument("--check", choices=("decode", "header"), default="decode",
                   help="decode every image (default) or check headers and end markers only (faster)")
    c.add_argument("--exif", choices=("reset", "apply", "keep"), default="reset",
                   help="EXIF orientation: reset the tag (default, pixels as stored), apply it, or keep it")
    c.add_argument("--no-real-labels", action="store_true", help="do not attach ImageNet-ReaL labels to 1K validation")
    c.add_argument("--holdout-per-class", type=int, help="imagenet21k: validation images held out per class")
    c.add_argument("--holdout-seed", type=int, help="imagenet21k: which images are held out (default 0)")
    c.add_argument("--class-list", help="imagenet21k: label space (imagenet21k, imagenet21k_p, ...)")
    c.add_argument("--overwrite", action="store_true", help="replace a different conversion in --out")
    c.add_argument("--strict", action="store_true",
                   help="refuse archives with warnings (a tar that ends without its end-of-archive blocks)")
    c.add_argument("--allow-empty-splits", action="store_true",
                   help="write the other splits when every sample of a split is quarantined (default: an error)")
    c.add_argument("--keep-work", action="store_true", help="keep the work folder (catalog, inspection) afterwards")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    c.set_defaults(func=run)
    return c


def run(args: argparse.Namespace) -> int:
    # the library code this command drives, imported here so that building the parser stays light
    from ..conversion import HygienePolicy, convert
    from ..storage import convert_to_bucket

    out = args.out or Path("shards") / args.dataset
    limits = {"max_pixels": args.max_pixels} if args.max_pixels is not None else {}
    hygiene = HygienePolicy(quality=args.quality, max_side=args.max_side, check=args.check, exif=args.exif, **limits)
    if args.staging and not is_s3_url(out):
        raise OptionsError("--staging applies to --out s3://... only")
    converter, target = convert, {"out": out}
    if is_s3_url(out):  # staged locally, each shard uploaded as it is written
        converter, target = convert_to_bucket, {"url": out, "staging": args.staging}
    converter(args.dataset, args.source, **target, workers=args.workers, executor=args.executor,
              ray_address=args.ray_address, overwrite=args.overwrite,
              progress=not args.quiet, keep_work=args.keep_work, strict=args.strict,
              allow_empty_splits=args.allow_empty_splits, splits=args.splits, seed=args.seed,
              shard_size=args.shard_size, num_shards=args.num_shards, layout=args.layout,
              real_labels=not args.no_real_labels, hygiene=hygiene, dataset_options=dataset_options(args))
    print(f"shards, indexes and manifest.json written to {out}")
    return 0


def dataset_options(args: argparse.Namespace) -> dict:
    """The layout reader's own options that were given (imagenet21k's hold-out and label space)."""
    opts = {}
    for name in ("holdout_per_class", "holdout_seed", "class_list"):
        value = getattr(args, name, None)
        if value is not None:
            opts[name] = value
    return opts
