"""The one exception base for expected failures: bad input, bad options, damaged output.

The command line catches :class:`ImagenetPipeError` alone, prints its message (one line naming the
file, and where known the archive member, offset or line) and exits with status 2. Anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations


class ImagenetPipeError(Exception):
    """An expected failure; the message names the file (archive, member, offset, line) at fault."""
