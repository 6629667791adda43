"""``imagenet-pipe bench``: argparse door onto :func:`imagenet_pipe.bench.run_bench`."""

from __future__ import annotations

import argparse
import shlex
import sys

from ..bench.options import DEFAULT_STAGES, PARITY, STAGES, resolve_presets
from ..evaluation.spec import SPEC_HELP
from .args import NewParser, csv_list, floats, ints


def add_parser(new_parser: NewParser) -> argparse.ArgumentParser:
    b = new_parser(
        "bench", help="profile the loaders stage by stage: DALI vs baseline at equal cores, auto-tune",
        description="Measure raw read, decode-only ceiling, decode + crop/resize, the full DALI and baseline "
                    "loaders (and, with --model-step, a model fed by them) on one shard folder; time to first "
                    "batch with and without .idx, which JPEG decoder backends ran, the memory a DALI loader "
                    "holds; optionally auto-tune a YAML preset. Writes a table to stdout, bench.json (after every "
                    "stage; a stage that fails is recorded and skipped) and, with matplotlib, bench.png to --out.")
    b.add_argument("shards", help="a folder written by `imagenet-pipe convert`, or s3://bucket/prefix")
    b.add_argument("--cache-dir", help="for s3://: the node's shard cache (default: a temporary one)")
    b.add_argument("--cache-limit", help="for s3://: the cache's size limit, e.g. 200GB")
    b.add_argument("--split", default="train", help="split to read (default train; eval presets may read it too)")
    b.add_argument("--mode", type=csv_list, help="train, eval or train,eval (default train,eval)")
    b.add_argument("--size", type=ints, help="224, 384 or 224,384 (default 224)")
    b.add_argument("--preset", type=csv_list, help="presets or YAML paths instead of --mode x --size, e.g. "
                   "train-224,eval-224,eval-384")
    b.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    b.add_argument("--cores", type=int, help="CPUs both loaders may use (pinned; default: all available)")
    b.add_argument("--threads", type=int, help="DALI threads (default: the preset's, else --cores)")
    b.add_argument("--workers", type=int, help="baseline DataLoader workers (default: the preset's, else the DALI "
                   "threads)")
    b.add_argument("--batch-size", type=int, help="default: the preset's")
    b.add_argument("--prefetch", type=int, help="batches prepared ahead (default: the preset's)")
    b.add_argument("--hw-decoder-load", type=float, help="GPU: share of JPEGs for the hardware decoder")
    b.add_argument("--repeats", type=int, default=3, help="timed repeats per stage (median and spread)")
    b.add_argument("--warmup", type=int, default=3, help="untimed batches before each timed window (raised to "
                   "drain each loader's prefetch queue)")
    b.add_argument("--batches", type=int, default=20, help="timed batches per repeat (raised to several times each "
                   "loader's prefetch queue; at most what a pass holds: a split too small gets no ratios)")
    b.add_argument("--stages", type=csv_list, help=f"subset of {','.join(STAGES)} (default {','.join(DEFAULT_STAGES)}; "
                   "model and tune are added by --model-step and --tune; ops: CPU cost of each DALI operator; "
                   "backends: which JPEG decoder backends ran; memory: host, pinned and GPU memory of a DALI loader)")
    b.add_argument("--skip", type=csv_list, help="stages to leave out")
    b.add_argument("--parity", choices=PARITY, default="both",
                   help="eval presets: DALI loader with pil_parity on, off, or both (default)")
    b.add_argument("--model-step", choices=("none", "fwd", "fwdbwd", "auto"), default="none",
                   help="also feed a model: forward, forward+backward+SGD step, or auto (fwdbwd for train "
                        "presets, fwd for eval)")
    b.add_argument("--model", default="small", help=f"model for --model-step, freshly initialised: {SPEC_HELP}")
    b.add_argument("--model-backends", type=csv_list, default=["dali"],
                   help="loaders to feed the model (dali,baseline)")
    b.add_argument("--ttfb-shards", type=int, default=1024, help="shards for the time-to-first-batch stage (0: skip)")
    b.add_argument("--ttfb-per-shard", type=int, default=4, help="samples per time-to-first-batch shard")
    b.add_argument("--ttfb-repeats", type=int, default=3)
    b.add_argument("--ttfb-tiny-images", action="store_true", help="fill the first-batch shards with 16x16 JPEGs, "
                   "so that many samples per shard (real shards hold about 1,250) take little disk")
    b.add_argument("--tune", action="store_true", help="sweep DALI threads, batch size, prefetch (and the HW decoder "
                   "share on GPU); write the best as a YAML preset")
    b.add_argument("--tune-repeats", type=int, default=2, help="timed passes per tuning trial (the winner is then "
                   "confirmed against the starting settings, 3 times each)")
    b.add_argument("--tune-threads", type=ints, help="DALI thread counts to try (default: around --cores)")
    b.add_argument("--tune-batch-sizes", type=ints, help="batch sizes to try")
    b.add_argument("--tune-prefetch", type=ints, help="prefetch depths to try (default 1,2,3,4)")
    b.add_argument("--tune-hw-loads", type=floats, help="GPU: hardware decoder shares to try")
    b.add_argument("--tune-out", help="tuned preset path (default <out>/tuned-<preset>-<device>.yaml; "
                   "may contain {preset} and {device})")
    b.add_argument("--out", default="bench-out", help="folder for bench.json, bench.png and tuned presets")
    b.add_argument("--no-plot", action="store_true")
    b.add_argument("--quiet", action="store_true", help="no progress on stderr")
    b.set_defaults(func=run)
    return b


def run(args: argparse.Namespace) -> int:
    # the library code this command drives, imported here so that building the parser stays light
    from ..bench import BenchOptions, run_bench

    options = BenchOptions(
        presets=resolve_presets(args.preset, args.mode, args.size), split=args.split, device=args.device,
        cache_dir=args.cache_dir, cache_limit=args.cache_limit,
        cores=args.cores, batch_size=args.batch_size, threads=args.threads, workers=args.workers,
        prefetch=args.prefetch, hw_decoder_load=args.hw_decoder_load, repeats=args.repeats, warmup=args.warmup,
        batches=args.batches, stages=[s for s in (args.stages or DEFAULT_STAGES) if s not in (args.skip or [])],
        parity=args.parity, model=args.model, model_step=None if args.model_step == "none" else args.model_step,
        model_backends=args.model_backends, ttfb_shards=args.ttfb_shards, ttfb_per_shard=args.ttfb_per_shard,
        ttfb_repeats=args.ttfb_repeats, ttfb_tiny_images=args.ttfb_tiny_images, tune=args.tune,
        tune_repeats=args.tune_repeats, tune_space=tune_space(args), tune_out=args.tune_out, out_dir=args.out,
        plot=not args.no_plot, command=" ".join(shlex.quote(a) for a in ["imagenet-pipe", *sys.argv[1:]]))
    log = (lambda _m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    result = run_bench(args.shards, options, log=log)
    return 0 if result["presets"] and not result["errors"] else 1  # bench.json holds what failed, and why


def tune_space(args: argparse.Namespace) -> dict[str, list]:
    """The sweep's knobs given on the command line (the others keep their default candidates)."""
    given = {"num_threads": args.tune_threads, "batch_size": args.tune_batch_sizes, "prefetch": args.tune_prefetch,
             "hw_decoder_load": args.tune_hw_loads}
    return {k: v for k, v in given.items() if v is not None}
