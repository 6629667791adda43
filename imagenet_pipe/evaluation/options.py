"""What an evaluation run is asked to do (no torch import: the command line builds these)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OptionsError

PRECISIONS = ("auto", "float32", "float16", "bfloat16")
# loader options evaluation sets itself: eval mode, keys to join predictions with sample metadata,
# and the dtype that follows from the precision
FIXED_LOADER_OPTIONS = ("mode", "dtype", "return_keys")


@dataclass(frozen=True)
class EvalOptions:
    """Options of :func:`imagenet_pipe.evaluation.evaluate`.

    ``splits``: names or glob patterns (default: every split that is not ``train*`` or an
    alternative-label view of another split). ``backend``: ``dali`` or ``baseline`` (the loaders'
    two). Preprocessing: ``preset``, then the model's own data config (timm / ``pretrained_cfg``)
    unless ``use_model_config`` is false, then ``loader`` (:class:`imagenet_pipe.loaders.LoaderConfig`
    fields: ``size``, ``crop_pct``, ``interpolation``, ``mean``, ``std``, ``batch_size``,
    ``device``, ``num_threads``, ...; ``None`` values are ignored). ``precision``: ``auto``
    (float16 autocast on a GPU, float32 on the CPU), ``float32``, ``float16`` or ``bfloat16``.
    ``clean_error``: the model's clean top-1 error for ImageNet-C's relative mCE (a fraction,
    ``"23.9%"``, an :class:`EvalResult` holding ImageNet-1K validation, or the path of a JSON file
    of one). ``save_logits``: an ``.npz`` written by rank 0 with ``<split>/keys``,
    ``<split>/labels`` and ``<split>/logits`` (float32, sorted by key). ``cache_dir`` /
    ``cache_limit``: the node's shard cache when a folder is ``s3://bucket/prefix``.
    """

    splits: tuple[str, ...] | None = None
    preset: str | Path = "eval-224"
    backend: str = "dali"
    precision: str = "auto"
    use_model_config: bool = True
    loader: Mapping[str, Any] = field(default_factory=dict)
    clean_error: Any = None  # float | str | Path | EvalResult | None
    save_logits: str | Path | None = None
    progress: bool = True
    cache_dir: str | Path | None = None
    cache_limit: int | str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.splits, str):
            object.__setattr__(self, "splits", (self.splits,))
        elif self.splits is not None:
            object.__setattr__(self, "splits", tuple(self.splits))
        if self.precision not in PRECISIONS:
            raise OptionsError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")
        fixed = [name for name in FIXED_LOADER_OPTIONS if self.loader.get(name) is not None]
        if fixed:
            raise OptionsError(f"{', '.join(fixed)} is set by evaluate itself (use precision= for the dtype)")

    def loader_overrides(self) -> dict[str, Any]:
        """The loader options that were given (``None`` means not given)."""
        return {name: value for name, value in self.loader.items() if value is not None}

