"""Every consumer's index, written beside the shards from the shard records (no re-scan);
the formats are those of ``docs/shard-format.md``, sections 5-9.

* ``_info.json`` (+ identical ``info.json`` for timm <= 0.9.12): timm's wds reader;
* ``<prefix>-<split>.json``: wids shard index (``wids-shard-index-v1``);
* ``sizes.json``: open_clip's per-shard sample counts;
* ``classes.tsv``: ``index<TAB>wnid<TAB>names``;
* ``README.md``: a Hugging Face dataset card whose YAML lists each split's shards
  (``configs: data_files``) and the sample features with per-split counts (``dataset_info``), so
  that ``datasets.load_dataset(<folder>)`` reads the shards (without it, HF's pattern matching
  takes the wids ``<prefix>-<split>.json`` files for data whenever a split has one shard).

The DALI ``.idx`` files are written by :class:`~imagenet_pipe.conversion.writer.ShardWriter` itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from ..classes import ClassTable
from ..files import atomic_write
from ..format import CARD_FILE, CLASSES_FILE, INFO_FILES, SIZES_FILE, wids_name

# every sample's json: these fields, plus those of its dataset (SAMPLE_EXTRA_FIELDS, image flags)
SAMPLE_FIELDS = {"label": "int64", "wnid": "string", "width": "int64", "height": "int64", "filename": "string",
                 "hygiene": "list[string]"}
SAMPLE_EXTRA_FIELDS = {"real_labels": "list[int64]", "label_200": "int64", "corruption": "string",
                       "severity": "int64", "all_black": "bool"}
HF_SPLIT = re.compile(r"\W")  # HF split names are \w+ (ImageNet-C's 'gaussian_noise-3' -> 'gaussian_noise_3')


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


def sample_fields(extras: Iterable[dict[str, Any]], flags: Iterable[str]) -> dict[str, str]:
    """Name -> type of every field of the samples' json, from the dataset-specific fields of one
    sample per split (a split's samples all carry the same fields) and the image flags."""
    fields = dict(SAMPLE_FIELDS)
    for extra in extras:
        for name, value in sorted(extra.items()):
            fields.setdefault(name, SAMPLE_EXTRA_FIELDS.get(name) or _value_type(value))
    for flag in flags:
        fields[flag] = "bool"
    return fields


def _value_type(value: Any) -> str:
    if isinstance(value, list):
        return f"list[{_value_type(value[0]) if value else 'string'}]"
    return {bool: "bool", int: "int64", float: "float64"}.get(type(value), "string")


def hf_split_name(split: str) -> str:
    return HF_SPLIT.sub("_", split)


def dataset_card(manifest: dict[str, Any]) -> str:
    """README.md with the YAML header Hugging Face ``datasets`` reads: the shard files of each split
    (exact names, not patterns) and the features, so no schema is guessed from a few samples."""
    shards: dict[str, list[str]] = {}
    for shard in manifest["shards"]:
        shards.setdefault(shard["split"], []).append(shard["name"])
    counts = {split: manifest["splits"][split]["written"] for split in shards}
    sizes = {split: sum(s["bytes"] for s in manifest["shards"] if s["split"] == split) for split in shards}
    struct = [_hf_feature(name, kind) for name, kind in manifest.get("sample_fields", SAMPLE_FIELDS).items()]
    header = {
        "pretty_name": f"{manifest['dataset']} (WebDataset shards written by imagenet-pipe)",
        "task_categories": ["image-classification"],
        "configs": [{"config_name": "default", "data_files": [
            {"split": hf_split_name(split), "path": names} for split, names in shards.items()]}],
        "dataset_info": {
            "features": [{"name": "cls", "dtype": "int64"}, {"name": "jpg", "dtype": "image"},
                         {"name": "json", "struct": struct}, {"name": "__key__", "dtype": "string"},
                         {"name": "__url__", "dtype": "string"}],
            # num_bytes: of the shards (HF's own figure is of its Arrow cache, not known here)
            "splits": [{"name": hf_split_name(split), "num_bytes": sizes[split], "num_examples": n}
                       for split, n in counts.items()],
        },
    }
    renamed = [f"`{s}` as `{hf_split_name(s)}`" for s in shards if hf_split_name(s) != s]
    body = [f"# {manifest['dataset']}", "",
            f"{manifest['totals']['written']} samples in {len(manifest['shards'])} WebDataset shards "
            f"({', '.join(f'{s}: {n}' for s, n in counts.items())}), written by `imagenet-pipe convert`. "
            "Each sample is `<key>.cls` (label), `<key>.jpg` (RGB JPEG) and `<key>.json` (label, wnid, width, "
            "height, original filename, hygiene actions, dataset fields). `manifest.json` lists every shard "
            "with its sha256, the quarantined files with their reasons and the hygiene actions; "
            "`imagenet-pipe verify <folder>` checks the folder against it.", "",
            "```python", "import datasets", "ds = datasets.load_dataset(\"<this folder>\")", "```"]
    if renamed:
        body += ["", "Hugging Face split names are `\\w+`: " + ", ".join(renamed) + "."]
    return "---\n" + yaml.safe_dump(header, sort_keys=False, width=1000) + "---\n\n" + "\n".join(body) + "\n"


def _hf_feature(name: str, kind: str) -> dict[str, Any]:
    if kind.startswith("list["):
        return {"name": name, "list": kind[len("list["):-1]}
    return {"name": name, "dtype": kind}


def write_indexes(out: Path, manifest: dict[str, Any], classes: ClassTable) -> None:
    info = json.dumps(timm_info(manifest), indent=1) + "\n"
    for name in INFO_FILES:
        atomic_write(out / name, info)
    for split in dict.fromkeys(s["split"] for s in manifest["shards"]):
        wids = json.dumps(wids_index(manifest, split), indent=1) + "\n"
        atomic_write(out / wids_name(manifest["prefix"], split), wids)
    atomic_write(out / SIZES_FILE, json.dumps(sizes_index(manifest), indent=1) + "\n")
    atomic_write(out / CLASSES_FILE, classes.to_tsv())
    atomic_write(out / CARD_FILE, dataset_card(manifest))
