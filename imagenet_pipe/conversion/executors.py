"""Choosing where a conversion's tasks run: ``local`` processes (the default)."""

from __future__ import annotations

import os

from ..errors import OptionsError
from .workers import Executor, LocalExecutor

EXECUTORS = ("local",)


def make_executor(kind: str | Executor = "local", *, workers: int | None = None) -> Executor:
    """The executor ``kind`` names (an :class:`Executor` is returned as it is). ``workers``: tasks
    at a time (default: this machine's CPUs)."""
    if isinstance(kind, Executor):
        return kind
    if kind not in EXECUTORS:
        raise OptionsError(f"unknown executor {kind!r}; known: {', '.join(EXECUTORS)}")
    return LocalExecutor(workers or os.cpu_count() or 1)
