"""Advisory file locks (``flock``) shared by the processes of one node: the ranks of a machine
reading one cache folder. A lock belongs to the open file, so two threads of one process exclude
each other too, and a killed process's locks vanish with it."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def open_lock(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


@contextmanager
def locked(path: Path, exclusive: bool = True) -> Iterator[None]:
    """Hold ``path``'s lock (waiting for it) for the ``with`` block."""
    fd = open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def try_exclusive(path: Path) -> int | None:
    """An fd holding ``path``'s exclusive lock, or None at once when anyone holds it."""
    fd = open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def shared_lock(path: Path) -> int:
    """An fd holding ``path``'s shared lock (waiting while it is held exclusively); close it to release."""
    fd = open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except BaseException:
        os.close(fd)
        raise
    return fd
