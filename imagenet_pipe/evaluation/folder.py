"""The evaluated shard folder: its indexes and manifest, the splits chosen, and each sample's json
read back by offset."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import OptionsError, ShardError
from ..format import idx_name, iter_samples, read_idx, read_json
from ..loaders.shardset import BucketShards, LocalShards, ShardSet, open_shards


@dataclass(frozen=True)
class Folder:
    """A folder written by ``imagenet-pipe convert``: ``_info.json`` and (when present) the manifest."""

    root: Path  # for a bucket: the node's local copy of its metadata
    info: dict
    manifest: dict
    store: LocalShards | BucketShards | None = None  # where the shards are read from
    location: str = ""  # as given: the folder, or the bucket URL

    @classmethod
    def open(cls, location: str | Path, cache_dir: str | Path | None = None,
             cache_limit: int | str | None = None) -> Folder:
        """A local folder, or ``s3://bucket/prefix`` read through the node's shard cache."""
        store = open_shards(location, cache_dir, cache_limit)
        root = store.root
        info_path = root / "_info.json"
        if not info_path.exists():
            store.close()
            raise ShardError(f"{info_path} not found: point eval at a folder written by `imagenet-pipe convert`")
        manifest_path = root / "manifest.json"
        manifest = read_json(manifest_path) if manifest_path.exists() else {}
        return cls(root, read_json(info_path), manifest, store, str(location))

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def dataset(self) -> str:
        return self.manifest.get("dataset") or self.info.get("name", self.root.name)

    @property
    def num_classes(self) -> int:
        return int(self.manifest.get("num_classes") or self.info["num_classes"])

    @property
    def dataset_info(self) -> dict:
        return self.manifest.get("dataset_info") or {}

    @property
    def splits(self) -> list[str]:
        return list(self.info.get("splits", {}))

    def default_splits(self) -> list[str]:
        """Everything but training splits and alternative-label views of another split."""
        splits = self.info.get("splits", {})
        return [s for s, meta in splits.items() if not s.startswith("train") and "alt_label" not in meta]

    def matching(self, patterns: Sequence[str]) -> list[str]:
        """The patterns that match at least one of this folder's splits."""
        return [p for p in patterns if any(fnmatch.fnmatchcase(s, p) for s in self.splits)]

    def select(self, patterns: Sequence[str] | None) -> list[str]:
        """The splits named by ``patterns`` (names or globs, each must match), or the default ones."""
        available = self.splits
        if not patterns:
            chosen = self.default_splits()
            if not chosen:
                raise OptionsError(f"{self.root} has no evaluation split (has: {', '.join(available)}); name one "
                                   "with --splits")
            return chosen
        chosen = []
        for pattern in patterns:
            matches = [s for s in available if fnmatch.fnmatchcase(s, pattern)]
            if not matches:
                raise OptionsError(f"split {pattern!r} matches none of {self.root}'s splits ({', '.join(available)})")
            chosen += [s for s in matches if s not in chosen]
        return chosen


def read_json_members(shards: ShardSet, start: int, end: int) -> dict[str, dict]:
    """key -> parsed ``<key>.json`` for the global samples [start, end) of a split. Uses the DALI
    ``.idx`` offsets to read only the json members (the images are not read again)."""
    out: dict[str, dict] = {}
    for shard, first, count in shards.segments(start, end):
        idx = shards.root / idx_name(shards.names[shard])
        path = shards.shard_path(shard)
        try:
            if idx.exists():
                _json_by_offset(path, read_idx(idx)[first:first + count], out)
                continue
            for i, (key, sample) in enumerate(iter_samples(path)):
                if i >= first + count:
                    break
                if i >= first:
                    out[key] = json.loads(sample["json"]) if "json" in sample else {}
        finally:
            shards.release(shard)
    return out


def _json_by_offset(path: Path, samples: list, out: dict[str, dict]) -> None:
    with open(path, "rb") as f:
        for components in samples:
            key = components[0].name.rsplit("/", 1)[-1].split(".", 1)[0]
            member = next((c for c in components if c.ext == "json"), None)
            if member is None:
                out[key] = {}
                continue
            f.seek(member.offset)
            out[key] = json.loads(f.read(member.size))
