#!/usr/bin/env python
"""What a progressive-resolution size change costs: the time to the first batch of each epoch of a
DALI loader whose ``res_schedule`` changes the training size between epochs (the size arrives per
sample from the source: nothing is rebuilt), against building a fresh loader at the new size.

    python tools/res_switch.py shards/bench-photo --preset train-progressive --schedule 160 192 0 2
"""

from __future__ import annotations

import argparse
import time

from imagenet_pipe.loaders import build_loader


def first_batch_seconds(loader, epoch: int) -> tuple[float, tuple[int, ...]]:
    loader.set_epoch(epoch)
    start = time.perf_counter()
    it = iter(loader)
    batch = next(it)
    seconds = time.perf_counter() - start
    it.close()  # abandon the pass
    return seconds, tuple(batch.images.shape[-2:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root")
    p.add_argument("--preset", default="train-progressive")
    p.add_argument("--schedule", type=int, nargs=4, default=[160, 192, 0, 2], metavar=("START", "END", "FROM", "TO"))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    options = {"device": "cpu", "batch_size": args.batch_size, "num_threads": args.threads,
               "res_schedule": tuple(args.schedule)}
    start = time.perf_counter()
    loader = build_loader(args.root, "train", args.preset, **options)
    pipe = loader.pipe
    print(f"build: {time.perf_counter() - start:.3f} s")
    last = args.schedule[3]
    for epoch in (0, 0, last, last, 0):  # same size, new size, same size, back
        seconds, shape = first_batch_seconds(loader, epoch)
        rebuilt = loader.pipe is not pipe
        print(f"epoch {epoch}: first batch {seconds:.3f} s at {shape[0]} px, pipeline rebuilt: {rebuilt}")
    end = args.schedule[1]
    for attempt in (1, 2):  # the first build in a process also pays one-off imports and graph conversion
        start = time.perf_counter()
        fresh = build_loader(args.root, "train", args.preset, **{**options, "res_schedule": (end, end, 0, 0)})
        seconds, shape = first_batch_seconds(fresh, 0)
        print(f"instead, a fresh loader at {shape[0]} px (#{attempt}): build + first batch "
              f"{time.perf_counter() - start:.3f} s")
        fresh.close()


if __name__ == "__main__":
    main()
