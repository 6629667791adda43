"""Models for the model-step stage: a small built-in CNN (always there), or a torchvision / timm
model when installed. The stage only needs a realistic consumer of batches, not accuracy."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import OptionsError


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyNet(nn.Module):
    """A 6-layer strided CNN with a 1000-way head: cheap enough for CPU runs."""

    def __init__(self, num_classes: int = 1000, width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(_block(3, w, 2), _block(w, w, 2), _block(w, 2 * w, 2), _block(2 * w, 2 * w, 2),
                                      _block(2 * w, 4 * w, 2), _block(4 * w, 8 * w, 2))
        self.head = nn.Linear(8 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


def make_model(name: str = "tiny", num_classes: int = 1000) -> nn.Module:
    """``tiny`` (built in), a torchvision model name (``resnet50``) or ``timm:<name>``."""
    if name == "tiny":
        return TinyNet(num_classes)
    if name.startswith("timm:"):
        import timm

        return timm.create_model(name[5:], pretrained=False, num_classes=num_classes)
    try:
        import torchvision
    except ImportError as e:
        raise OptionsError(f"model {name!r} needs torchvision (or use --model tiny / timm:<name>)") from e
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes)


class ModelStep:
    """One training (``fwdbwd``: forward, backward, SGD step) or inference (``fwd``) step on a batch.

    GPU: channels-last and bfloat16 autocast, as a fast training loop would run it. CPU: float32
    (CPU half-precision convolutions are not what anyone trains with)."""

    def __init__(self, name: str, kind: str, device: torch.device, num_classes: int = 1000) -> None:
        if kind not in ("fwd", "fwdbwd"):
            raise OptionsError(f"model step must be 'fwd' or 'fwdbwd', not {kind!r}")
        self.kind, self.device, self.num_classes = kind, device, num_classes
        self.cuda = device.type == "cuda"
        model = make_model(name, num_classes).to(device)
        if self.cuda:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.train(kind == "fwdbwd")
        self.opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9) if kind == "fwdbwd" else None

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        x = images if self.cuda else images.float()
        if self.cuda and x.dim() == 4 and x.shape[1] == 3:
            x = x.contiguous(memory_format=torch.channels_last)
        ctx: Any = torch.autocast("cuda", dtype=torch.bfloat16) if self.cuda else torch.autocast("cpu", enabled=False)
        if self.kind == "fwd":
            with torch.no_grad(), ctx:
                self.model(x)
            return
        with ctx:
            loss = nn.functional.cross_entropy(self.model(x).float(), labels.clamp(0, self.num_classes - 1))
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
