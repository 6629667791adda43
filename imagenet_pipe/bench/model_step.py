"""The model-step stage's consumer of batches: a training or inference step of a model named by the
model-spec grammar (:mod:`imagenet_pipe.evaluation.spec`; default ``small``, the built-in CNN),
freshly initialised. The stage only needs a realistic consumer of batches, not accuracy."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import OptionsError
from ..evaluation.models import load_model


class ModelStep:
    """One training (``fwdbwd``: forward, backward, SGD step) or inference (``fwd``) step on a batch.

    GPU: channels-last and bfloat16 autocast, as a fast training loop would run it. CPU: float32
    (CPU half-precision convolutions are not what anyone trains with)."""

    def __init__(self, name: str, kind: str, device: torch.device, num_classes: int = 1000) -> None:
        if kind not in ("fwd", "fwdbwd"):
            raise OptionsError(f"model step must be 'fwd' or 'fwdbwd', not {kind!r}")
        self.kind, self.device, self.num_classes = kind, device, num_classes
        self.cuda = device.type == "cuda"
        model = load_model(name, pretrained=False, num_classes=num_classes).module.to(device)
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
