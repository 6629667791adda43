"""``imagenet-pipe eval``: argparse door onto :func:`imagenet_pipe.evaluate.evaluate`.

Kept apart from the harness so that building the command line never imports torch or DALI.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

from . import __version__
from .cli import csv_list

PRECISIONS = ("auto", "float32", "float16", "bfloat16")
SPEC_HELP = ("timm:<name>, tv:<name> (torchvision), a TorchScript or torch.save(model) file, "
             "or package.module:callable returning an nn.Module")


def _floats3(text: str) -> tuple[float, float, float]:
    values = [float(v) for v in text.split(",")]
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise argparse.ArgumentTypeError("give one value or three comma-separated values")
    return tuple(values)  # type: ignore[return-value]


def add_eval_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``imagenet-pipe eval`` (called by :mod:`imagenet_pipe.cli`)."""
    e = subparsers.add_parser(
        "eval", help="top-1/top-5, R/A 200-class, ReaL, ImageNet-C mCE of a model over converted shards",
        description="Evaluate a model over one or more converted shard folders with the DALI eval loader. "
                    "Give an ImageNet-1K folder with an ImageNet-C folder to get relative mCE from its "
                    "validation error.")
    e.add_argument("shards", nargs="+", type=Path, help="shard folder(s) written by `imagenet-pipe convert`")
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
    e.add_argument("--mean", type=_floats3, help="r,g,b in [0, 1] units")
    e.add_argument("--std", type=_floats3, help="r,g,b in [0, 1] units")
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
    e.set_defaults(func=cmd_eval)
    return e


def cmd_eval(args: argparse.Namespace) -> int:
    from .errors import OptionsError
    from .evaluate import Folder, _json_safe, evaluate, format_table
    from .loaders import dist_info
    from .models import load_model

    with redirect_stdout(sys.stderr):  # keep stdout for the table: some model code prints while loading
        loaded = load_model(args.model)
    folders = [Folder.open(p) for p in args.shards]
    # ImageNet-1K first, so its validation error can serve as ImageNet-C's clean error
    order = sorted(range(len(folders)), key=lambda i: folders[i].dataset != "imagenet1k")
    clean: Any = args.clean_error
    results: list[dict | None] = [None] * len(folders)
    names = [f.dataset for f in folders]
    for i in order:
        folder = folders[i]
        save = None
        if args.save_logits is not None:
            save = args.save_logits if len(folders) == 1 else args.save_logits.with_name(
                f"{args.save_logits.stem}.{names[i]}{'' if names.count(names[i]) == 1 else f'-{i}'}.npz")
        patterns = [p for p in args.splits or [] if any(fnmatch.fnmatchcase(s, p) for s in folder.info["splits"])]
        if args.splits and not patterns:
            raise OptionsError(f"none of --splits {','.join(args.splits)} is a split of {folder.root}")
        result = evaluate(folder.root, loaded, patterns or None, args.preset, backend=args.backend,
                          precision=args.precision, clean_error=clean, save_logits=save,
                          use_model_config=not args.no_model_config, progress=not args.quiet,
                          batch_size=args.batch_size, device=args.device, num_threads=args.num_threads,
                          num_workers=args.num_threads, size=args.size, crop_pct=args.crop_pct,
                          interpolation=args.interpolation, mean=args.mean, std=args.std)
        results[i] = result
        if clean is None and result is not None and folder.dataset == "imagenet1k" \
                and "validation" in result["splits"]:
            clean = result
    if dist_info().rank != 0:
        return 0
    print("\n\n".join(format_table(r) for r in results if r is not None))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {"tool": f"imagenet-pipe {__version__}", "model": results[0]["model"] if results[0] else None,
               "results": results}
        args.json.write_text(json.dumps(_json_safe(doc), indent=2) + "\n")
        print(f"\nfull results written to {args.json}")
    return 0
