"""ImageNet-1K label rules shared by its three raw layouts (``docs/raw-layouts.md`` section 1).

* train: the wnid of the class folder / inner tar -> sorted index;
* validation: file ``ILSVRC2012_val_{i:08d}`` -> ground-truth line i (an ILSVRC2012_ID in devkit
  order) -> wnid (via ``meta.mat`` or the packaged ``map_clsloc`` table) -> sorted index; or the
  first token of the Kaggle ``PredictionString``; or valprep.sh's ``mv`` lines;
* ReaL: entry i-1 of ``real.json`` for val i, attached to the sample's json.
"""

from __future__ import annotations

import csv
import io
import re
import tarfile
import zlib
from pathlib import Path

from ..classes import ClassTable, devkit_ids, real_labels
from ..errors import ArchiveError
from .base import SourceError

VAL_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})\.(JPEG|jpeg|jpg|JPG)$")
TRAIN_NAME = re.compile(r"^(n\d{8})_(\d+)\.(JPEG|jpeg|jpg|JPG)$")
DEVKIT = "ILSVRC2012_devkit_t12"
GT_MEMBER = "data/ILSVRC2012_validation_ground_truth.txt"
META_MEMBER = "data/meta.mat"
NUM_VAL = 50_000
GT_LINE = re.compile(r"^\s*\d{1,4}\s*$")

TABLE = ClassTable.load("imagenet1k")


def val_number(name: str) -> int | None:
    m = VAL_NAME.match(name)
    return int(m.group(1)) if m else None


def parse_meta_mat(data: bytes, where: str = META_MEMBER) -> dict[int, str]:
    """ILSVRC2012_ID -> wnid for the 1000 leaves (``num_children == 0``) of a devkit meta.mat."""
    import scipy.io

    try:
        synsets = scipy.io.loadmat(io.BytesIO(data), squeeze_me=True)["synsets"]
        table = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets if int(s["num_children"]) == 0}
    except (scipy.io.matlab.MatReadError, ValueError, TypeError, KeyError, IndexError, OSError) as e:
        raise SourceError(f"{where}: not a devkit meta.mat ({type(e).__name__}: {e})") from None
    if len(table) != 1000:
        raise SourceError(f"{where} lists {len(table)} leaf synsets, expected 1000")
    return table


def parse_ground_truth(text: str, where: str) -> list[int]:
    """The 50,000 ILSVRC2012_IDs of the validation ground truth, line i = val i. A missing or extra
    line would shift every label after it, so the count must be exact and every line an integer."""
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    ids = []
    for number, line in enumerate(lines, 1):
        if not GT_LINE.match(line):
            raise SourceError(f"{where} line {number}: {line.strip()[:40]!r} is not an ILSVRC2012_ID")
        ids.append(int(line))
    if len(ids) != NUM_VAL:
        raise SourceError(f"{where} has {len(ids)} lines, expected {NUM_VAL} (one per validation image): a missing "
                          "or extra line would shift every label after it")
    return ids


def read_devkit(root: Path) -> tuple[list[int], dict[int, str]]:
    """(ground-truth IDs, ID -> wnid) from ``ILSVRC2012_devkit_t12.tar.gz`` or its extracted
    folder. Without meta.mat the packaged table (same IDs) is used."""
    archive = root / f"{DEVKIT}.tar.gz"
    folder = root / DEVKIT
    files: dict[str, bytes] = {}
    if archive.exists():
        files = _devkit_members(archive)
        where = archive.name + "/"
    elif folder.is_dir():
        for rel in (GT_MEMBER, META_MEMBER):
            if (folder / rel).exists():
                files[rel] = (folder / rel).read_bytes()
        where = f"{DEVKIT}/"
    else:
        raise SourceError(f"no {DEVKIT}.tar.gz (or {DEVKIT}/) in {root}: it holds the validation labels")
    if GT_MEMBER not in files:
        raise SourceError(f"the devkit in {root} has no {GT_MEMBER}")
    gt = parse_ground_truth(files[GT_MEMBER].decode("ascii", "replace"), where + GT_MEMBER)
    id_to_wnid = parse_meta_mat(files[META_MEMBER], where + META_MEMBER) if META_MEMBER in files else devkit_ids()
    return gt, id_to_wnid


def _devkit_members(archive: Path) -> dict[str, bytes]:
    files = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for info in tar:
                rel = info.name.split("/", 1)[-1] if "/" in info.name else info.name
                if info.isfile() and rel in (GT_MEMBER, META_MEMBER):
                    files[rel] = tar.extractfile(info).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise ArchiveError(f"{archive}: cannot read the devkit archive ({type(e).__name__}: {e}): truncated or "
                           "damaged; re-download it") from None
    return files


def devkit_val_label(number: int, gt: list[int], id_to_wnid: dict[int, str]) -> tuple[str, int]:
    """(wnid, sorted label) of ``ILSVRC2012_val_{number:08d}`` from the devkit ground truth."""
    if not 1 <= number <= len(gt):
        raise SourceError(f"validation image {number} has no line in the ground truth ({len(gt)} lines)")
    wnid = id_to_wnid.get(gt[number - 1])
    if wnid is None:
        raise SourceError(f"ground-truth line {number} holds {gt[number - 1]}, not an ILSVRC2012_ID of a class")
    return wnid, TABLE.label(wnid)


def kaggle_synsets(text: str) -> list[str]:
    """Wnids of ``LOC_synset_mapping.txt``; label = 0-based line number."""
    wnids = [line.split(" ", 1)[0] for line in text.splitlines() if line.strip()]
    if len(wnids) != 1000:
        raise SourceError(f"LOC_synset_mapping.txt has {len(wnids)} lines, expected 1000")
    return wnids


def kaggle_val_wnids(text: str) -> dict[str, str]:
    """ImageId -> wnid from ``LOC_val_solution.csv`` (class = first token of PredictionString)."""
    rows = csv.DictReader(io.StringIO(text))
    return {row["ImageId"]: row["PredictionString"].split()[0] for row in rows}


def valprep_wnids(text: str) -> dict[str, str]:
    """File name -> wnid from soumith's valprep.sh (``mv <file> <wnid>/`` lines, tab-terminated)."""
    table = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "mv":
            table[parts[1]] = parts[2].rstrip("/")
    return table


def real_extra(number: int) -> dict:
    """The ReaL labels of val ``number`` (1-based); an empty list means 'exclude from ReaL'."""
    labels = real_labels()
    if number > len(labels):
        raise SourceError(f"validation image {number} is beyond the {len(labels)} ReaL entries")
    return {"real_labels": sorted(labels[number - 1])}


def train_label(wnid: str, name: str) -> int:
    m = TRAIN_NAME.match(name)
    if m and m.group(1) != wnid:
        raise SourceError(f"{name} is filed under class {wnid} but its name says {m.group(1)}")
    return TABLE.label(wnid)
