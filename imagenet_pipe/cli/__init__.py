"""``imagenet-pipe`` command line. Each subcommand is a thin door onto a library function."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from pathlib import Path

from . import __version__
from .errors import OptionsError
from .storage.url import is_s3_url


def _split_sizes(text: str) -> int | dict[str, int]:
    """``1252`` or ``train=1252,validation=782``."""
    if "=" not in text:
        return int(text)
    return {k.strip(): int(v) for k, v in (part.split("=", 1) for part in text.split(","))}


def csv_list(text: str) -> list[str]:
    """argparse type: ``a, b,c`` -> ``["a", "b", "c"]``."""
    return [t.strip() for t in text.split(",") if t.strip()]


def cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert
    from .hygiene import HygienePolicy

    out = args.out or Path("shards") / args.dataset
    limits = {"max_pixels": args.max_pixels} if args.max_pixels is not None else {}
    hygiene = HygienePolicy(quality=args.quality, max_side=args.max_side, check=args.check, exif=args.exif, **limits)
    if args.staging and not is_s3_url(out):
        raise OptionsError("--staging applies to --out s3://... only")
    run, target = convert, {"out": out}
    if is_s3_url(out):  # staged locally, each shard uploaded as it is written
        from .storage import convert_to_bucket

        run, target = convert_to_bucket, {"url": out, "staging": args.staging}
    run(args.dataset, args.source, **target, workers=args.workers, overwrite=args.overwrite,
        progress=not args.quiet, keep_work=args.keep_work, strict=args.strict,
        allow_empty_splits=args.allow_empty_splits, splits=args.splits, seed=args.seed,
        shard_size=args.shard_size, num_shards=args.num_shards, layout=args.layout,
        real_labels=not args.no_real_labels, hygiene=hygiene, dataset_options=_dataset_options(args))
    print(f"shards, indexes and manifest.json written to {out}")
    return 0


def _dataset_options(args: argparse.Namespace) -> dict:
    opts = {}
    for name in ("holdout_per_class", "holdout_seed", "class_list"):
        value = getattr(args, name, None)
        if value is not None:
            opts[name] = value
    return opts


def cmd_verify(args: argparse.Namespace) -> int:
    if is_s3_url(args.dir):
        from .storage import verify_remote as verify
    else:
        from .verify import verify

    report = verify(args.dir, decode=args.decode, workers=args.workers, progress=not args.quiet, log=print)
    for problem in report.problems:
        print(f"  {problem}", file=sys.stderr)
    return 0 if report.ok else 1


def cmd_sync(args: argparse.Namespace) -> int:
    from .storage import sync

    report = sync(args.src, args.dst, threads=args.threads, progress=not args.quiet)
    print(f"{len(report.copied)} file(s) copied ({report.bytes_copied / 1e6:.1f} MB), "
          f"{len(report.skipped)} already present with the right checksum")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from .sources import SOURCES

    for dataset, layouts in SOURCES.items():
        print(dataset)
        for layout in layouts:
            print(f"  {layout.layout:10s} {layout.description}")
    return 0


def cmd_fake(args: argparse.Namespace) -> int:
    from .fakes import make_fake

    make_fake(args.dataset, args.out, layout=args.layout, style=args.style, seed=args.seed, scale=args.scale)
    print(f"fake {args.dataset} ({args.layout or 'default'} layout) written to {args.out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(Path(args.out), workers=args.workers, device=args.device, scale=args.scale)


DEBUG_ENV = "IMAGENET_PIPE_DEBUG"  # set to 1 to see the traceback of an expected failure too
DEBUG_HELP = f"on an error, print the traceback too (or set {DEBUG_ENV}=1)"


def add_convert_parser(sub) -> None:
    c = sub.add_parser("convert", help="raw download -> shuffled WebDataset shards + indexes + manifest")
    c.add_argument("dataset", help="imagenet1k, imagenet21k, imagenet-v2, imagenet-c, imagenet-r, imagenet-a, "
                   "imagenet-sketch (see `imagenet-pipe datasets`)")
    c.add_argument("source", type=Path, help="folder holding the download as you got it (archives are not extracted)")
    c.add_argument("--out", help="output folder, or s3://bucket/prefix (default: shards/<dataset>)")
    c.add_argument("--staging", help="with --out s3://...: local folder for the converter's state and the shards "
                   "not yet uploaded, in a subfolder per URL (default: ~/.cache/imagenet-pipe/staging)")
    c.add_argument("--splits", type=csv_list, help="comma-separated splits (default: all the dataset has)")
    c.add_argument("--workers", type=int, default=os.cpu_count(), help="processes (output is identical for any value)")
    c.add_argument("--seed", type=int, default=0, help="shuffle seed")
    size = c.add_mutually_exclusive_group()
    size.add_argument("--shard-size", type=_split_sizes,
                      help="samples per shard, e.g. 1252 or train=1252,validation=782 (default: the dataset preset)")
    size.add_argument("--num-shards", type=_split_sizes, help="number of shards, e.g. 1024 or train=1024,validation=64")
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
    c.set_defaults(func=cmd_convert)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="imagenet-pipe", description=__doc__)
    p.add_argument("--version", action="version", version=f"imagenet-pipe {__version__}")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = p.add_subparsers(dest="command", required=True)

    add_convert_parser(sub)

    v = sub.add_parser("verify", help="check shards, indexes and counts against manifest.json")
    v.add_argument("dir", help="shard folder, or s3://bucket/prefix (each shard downloaded once)")
    v.add_argument("--decode", action="store_true", help="also decode every image")
    v.add_argument("--workers", type=int, default=os.cpu_count())
    v.add_argument("--quiet", action="store_true")
    v.set_defaults(func=cmd_verify)

    s = sub.add_parser("sync", help="copy a shard folder between a local folder and s3://bucket/prefix (either way)")
    s.add_argument("src", help="local folder or s3://bucket/prefix")
    s.add_argument("dst", help="s3://bucket/prefix or local folder")
    s.add_argument("--threads", type=int, default=8, help="parallel transfers (default 8)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_sync)

    d = sub.add_parser("datasets", help="list datasets and the raw layouts each accepts")
    d.set_defaults(func=cmd_datasets)

    f = sub.add_parser("fake", help="write a small fake raw download (for trying things without ImageNet)")
    f.add_argument("dataset")
    f.add_argument("out", type=Path)
    f.add_argument("--layout", help="raw layout to imitate (default: the dataset's main one)")
    f.add_argument("--style", choices=("photo", "small", "real", "objects"), default="photo",
                   help="photo-like synthetic images at ImageNet sizes, tiny ones, or crops of real photos")
    f.add_argument("--scale", type=float, default=1.0, help="multiply the default number of images")
    f.add_argument("--seed", type=int, default=0)
    f.set_defaults(func=cmd_fake)

    m = sub.add_parser("demo", help="fake ImageNet -> shards -> verify -> DALI loader -> profile, end to end")
    m.add_argument("--out", default="demo", help="working folder (default ./demo)")
    m.add_argument("--workers", type=int, default=os.cpu_count())
    m.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    m.add_argument("--scale", type=float, default=1.0, help="multiply the demo's dataset size")
    m.set_defaults(func=cmd_demo)

    for module, adder in LOADER_COMMANDS:
        try:
            add = getattr(importlib.import_module(module), adder)
        except ModuleNotFoundError as e:  # a command still being built
            if e.name is None or not module.startswith(e.name):
                raise
            continue
        add(sub)
    for command in sub.choices.values():  # --debug is accepted after the subcommand too
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return p


# subcommands that live beside the code they drive; each module adds its own parser
LOADER_COMMANDS = [("imagenet_pipe.bench.cli", "add_bench_parser"), ("imagenet_pipe.eval_cli", "add_eval_parser")]


def main(argv: list[str] | None = None) -> int:
    from .errors import ImagenetPipeError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ImagenetPipeError as e:  # expected failures only: anything else is a bug and keeps its traceback
        if args.debug or os.environ.get(DEBUG_ENV, "0") not in ("", "0"):
            traceback.print_exc()
        print(f"imagenet-pipe {args.command}: error: {one_line(str(e))}", file=sys.stderr)
        return 2


def one_line(message: str) -> str:
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())


if __name__ == "__main__":
    sys.exit(main())
