"""Raw download -> globally shuffled, equal-sized WebDataset shards plus every consumer's index.

:func:`convert` (in :mod:`.run`) orchestrates the phases: :mod:`.scan`, :mod:`.inspection`,
:mod:`.plan`, :mod:`.write`, then :mod:`.indexes` and :mod:`.manifest`.
"""

from ..format import MANIFEST
from .hygiene import HygienePolicy
from .options import ConvertError, ConvertOptions, resolve_options
from .run import convert

__all__ = ["MANIFEST", "ConvertError", "ConvertOptions", "HygienePolicy", "convert", "resolve_options"]
