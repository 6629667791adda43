"""Naming the sample behind a decoder failure: DALI's message says what failed, not which sample.
The samples that can have caused it are exactly those of the batches in flight."""

from __future__ import annotations

import io

from .reader import FetchedBatch


def pillow_error(data) -> str | None:
    """Why Pillow cannot decode ``data`` (None when it can)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(bytes(data))) as img:
            img.load()
        return None
    except Exception as e:
        return str(e) or type(e).__name__


def _summary(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return next((line for line in lines if "failure" in line.lower() or "error" in line.lower()),
                lines[-1] if lines else type(error).__name__)


def explain_decoder_failure(error: Exception, in_flight: list[FetchedBatch]) -> str:
    """A one-line message naming the shard and key of the sample DALI could not decode."""
    summary = _summary(error)
    checked = 0
    for fetched in in_flight:
        for row, data in enumerate(fetched.jpegs):
            if row in fetched.problems:
                continue  # a placeholder: the real sample was already reported
            checked += 1
            why = pillow_error(data)
            if why is not None:
                return (f"DALI failed to decode {fetched.located(row)}: the image does not decode ({why}); "
                        f"DALI: {summary}. `imagenet-pipe verify --decode` checks a whole folder")
    keys = [f"{f.shards[r]}:{f.keys[r]}" for f in in_flight for r in range(len(f.keys))][:4]
    return (f"DALI failed ({summary}); the {checked} samples in flight (e.g. {', '.join(keys)}) all decode "
            "with Pillow")
