"""The parallel scan: the class tars of a tar of tars (ImageNet-1K train, fall11, winter21) are
listed by workers and merged in archive order, so the catalog, its container ids, the ignored
files and warnings (in their order), the first error and the output bytes are those of a serial
scan, whatever finishes first."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from imagenet_pipe.conversion import convert, resolve_options
from imagenet_pipe.conversion.scan import scan
from imagenet_pipe.conversion.workers import LocalExecutor, PhaseTask
from imagenet_pipe.errors import ArchiveError
from imagenet_pipe.fakes import damage
from imagenet_pipe.fakes.common import write_tar_file
from imagenet_pipe.fakes.imagenet1k import make_imagenet1k
from imagenet_pipe.fakes.imagenet21k import make_imagenet21k, plan

from .conftest import quiet

TRAIN_TAR = "ILSVRC2012_img_train.tar"


class Backwards(LocalExecutor):
    """Runs every item in this process, the last one first, and gives the results (or raises the
    errors) in item order: a finish order as unlike the archive's as possible."""

    def map(self, task, items, *, ordered=False):
        task.start()
        try:
            done = {}
            for i in reversed(range(len(items))):
                try:
                    done[i] = (task(items[i]), None)
                except Exception as e:  # raised at its turn, as an ordered map must
                    done[i] = (None, e)
        finally:
            task.stop()
        for i in range(len(items)):
            result, error = done[i]
            if error is not None:
                raise error
            yield result


def scanned(src: Path, work: Path, dataset: str, executor, **options):
    """(catalog fingerprint, container entries, ignored, warnings) of one scan; a spool tar's path
    is given from the work folder (each scan has its own)."""
    opts = resolve_options(dataset, src, **options)
    work.mkdir(parents=True)
    catalog, info = scan(opts, work, "imagenet1k" if dataset == "imagenet1k" else "imagenet21k",
                         executor=executor, log=quiet)
    containers = [(kind, path.replace(str(work), "<work>")) for kind, path in catalog.containers.entries]
    return catalog.fingerprint(), containers, info.ignored, info.warnings


EXECUTORS = {"serial": None, "pool": LocalExecutor(2), "backwards": Backwards()}


@pytest.fixture(scope="module")
def odd_train_tar(tmp_path_factory, fake1k) -> Path:
    """The official 1K fake whose train tar also holds a non-class member between class tars, a
    class tar with a non-image member followed by a link, hard link and FIFO, and a class tar
    without its end-of-archive blocks: notes of the listing interleaved with the reader's own."""
    src = tmp_path_factory.mktemp("odd")
    make_imagenet1k(src, "official", fake=fake1k)
    wnids = sorted(fake1k.train_counts)
    specials = {f"{wnids[0]}_90001.JPEG": ("symlink", "x.JPEG"), f"{wnids[0]}_90002.JPEG": ("fifo", "")}
    damage.edit_member(src / TRAIN_TAR, f"{wnids[0]}.tar", lambda tar: damage.with_special_members(
        damage.with_members(tar, [("README.txt", b"not an image")]), specials))
    damage.edit_member(src / TRAIN_TAR, f"{wnids[1]}.tar", damage.without_end_blocks)
    members = damage.read_members(src / TRAIN_TAR)
    write_tar_file(src / TRAIN_TAR, [*members[:3], ("notes.txt", b"hello"), *members[3:]])
    return src


@pytest.mark.parametrize("name", ["pool", "backwards"])
def test_a_parallel_scan_of_the_1k_train_tar_equals_the_serial_one(tmp_path, odd_train_tar, fake1k, name):
    serial = scanned(odd_train_tar, tmp_path / "serial", "imagenet1k", None)
    assert scanned(odd_train_tar, tmp_path / name, "imagenet1k", EXECUTORS[name]) == serial
    _, _, ignored, warnings = serial
    wnids = sorted(fake1k.train_counts)
    inner = [i["file"] for i in ignored if i["file"].startswith(f"{TRAIN_TAR}/{wnids[0]}.tar/")]
    assert [f.rsplit("/", 1)[1] for f in inner] == ["README.txt", f"{wnids[0]}_90001.JPEG", f"{wnids[0]}_90002.JPEG"]
    assert {"file": f"{TRAIN_TAR}/notes.txt", "reason": "not a <wnid>.tar class archive"} in ignored
    assert len(warnings) == 1 and warnings[0].startswith(f"{TRAIN_TAR}/{wnids[1]}.tar: ends after its last member")


@pytest.mark.parametrize("layout", ["fall11", "winter21"])
def test_a_parallel_scan_of_21k_equals_the_serial_one(tmp_path, layout):
    src = tmp_path / "raw"
    make_imagenet21k(src, layout, fake=plan(num_classes=9, max_per_class=8, style="small", seed=3))
    options = {"dataset_options": {"holdout_per_class": 1}}
    serial = scanned(src, tmp_path / "serial", "imagenet21k", None, **options)
    for name in ("pool", "backwards"):
        assert scanned(src, tmp_path / name, "imagenet21k", EXECUTORS[name], **options) == serial, name


def test_the_first_damaged_class_tar_in_archive_order_is_the_error(tmp_path, fake1k):
    src = tmp_path / "raw"
    make_imagenet1k(src, "official", fake=fake1k)
    order = [name for name, _ in damage.read_members(src / TRAIN_TAR)]  # the archive's order, not sorted
    damage.edit_member(src / TRAIN_TAR, order[2], lambda tar: damage.break_header_checksum(tar, 1))
    damage.edit_member(src / TRAIN_TAR, order[5], lambda tar: damage.cut_in_data(tar, 1))
    messages = []
    for name, executor in EXECUTORS.items():
        with pytest.raises(ArchiveError) as caught:
            scanned(src, tmp_path / name, "imagenet1k", executor, splits=["train"])
        messages.append(str(caught.value))
    assert messages == [messages[0]] * 3
    assert re.match(re.escape(f"{TRAIN_TAR}/{order[2]}: damaged tar header at offset"), messages[0])


class SlowFirst(PhaseTask[int, tuple[int, int]]):
    """Item i takes longer the smaller i is, so later items finish first."""

    def __call__(self, item: int) -> tuple[int, int]:
        time.sleep(0.05 * (4 - item))
        return item, os.getpid()


def test_an_ordered_map_gives_results_in_item_order_from_the_pool():
    got = list(LocalExecutor(2).map(SlowFirst(), [0, 1, 2, 3], ordered=True))
    assert [item for item, _ in got] == [0, 1, 2, 3]
    assert os.getpid() not in {pid for _, pid in got}
    assert sorted(item for item, _ in LocalExecutor(2).map(SlowFirst(), [0, 1, 2, 3])) == [0, 1, 2, 3]


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


@pytest.mark.parametrize("layout", ["fall11", "winter21"])
def test_21k_converts_to_the_same_bytes_with_one_or_two_workers(tmp_path, layout):
    src = tmp_path / "raw"
    make_imagenet21k(src, layout, fake=plan(num_classes=9, max_per_class=8, style="small", seed=3))
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        convert("imagenet21k", src, out, workers=workers, shard_size=5, progress=False, log=quiet,
                dataset_options={"holdout_per_class": 1})
        outs.append(_files(out))
    assert outs[0].keys() == outs[1].keys() and len(outs[0]) > 5
    assert [name for name in outs[0] if outs[0][name] != outs[1][name]] == []
