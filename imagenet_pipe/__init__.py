"""imagenet-pipe: raw ImageNet downloads -> WebDataset shards -> DALI -> PyTorch."""

from __future__ import annotations

__version__ = "0.1.0"
