"""The output folder between runs: one conversion at a time, the work folder that makes a run
resumable (``WORK_DIR``: options, source fingerprint, catalog, inspection chunks, shard
records), and the replacement of a previous conversion (``--overwrite``)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import ShardError
from ..files import atomic_write
from ..format import (
    CARD_FILE,
    CLASSES_FILE,
    INFO_FILES,
    MANIFEST,
    SIZES_FILE,
    TRASH_DIR,
    idx_name,
    read_json,
    wids_name,
)
from .options import ConvertError, ConvertOptions

LOCK_TIMEOUT_S = 10


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """One conversion per output folder at a time (an advisory lock on the folder itself)."""
    fd = os.open(out, os.O_RDONLY)
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ConvertError(f"another conversion is running in {out}") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def read_previous(out: Path, overwrite: bool, preset: dict[str, Any]) -> dict[str, Any]:
    """The manifest of the finished conversion in ``out``. A damaged one may only be overwritten:
    then what its indexes may be called stands in for it (its shards go by name pattern when the
    new ones are written)."""
    try:
        return read_json(out / MANIFEST)
    except ShardError as e:
        if not overwrite:
            raise ConvertError(f"{e}: the conversion there is damaged; pass --overwrite to replace it") from None
        return {"prefix": preset["prefix"], "splits": dict.fromkeys(preset["splits"])}


def prepare_work(work: Path, opts: ConvertOptions, files: dict[str, str], overwrite: bool,
                 log: Callable[[str], None]) -> None:
    """Create the work folder, or check that the one there belongs to this conversion. Before the
    catalog exists nothing is lost by starting over, so a rerun with other options (e.g. the
    ``--splits`` an error message suggested) needs no ``--overwrite``."""
    fingerprint = {"tool_version": __version__, **opts.to_json()}
    opts_path, files_path = work / "options.json", work / "source.json"
    if work.exists():
        if read_state(opts_path) != fingerprint:
            if (work / "catalog.npz").exists() and not overwrite:
                raise ConvertError(f"{work.parent} holds an unfinished conversion with different options; rerun "
                                   "with the same options to resume it, or pass --overwrite to start over")
            shutil.rmtree(work)
        elif read_state(files_path) != files:
            log(f"files in {opts.source} changed since the interrupted run: starting over")
            shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    if not opts_path.exists():
        atomic_write(files_path, json.dumps(files))
        atomic_write(opts_path, json.dumps(fingerprint))


def read_state(path: Path) -> Any:
    """A JSON state file of the work folder, or None when it is missing or was cut by a kill (then
    it is not this conversion's state)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def remove_previous(out: Path, work: Path, manifest: dict[str, Any] | None) -> None:
    """Remove the conversion being overwritten, readers' indexes first (no reader may see old
    indexes over new shards), then its manifest and shards. The list is kept in the work folder
    until all is gone, so a run killed part-way finishes the removal when resumed."""
    listing = work / "previous.json"
    if manifest is not None:
        wids = [wids_name(manifest["prefix"], s) for s in manifest["splits"]]
        names = [*INFO_FILES, *wids, SIZES_FILE, CARD_FILE, CLASSES_FILE, MANIFEST]
        names += [n for s in manifest.get("shards", []) for n in (s["name"], idx_name(s["name"]))]
        atomic_write(listing, json.dumps(names))
    names = read_state(listing)
    if names is None:
        return
    for name in names:
        (out / name).unlink(missing_ok=True)
    listing.unlink()


def discard_work(out: Path, work: Path) -> None:
    """Delete the work folder of a finished conversion. It is renamed first: a clean-up killed
    part-way must not leave a work folder that looks unfinished."""
    os.replace(work, out / TRASH_DIR)
    shutil.rmtree(out / TRASH_DIR)
