"""Mixup / CutMix and label smoothing on whole batches, on the output device, with timm's
``Mixup`` semantics (``timm/data/mixup.py``): image ``i`` is mixed with image ``N - 1 - i`` (the
batch flipped); ``mixup_mode`` "batch" draws one lambda for the batch, "pair" one per pair, "elem"
one per image. A mixed batch (share ``mixup_prob``) is a cutmix one with probability
``switch_prob`` when both are on. Mixup lambda ~ Beta(mixup_alpha, mixup_alpha); cutmix pastes a
box of area ~(1 - lambda) (lambda ~ Beta(cutmix_alpha, cutmix_alpha), or sides uniform in
``cutmix_minmax``) and sets lambda to the share of the image it kept. Labels become soft targets
``lambda * onehot(y) + (1 - lambda) * onehot(flipped y)`` of smoothed one-hots (on ``1 - s + s/C``,
off ``s/C``), float32 ``(N, num_classes)``.

Every draw comes from a generator keyed by ``(seed, epoch, position)``, the position being where
the rank's batch starts in the epoch's order: a pure function of the plan, so a resumed or
repeated epoch mixes exactly as before, with no state to save.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from .config import LoaderConfig

_STREAM = 0x4D1C  # keeps the mixing generator apart from the plan's


@dataclass
class MixDecisions:
    """Per image: ``lam`` (weight of its own label), ``cutmix`` (bool) and ``boxes`` (N, 4) rows
    (top, bottom, left, right) of the region taken from its partner ``N - 1 - i``."""

    lam: np.ndarray
    cutmix: np.ndarray
    boxes: np.ndarray


def mixing_on(cfg: LoaderConfig) -> bool:
    return cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0 or cfg.cutmix_minmax is not None


def soft_targets_on(cfg: LoaderConfig) -> bool:
    """Whether labels become soft targets (mixing or label smoothing)."""
    return mixing_on(cfg) or cfg.label_smoothing > 0


def cutmix_box(rng: np.random.Generator, lam: float, height: int, width: int,
               minmax: tuple[float, float] | None) -> tuple[tuple[int, int, int, int], float]:
    """timm's cutmix box (top, bottom, left, right) and the lambda it leaves (the kept share)."""
    if minmax is not None:
        cut_h = int(rng.integers(int(height * minmax[0]), int(height * minmax[1])))
        cut_w = int(rng.integers(int(width * minmax[0]), int(width * minmax[1])))
        top, left = int(rng.integers(0, height - cut_h)), int(rng.integers(0, width - cut_w))
        box = (top, top + cut_h, left, left + cut_w)
    else:  # a box of sides sqrt(1 - lam) around a uniform centre, clipped by the borders
        ratio = np.sqrt(1.0 - lam)
        cut_h, cut_w = int(height * ratio), int(width * ratio)
        cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
        box = (int(np.clip(cy - cut_h // 2, 0, height)), int(np.clip(cy + cut_h // 2, 0, height)),
               int(np.clip(cx - cut_w // 2, 0, width)), int(np.clip(cx + cut_w // 2, 0, width)))
    return box, 1.0 - (box[1] - box[0]) * (box[3] - box[2]) / float(height * width)


@contextmanager
def _one_torch_thread(device: torch.device) -> Iterator[None]:
    """On the CPU the loader's own threads are busy preparing the next batches while a batch is
    mixed: torch's intra-op pool would fight them for the cores, and its waiting threads cost more
    than the parallel speed-up (BENCHMARKS.md: -0.5 CPU ms per image with one thread)."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class Mixer:
    """Mixes a batch and makes its soft targets (one per loader, config resolved once)."""

    def __init__(self, cfg: LoaderConfig, num_classes: int) -> None:
        self.cfg, self.num_classes = cfg, num_classes
        # timm: cutmix_minmax forces cutmix alpha 1
        self.cutmix_alpha = 1.0 if cfg.cutmix_minmax is not None else cfg.cutmix_alpha

    def _lambdas(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """timm's ``_params_per_elem`` for ``n`` draws (``_params_per_batch`` is n = 1)."""
        cfg, mix, cut = self.cfg, self.cfg.mixup_alpha, self.cutmix_alpha
        mixed = rng.random(n) < cfg.mixup_prob
        if mix > 0 and cut > 0:
            use_cutmix = rng.random(n) < cfg.switch_prob
            lam = np.where(use_cutmix, rng.beta(cut, cut, n), rng.beta(mix, mix, n))
        elif mix > 0:
            use_cutmix, lam = np.zeros(n, bool), rng.beta(mix, mix, n)
        else:
            use_cutmix, lam = np.ones(n, bool), rng.beta(cut, cut, n)
        return np.where(mixed, lam, 1.0), use_cutmix & mixed

    def decide(self, epoch: int, position: int, n: int, height: int, width: int) -> MixDecisions:
        """The mixing of the ``n``-image batch starting at ``position`` of epoch ``epoch``."""
        cfg = self.cfg
        lam, cutmix, boxes = np.ones(n), np.zeros(n, bool), np.zeros((n, 4), np.int64)
        if not mixing_on(cfg) or (cfg.mixup_off_epoch and epoch >= cfg.mixup_off_epoch) or n == 0:
            return MixDecisions(lam, cutmix, boxes)
        rng = np.random.default_rng([cfg.seed, epoch, position, _STREAM])
        draws = {"batch": 1, "pair": n // 2, "elem": n}[cfg.mixup_mode]
        lam_d, cut_d = self._lambdas(rng, draws)
        for d in range(draws):
            if cut_d[d] and lam_d[d] < 1.0:
                box, lam_d[d] = cutmix_box(rng, lam_d[d], height, width, cfg.cutmix_minmax)
                boxes[d] = box
        if cfg.mixup_mode == "batch":
            return MixDecisions(np.full(n, lam_d[0]), np.full(n, cut_d[0]), np.tile(boxes[0], (n, 1)))
        if cfg.mixup_mode == "pair":  # image N-1-i mirrors pair i; an odd batch's middle image is left alone
            lam[:draws], cutmix[:draws], boxes[:draws] = lam_d, cut_d, boxes[:draws]
            lam[n - draws:], cutmix[n - draws:], boxes[n - draws:] = lam_d[::-1], cut_d[::-1], boxes[:draws][::-1]
            return MixDecisions(lam, cutmix, boxes)
        return MixDecisions(lam_d, cut_d, boxes)

    def targets(self, labels: torch.Tensor, lam: np.ndarray) -> torch.Tensor:
        """Smoothed one-hots mixed with the flipped batch's: float32 (N, num_classes), rows sum to 1."""
        s, c, n = self.cfg.label_smoothing, self.num_classes, labels.shape[0]
        off, on = s / c, 1.0 - s + s / c
        if labels.device.type == "cpu":  # numpy: torch's CPU threads stall on small tensors when cores are busy
            hot = np.full((n, c), off, np.float32)
            hot[np.arange(n), labels.numpy()] = on
            weight = lam.astype(np.float32)[:, None]
            return torch.from_numpy(hot * weight + hot[::-1] * (1.0 - weight))
        hot = torch.full((n, c), off, dtype=torch.float32, device=labels.device)
        hot.scatter_(1, labels.long().view(-1, 1), on)
        weight = torch.as_tensor(lam, dtype=torch.float32, device=labels.device).view(-1, 1)
        return hot * weight + hot.flip(0) * (1.0 - weight)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, epoch: int, position: int,
                 channels_last_dims: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(mixed images, soft targets). ``channels_last_dims``: images are N x H x W x C."""
        h_dim = 1 if channels_last_dims else 2
        n, height, width = images.shape[0], images.shape[h_dim], images.shape[h_dim + 1]
        mix = self.decide(epoch, position, n, height, width)
        if (mix.lam < 1.0).any():
            with _one_torch_thread(images.device):
                images = self._mix(images, mix, h_dim)
        return images, self.targets(labels, mix.lam)

    @staticmethod
    def _mix(images: torch.Tensor, mix: MixDecisions, h_dim: int) -> torch.Tensor:
        """Mix in place (the batch is the loader's own tensor; on CPU a copy would double the cost)."""
        n = images.shape[0]
        active = mix.lam < 1.0

        def region(row: int, box: np.ndarray) -> tuple:
            top, bottom, left, right = (int(v) for v in box)
            area = (slice(top, bottom), slice(left, right))
            return (row, *area) if h_dim == 1 else (row, slice(None), *area)

        # cutmix patches come from the partners as they were before any mixing (timm's x_orig)
        patches = [(region(row, mix.boxes[row]), images[region(n - 1 - row, mix.boxes[row])].clone())
                   for row in np.flatnonzero(mix.cutmix & active)]
        if (active & ~mix.cutmix).any():
            lam = torch.as_tensor(np.where(mix.cutmix | ~active, 1.0, mix.lam), dtype=torch.float32,
                                  device=images.device).view(-1, *([1] * (images.dim() - 1)))
            partner = images.flip(0)
            if images.dtype == torch.uint8:
                images.copy_((images.float() * lam + partner.float() * (1.0 - lam)).round_())
            else:
                lam = lam.to(images.dtype)
                images.mul_(lam).add_(partner.mul_(1.0 - lam))
        for index, patch in patches:
            images[index] = patch
        return images
