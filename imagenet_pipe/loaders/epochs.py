"""Epochs, ``set_epoch`` and resumable state, shared by both backends (they differ only in how a
planned batch becomes tensors).

Each ``iter(loader)`` is one pass over an epoch of the :mod:`.plan`. A pass starts where the loader
stands: at the start of epoch 0; after a completed (or abandoned) pass, at the start of the next
epoch; after ``set_epoch(e)``, at the start of epoch ``e``; after ``load_state_dict(state)``, at
the batch after the last one the saved run had yielded. ``state_dict()`` is small and
JSON-serialisable, and can be taken at any time, including after breaking out of a pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .common import Batch, make_batch
from .config import LoaderConfig, LoaderConfigError
from .mixup import Mixer, soft_targets_on
from .plan import EpochPlan, PlanArgs, eval_range, steps_per_epoch
from .shardset import DistInfo, ShardSet, dist_info

STATE_FORMAT = "imagenet-pipe-loader/1"
# what fixes the order and the random draws: a state from another value of these cannot be resumed
_FIXED = ("split", "shards", "mode", "seed", "shuffle_block", "aug_repeats")
_FIXED_DEFAULTS = {"aug_repeats": 1}  # states saved before the key existed


class PlannedLoader:
    """Base of the loader backends: subclasses implement :meth:`_batches`."""

    backend = ""

    def __init__(self, shards: ShardSet, cfg: LoaderConfig, dist: DistInfo | None = None) -> None:
        self.shards, self.cfg = shards, cfg
        self.dist = dist or dist_info()
        world, n = self.dist.world_size, shards.num_samples
        if world > n:
            raise LoaderConfigError(f"{world} ranks but only {n} samples in {shards.split!r}")
        self.train = cfg.mode == "train"
        self.plan_args = PlanArgs(n, shards.lengths, cfg.batch_size, world, self.dist.rank, self.train,
                                  cfg.seed, cfg.shuffle_block, max(1, cfg.aug_repeats))
        self.mixer = Mixer(cfg, self._num_classes(shards, cfg)) if soft_targets_on(cfg) else None
        self.steps = steps_per_epoch(self.plan_args)
        if self.train and self.steps == 0:
            raise LoaderConfigError(f"batch size {cfg.batch_size} x {world} ranks exceeds the {n} samples of "
                                    f"{shards.split!r}")
        lo, hi = eval_range(self.plan_args)
        self.num_samples = self.steps * cfg.batch_size if self.train else hi - lo  # per rank and epoch
        self.epoch = 0  # the epoch of the current (or last) pass
        self.skipped: list[tuple[str, str, str]] = []  # (shard, key, reason) with on_error="skip"
        self._position = (0, 0)  # (epoch, consumed) where the next pass starts
        self._pass_open = False  # a pass was started and has not finished
        self._left = 0  # batches the open pass has not yielded yet
        self._passes = 0

    @staticmethod
    def _num_classes(shards: ShardSet, cfg: LoaderConfig) -> int:
        """Classes of the soft targets: ``num_classes``, else the shard set's."""
        if cfg.num_classes is None and shards.num_classes is None:
            raise LoaderConfigError("mixup/cutmix/label_smoothing make soft targets: set num_classes (the shard "
                                    "set does not record it)")
        if cfg.num_classes is not None and shards.num_classes is not None and cfg.num_classes < shards.num_classes:
            raise LoaderConfigError(f"num_classes={cfg.num_classes}, but the shard set has {shards.num_classes}")
        return cfg.num_classes or shards.num_classes

    def __len__(self) -> int:
        """Batches per full epoch (a pass resumed mid-epoch yields the rest of it)."""
        return self.steps

    def set_epoch(self, epoch: int) -> None:
        """The next pass is epoch ``epoch``, from its start (DistributedSampler's convention)."""
        self._position, self._pass_open = (int(epoch), 0), False

    def state_dict(self) -> dict[str, Any]:
        """Where this loader stands: the epoch and the samples consumed in it (all ranks together
        when training), plus what must not change for a resume."""
        epoch, consumed = self._position
        if self._pass_open and not self._left:  # the last batch was yielded: the epoch is over
            epoch, consumed = epoch + 1, 0
        return {"format": STATE_FORMAT, "split": self.shards.split, "shards": self.shards.fingerprint,
                "mode": self.cfg.mode, "seed": self.cfg.seed, "shuffle_block": self.cfg.shuffle_block,
                "aug_repeats": self.plan_args.aug_repeats,
                "batch_size": self.cfg.batch_size, "world_size": self.dist.world_size, "rank": self.dist.rank,
                "epoch": epoch, "consumed": consumed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (from :meth:`state_dict`, possibly of another process). Training
        may resume on another world size or batch size, even mid-epoch (no sample repeated or left
        out); evaluation mid-pass needs the same world size, rank and batch size."""
        if state.get("format") != STATE_FORMAT:
            raise LoaderConfigError(f"not a loader state of this version (format {state.get('format')!r}, "
                                    f"expected {STATE_FORMAT!r})")
        mine = self.state_dict()
        changed = [f"{k}: saved {state.get(k)!r}, now {mine[k]!r}" for k in _FIXED
                   if state.get(k, _FIXED_DEFAULTS.get(k)) != mine[k]]
        epoch, consumed = int(state["epoch"]), int(state["consumed"])
        if not self.train and consumed:
            changed += [f"{k}: saved {state.get(k)!r}, now {mine[k]!r}" for k in ("world_size", "rank", "batch_size")
                        if state.get(k) != mine[k]]
        if changed:
            raise LoaderConfigError("the saved loader state does not match this loader (" + "; ".join(changed) + ")")
        limit = self.shards.num_samples if self.train else self.num_samples
        if not 0 <= consumed <= limit:
            raise LoaderConfigError(f"saved position {consumed} is outside the split's {limit} samples")
        self._position, self._pass_open = (epoch, consumed), False

    def __iter__(self) -> Iterator[Batch]:
        if self._pass_open:  # the previous pass was abandoned: the next one is the next epoch
            self._position = (self._position[0] + 1, 0)
        epoch, consumed = self._position
        plan = EpochPlan(self.plan_args, epoch, consumed)
        self.epoch, self._pass_open = epoch, True
        self._passes += 1
        this_pass, self._left = self._passes, plan.steps
        for done, batch in enumerate(self._batches(plan), start=1):
            if this_pass != self._passes:
                raise RuntimeError("another pass over this loader was started; one pass at a time")
            self._position, self._left = (epoch, plan.consumed_after(done)), plan.steps - done
            yield self._soft_targets(batch, epoch, plan.position(done - 1)) if self.mixer else batch
        if this_pass == self._passes:
            self._position, self._pass_open = (epoch + 1, 0), False

    def _soft_targets(self, batch: Batch, epoch: int, position: int) -> Batch:
        """Mixup/cutmix on the output device and soft targets, keyed by where the batch starts."""
        images, targets = self.mixer(batch.images, batch.labels, epoch, position, self.cfg.memory_format == "nhwc")
        return make_batch(images, targets, getattr(batch, "keys", []), self.cfg)

    def _batches(self, plan: EpochPlan) -> Iterator[Batch]:
        raise NotImplementedError

    owns_shards = False  # set by build_loader, which opened the shard set (and its cache) for this loader

    def close(self) -> None:
        """Free the loader's threads and files; a shard set it opened is closed too (for a bucket
        without cache_dir that removes the temporary cache)."""
        if self.owns_shards:
            self.shards.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

