"""The one exception base for expected failures: bad input, bad options, damaged output.

The command line catches :class:`ImagenetPipeError` alone, prints its message (one line naming the
file, and where known the archive member, offset or line) and exits with status 2; ``--debug`` (or
``IMAGENET_PIPE_DEBUG=1``) also prints the traceback. Anything else is a bug and keeps its
traceback. Errors are wrapped where the file is known (archive, gzip, zip, JSON and ``.mat``
readers), never by a catch-all.
"""

from __future__ import annotations


class ImagenetPipeError(Exception):
    """An expected failure; the message names the file (archive, member, offset, line) at fault."""


class OptionsError(ImagenetPipeError, ValueError):
    """An option or argument that cannot be honoured (unknown name, value out of range)."""


class ArchiveError(ImagenetPipeError):
    """A raw archive (tar, gzip, zip) or data file is damaged or truncated: re-download it."""


class SourceError(ImagenetPipeError):
    """The download does not look like the layout it claims to be, or a label file is wrong."""


class ShardError(ImagenetPipeError, ValueError):
    """A shard, index or manifest in an output folder is damaged."""


class LoaderConfigError(OptionsError):
    """An unknown loader option, or a loader option of the wrong type or range."""
