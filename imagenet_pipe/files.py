"""Writing files so that a reader (or a killed run) never sees half of one."""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` under a temporary name and rename it into place."""
    tmp = path.with_name(f"{path.name}.partial-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
