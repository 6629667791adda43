"""Timing helpers: warm-up excluded, several timed windows, median and spread, and the rule that
makes a window steady-state."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

# A loader prepares batches ahead (DALI's prefetch queue; DataLoader workers x prefetch_factor).
# Batches made during start-up or warm-up and handed out inside the timed window are work the window
# did not pay for: with a window of 3 batches and a queue of 4 a loader looks arbitrarily fast.
# So the warm-up drains the queue (at least queue + 1 batches) and the window spans several queues.
STEADY_QUEUES = 4


@dataclass(frozen=True)
class Window:
    """How one loader measurement was timed (stored in ``bench.json`` beside its rate)."""

    warmup_batches: int  # untimed, at the start of each pass
    timed_batches: int
    queue_batches: int  # batches the loader may hold ready
    steady: bool  # warm-up drained the queue and the window spans STEADY_QUEUES queues

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def steady_window(queue: int, warmup: int, batches: int, steps: int | None = None) -> Window:
    """The window for a loader holding ``queue`` batches ready: the warm-up raised to drain the queue,
    the timed batches raised to ``STEADY_QUEUES`` queues, both cut to a pass of ``steps`` batches
    (``None``: a source that never ends). Not ``steady`` when the pass is too short for both."""
    warm = max(warmup, queue + 1)
    timed = max(batches, STEADY_QUEUES * queue, 1)
    if steps is not None:
        warm = min(warm, max(0, steps - 1))
        timed = max(1, min(timed, steps - warm))
    return Window(warm, timed, queue, warm >= queue + 1 and timed >= STEADY_QUEUES * queue)


def summary(values: list[float], unit: str = "img/s") -> dict[str, Any]:
    """Median and spread (min, max, quartiles) of repeated measurements."""
    vals = sorted(float(v) for v in values)
    if not vals:
        return {"median": None, "min": None, "max": None, "q1": None, "q3": None, "values": [], "unit": unit}
    if len(vals) >= 2:
        q1, _, q3 = statistics.quantiles(vals, n=4, method="inclusive")
    else:
        q1 = q3 = vals[0]
    return {"median": statistics.median(vals), "min": vals[0], "max": vals[-1], "q1": q1, "q3": q3,
            "values": [float(v) for v in values], "unit": unit}


def median(result: dict[str, Any] | None) -> float | None:
    return None if not result else result.get("median")


def synchronizer(cuda: bool) -> Callable[[], None]:
    """GPU work is asynchronous: a window ends only when the device is idle (all streams, DALI's too)."""
    if not cuda:
        return lambda: None
    import torch

    return torch.cuda.synchronize


def time_stream(step: Callable[[], int], *, warmup: int, batches: int, repeats: int,
                sync: Callable[[], None] = lambda: None) -> list[float]:
    """Rates (items/s) of ``repeats`` windows of ``batches`` calls to ``step`` (returns items done),
    after ``warmup`` untimed calls. For sources that never end (DALI pipelines wrap around)."""
    for _ in range(warmup):
        step()
    sync()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        items = sum(step() for _ in range(batches))
        sync()
        rates.append(items / (time.perf_counter() - start))
    return rates


def time_epochs(make_iter: Callable[[], Iterator[int]], *, warmup: int, batches: int, repeats: int,
                sync: Callable[[], None] = lambda: None) -> list[float]:
    """Rates of ``repeats`` passes, each a fresh iterator (yielding items per batch) whose first
    ``warmup`` batches are untimed (worker start-up, buffer fill) and of which at most ``batches``
    are timed. For loaders, whose passes end."""
    rates = []
    for _ in range(repeats):
        it = make_iter()
        try:
            for _ in range(warmup):
                next(it)
            sync()
            start, items = time.perf_counter(), 0
            for _, n in zip(range(batches), it, strict=False):
                items += n
            sync()
            elapsed = time.perf_counter() - start
        finally:
            close = getattr(it, "close", None)
            if close:
                close()  # stops a DataLoader's workers now rather than at garbage collection
        if items:
            rates.append(items / elapsed)
    return rates
