"""Choosing where a conversion's tasks run: ``local`` processes (the default) or ``ray``, the
tasks of a Ray cluster (the optional extra ``imagenet-pipe[ray]``; :mod:`.ray_executor`)."""

from __future__ import annotations

import os
from collections.abc import Callable

from ..errors import OptionsError
from .workers import Executor, LocalExecutor

EXECUTORS = ("local", "ray")


def make_executor(kind: str | Executor = "local", *, workers: int | None = None, address: str | None = None,
                  log: Callable[[str], None] = print) -> Executor:
    """The executor ``kind`` names (an :class:`Executor` is returned as it is). ``workers``: tasks
    at a time (default: this machine's CPUs; with Ray, the cluster's). ``address``: the Ray cluster."""
    if isinstance(kind, Executor):
        return kind
    if kind not in EXECUTORS:
        raise OptionsError(f"unknown executor {kind!r}; known: {', '.join(EXECUTORS)}")
    if kind == "local":
        if address is not None:
            raise OptionsError("a Ray address applies to the ray executor only (--executor ray)")
        return LocalExecutor(workers or os.cpu_count() or 1)
    try:
        from .ray_executor import RayExecutor
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] != "ray":
            raise
        raise OptionsError("the ray executor needs Ray, here and on every node: pip install 'imagenet-pipe[ray]'"
                           ) from None
    return RayExecutor(address, workers, log)
