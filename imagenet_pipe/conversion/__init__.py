"""Raw download -> globally shuffled, equal-sized WebDataset shards plus every consumer's index."""

from ..format import MANIFEST
from .hygiene import HygienePolicy
from .run import ConvertError, ConvertOptions, convert, resolve_options

__all__ = ["MANIFEST", "ConvertError", "ConvertOptions", "HygienePolicy", "convert", "resolve_options"]
