"""``imagenet-pipe eval``: argparse door onto :func:`imagenet_pipe.evaluation.evaluate_folders`.

Under torchrun this command owns the process group: it starts one (gloo: the gathered predictions
are small Python objects, and gloo works with or without CUDA) and tears it down when done."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

from ..evaluation.options import PRECISIONS
from ..evaluation.spec import SPEC_HELP
from .args import NewParser, csv_list, floats3


def add_parser(new_parser: NewParser) -> argparse.ArgumentParser:
    e = new_parser(
        "eval", help="top-1/top-5, R/A 200-class, ReaL, ImageNet-C mCE of a model over converted shards",
        description="Evaluate a model over one or more converted shard folders with the DALI eval loader. "
                    "Give an ImageNet-1K folder with an ImageNet-C folder to get relative mCE from its "
                    "validation error.")
    e.add_argument("shards", nargs="+", help="shard folder(s) written by `imagenet-pipe convert`, or "
                   "s3://bucket/prefix URLs")
    e.add_argument("--cache-dir", help="for s3:// folders: the node's shard cache (default: a temporary one)")
    e.add_argument("--cache-limit", help="for s3:// folders: the cache's size limit, e.g. 200GB")
    e.add_argument("--model", "-m", required=True, help=f"model: {SPEC_HELP}")
    e.add_argument("--splits", type=csv_list,
                   help="comma-separated splits or patterns, e.g. 'gaussian_noise-*' (default: all but train*)")
    e.add_argument("--preset", default="eval-224", help="loader preset (default eval-224)")
    e.add_argument("--backend", choices=("dali", "baseline"), default="dali")
    e.add_argument("--batch-size", type=int)
    e.add_argument("--device", choices=("auto", "gpu", "cpu"))
    e.add_argument("--num-threads", type=int, help="DALI CPU threads (baseline: DataLoader workers)")
    e.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: float16 autocast on a GPU, float32 on the CPU")
    e.add_argument("--size", type=int, help="crop size")
    e.add_argument("--crop-pct", type=float, help="resize the shorter side to size / crop_pct before the crop")
    e.add_argument("--interpolation", choices=("bilinear", "bicubic", "lanczos"))
    e.add_argument("--mean", type=floats3, help="r,g,b in [0, 1] units")
    e.add_argument("--std", type=floats3, help="r,g,b in [0, 1] units")
    e.add_argument("--no-model-config", action="store_true",
                   help="ignore the preprocessing the model declares (timm / pretrained_cfg): preset + flags only")
    e.add_argument("--clean-error",
                   help="clean top-1 error for relative mCE: 0.239, 23.9%%, or an eval JSON holding "
                        "imagenet1k validation (default: from an imagenet1k folder given in the same command)")
    e.add_argument("--json", type=Path, help="write the full results here")
    e.add_argument("--save-logits", type=Path,
                   help="write per-sample float32 logits (.npz, about 200 MB per 50,000 images; with several "
                        "folders, one file per dataset)")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=run)
    return e


def run(args: argparse.Namespace) -> int:
    # the library code this command drives, imported here so that building the parser stays light
    from ..evaluation import EvalOptions, evaluate_folders, format_table, load_model, write_results_json
    from ..loaders import dist_info

    options = EvalOptions(
        splits=args.splits, preset=args.preset, backend=args.backend, precision=args.precision,
        use_model_config=not args.no_model_config, clean_error=args.clean_error, save_logits=args.save_logits,
        progress=not args.quiet, cache_dir=args.cache_dir, cache_limit=args.cache_limit,
        loader={"batch_size": args.batch_size, "device": args.device, "num_threads": args.num_threads,
                "num_workers": args.num_threads, "size": args.size, "crop_pct": args.crop_pct,
                "interpolation": args.interpolation, "mean": args.mean, "std": args.std})
    with redirect_stdout(sys.stderr):  # keep stdout for the table: some model code prints while loading
        loaded = load_model(args.model)
    dist = dist_info()
    with process_group(dist.rank, dist.world_size):
        results = evaluate_folders(args.shards, loaded, options, dist=dist)
    if dist.rank != 0:
        return 0
    print("\n\n".join(format_table(r) for r in results))
    if args.json:
        write_results_json(args.json, results)
        print(f"\nfull results written to {args.json}")
    return 0


@contextmanager
def process_group(rank: int, world_size: int) -> Iterator[None]:
    """A gloo process group for the evaluation's gathers when torchrun started several processes."""
    if world_size <= 1:
        yield
        return
    import torch.distributed as tdist

    tdist.init_process_group(backend="gloo", rank=rank, world_size=world_size)
    try:
        yield
    finally:
        tdist.destroy_process_group()
