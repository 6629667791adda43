"""The epoch plan both loader backends follow: which samples each rank gets, in which order, and
where a resumed run continues. Pure functions of the arguments; nothing is read from disk.

Training. Epoch ``e`` has one *global* order of the split's ``n`` samples, a function of ``(seed,
e)`` only: the shard order is permuted, and the samples are permuted within consecutive blocks of
``shuffle_block`` positions (``0``: one permutation of the whole split). The shards were globally
shuffled when they were written, so a block is a random sample of the dataset, and a rank never
needs more than a block's shards at once (what streaming from object storage or a disk cache
needs). The order is consumed in global steps of ``world * batch`` samples; rank ``r`` takes every
``world``-th sample of a step, starting at its ``r``-th (as DistributedSampler and DeiT's repeated
augmentation sampler deal indices, so that neighbouring positions go to different ranks). So
within an epoch no sample repeats, the ranks are disjoint, every rank takes the same number of
steps, and only the remainder ``n mod (world * batch)`` is left out.

Repeated augmentation (DeiT's ``aug_repeats`` = r > 1): each sample of the order is repeated r
times in a row and the result cut to ``n`` positions, so an epoch keeps its length (about n / r
distinct samples, r copies each). Consecutive positions go to different ranks, so with ``world >=
r`` the copies of a sample land on r different ranks, as DeiT's RASampler deals them. Each copy has
its own *draw id* (``sample + copy * n``; the sample id itself for the first copy), which keys its
random decisions: the copies are augmented independently.

Because the order does not depend on the world size, a run can resume on another world size, even
mid-epoch: the samples consumed so far are the first ``consumed`` positions of the order, whatever
the world size was; the rest is dealt to the new ranks the same way.

Evaluation. Rank ``r`` reads the contiguous range ``[n r / world, n (r + 1) / world)`` in stored
order, in batches of ``batch`` with a smaller last batch: over all ranks every sample exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PlanArgs:
    """What fixes the plan of a split (recorded in the loader's state)."""

    num_samples: int
    shard_lengths: tuple[int, ...]
    batch_size: int
    world_size: int
    rank: int
    train: bool
    seed: int = 0
    shuffle_block: int = 0
    aug_repeats: int = 1  # repeated augmentation: copies of each sample per epoch (training)

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, {self.world_size})")


def training_order(args: PlanArgs, epoch: int) -> np.ndarray:
    """The global sample order of a training epoch (int64 sample ids), the same on every rank."""
    rng = np.random.default_rng([args.seed, epoch, 0x51A4])
    starts = np.concatenate([[0], np.cumsum(args.shard_lengths)[:-1]]).astype(np.int64)
    order = np.concatenate([np.arange(starts[s], starts[s] + args.shard_lengths[s], dtype=np.int64)
                            for s in rng.permutation(len(args.shard_lengths))])
    block = args.shuffle_block if args.shuffle_block > 0 else len(order)
    for lo in range(0, len(order), block):
        order[lo:lo + block] = rng.permutation(order[lo:lo + block])
    return order


def steps_per_epoch(args: PlanArgs, consumed: int = 0) -> int:
    """Batches each rank yields in an epoch (training: after ``consumed`` samples of it)."""
    if args.train:
        return (args.num_samples - consumed) // (args.world_size * args.batch_size)
    lo, hi = eval_range(args)
    return -(-(hi - lo - consumed) // args.batch_size)


def rank_range(num_samples: int, rank: int, world_size: int) -> tuple[int, int]:
    """The contiguous global sample range rank ``rank`` of ``world_size`` evaluates."""
    return num_samples * rank // world_size, num_samples * (rank + 1) // world_size


def eval_range(args: PlanArgs) -> tuple[int, int]:
    return rank_range(args.num_samples, args.rank, args.world_size)


class EpochPlan:
    """The batches of one epoch for one rank, from a position on: ``batch(i)`` is the sample ids of
    the ``i``-th batch yielded from that position. ``consumed`` is counted in global samples for
    training (positions of the order, all ranks together) and in this rank's samples for evaluation."""

    def __init__(self, args: PlanArgs, epoch: int, consumed: int = 0) -> None:
        self.args, self.epoch, self.consumed = args, epoch, consumed
        self.order = self.copy = None
        if args.train:
            repeats = max(1, args.aug_repeats)
            self.order = np.repeat(training_order(args, epoch), repeats)[:args.num_samples]
            self.copy = np.tile(np.arange(repeats, dtype=np.int64), args.num_samples)[:args.num_samples]
        self.steps = steps_per_epoch(args, consumed)

    def _positions(self, i: int) -> slice | np.ndarray:
        a = self.args
        if not 0 <= i < self.steps:
            raise IndexError(f"batch {i} of an epoch plan with {self.steps} batches")
        start = self.position(i)
        if a.train:  # rank r: positions r, r + world, ... of the global step
            return slice(start, start - a.rank + a.world_size * a.batch_size, a.world_size)
        return np.arange(start, min(start + a.batch_size, eval_range(a)[1]), dtype=np.int64)

    def batch(self, i: int) -> np.ndarray:
        """The sample ids of the ``i``-th batch."""
        where = self._positions(i)
        return self.order[where] if self.args.train else where

    def draw_ids(self, i: int) -> np.ndarray:
        """What keys the random decisions of the ``i``-th batch's samples: the sample id, plus
        ``copy x num_samples`` for the further copies of repeated augmentation."""
        where = self._positions(i)
        if not self.args.train:
            return where
        return self.order[where] + self.copy[where] * self.args.num_samples

    def position(self, i: int) -> int:
        """Where this rank's ``i``-th batch starts: its first sample's position in the epoch's global
        order (training) or in the split (evaluation). It keys per-batch decisions (mixing) by the
        plan alone, however the epoch was reached (straight, ``set_epoch``, resumed)."""
        a = self.args
        if a.train:
            return self.consumed + i * a.world_size * a.batch_size + a.rank
        return eval_range(a)[0] + self.consumed + i * a.batch_size

    def positions(self, first: int, end: int) -> np.ndarray:
        """The sample ids of batches ``[first, end)`` of every rank (what a node reads meanwhile)."""
        a = self.args
        if a.train:
            step = a.world_size * a.batch_size
            return self.order[self.consumed + first * step:self.consumed + end * step]
        return np.concatenate([self.batch(i) for i in range(first, end)] or [np.zeros(0, np.int64)])

    def consumed_after(self, batches: int) -> int:
        """The ``consumed`` value after this rank has yielded ``batches`` batches of the plan."""
        a = self.args
        if a.train:
            return self.consumed + batches * a.world_size * a.batch_size
        lo, hi = eval_range(a)
        return min(self.consumed + batches * a.batch_size, hi - lo)
