"""The profiler behind ``imagenet-pipe bench``: stages measured separately (raw read, decode-only
ceiling, decode + crop/resize, the full loaders, a model step), the DALI loader against the
baseline at equal cores, time to first batch with and without ``.idx``, auto-tuning into a YAML
preset, and a machine record with every result (JSON, table, PNG).

    from imagenet_pipe.bench import run_bench
    result = run_bench("shards/imagenet1k", presets=["train-224", "eval-224"], cores=8, out_dir="bench-out")
"""

from __future__ import annotations

from .options import DEFAULT_STAGES, STAGES


def __getattr__(name: str):
    # the runner imports torch and DALI: load it only when used, not for `imagenet-pipe --help`
    if name in ("run_bench", "resolve_presets"):
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module 'imagenet_pipe.bench' has no attribute {name!r}")


__all__ = ["DEFAULT_STAGES", "STAGES", "resolve_presets", "run_bench"]
