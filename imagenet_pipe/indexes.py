"""Every consumer's index, written beside the shards from the shard records (no re-scan).

* ``_info.json`` (+ identical ``info.json`` for timm <= 0.9.12): timm's wds reader;
* ``<prefix>-<split>.json``: wids shard index (``wids-shard-index-v1``);
* ``sizes.json``: open_clip's per-shard sample counts;
* ``classes.tsv``: ``index<TAB>wnid<TAB>names``.

The DALI ``.idx`` files are written by :class:`~imagenet_pipe.shards.ShardWriter` itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .classes import ClassTable
from .errors import ShardError

INFO_FILES = ("_info.json", "info.json")


def timm_info(manifest: dict[str, Any]) -> dict[str, Any]:
    splits: dict[str, Any] = {}
    for shard in manifest["shards"]:
        split = splits.setdefault(shard["split"], {"name": shard["split"], "filenames": [], "shard_lengths": []})
        split["filenames"].append(shard["name"])
        split["shard_lengths"].append(shard["samples"])
    for split in splits.values():
        split["num_samples"] = sum(split["shard_lengths"])
    for name, alt in manifest.get("alt_splits", {}).items():
        splits[name] = alt
    return {"name": manifest["prefix"], "num_classes": manifest["num_classes"], "splits": splits}


def wids_index(manifest: dict[str, Any], split: str) -> dict[str, Any]:
    shards = [s for s in manifest["shards"] if s["split"] == split]
    return {
        "__kind__": "wids-shard-index-v1",
        "wids_version": 1,
        "shardlist": [{"url": s["name"], "nsamples": s["samples"], "filesize": s["bytes"]} for s in shards],
        "name": f"{manifest['prefix']}-{split}",
    }


def sizes_index(manifest: dict[str, Any]) -> dict[str, int]:
    """open_clip's ``sizes.json``: shard file name -> samples."""
    return {s["name"]: s["samples"] for s in manifest["shards"]}


def wids_name(prefix: str, split: str) -> str:
    return f"{prefix}-{split}.json"


def write_indexes(out: Path, manifest: dict[str, Any], classes: ClassTable) -> None:
    info = json.dumps(timm_info(manifest), indent=1) + "\n"
    for name in INFO_FILES:
        atomic_write(out / name, info)
    for split in dict.fromkeys(s["split"] for s in manifest["shards"]):
        wids = json.dumps(wids_index(manifest, split), indent=1) + "\n"
        atomic_write(out / wids_name(manifest["prefix"], split), wids)
    atomic_write(out / "sizes.json", json.dumps(sizes_index(manifest), indent=1) + "\n")
    atomic_write(out / "classes.tsv", classes.to_tsv())


def read_json(path: Path) -> Any:
    """A JSON file of an output folder; a missing or damaged one is a :class:`ShardError` naming it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ShardError(f"{path}: not found") from None
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ShardError(f"{path}: not readable JSON ({e})") from None


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` under a temporary name and rename it into place."""
    tmp = path.with_name(f"{path.name}.partial-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
