"""The profiler behind ``imagenet-pipe bench``: stages measured separately (raw read, decode-only
ceiling, decode + crop/resize, the full loaders, a model step), the DALI loader against the
baseline at equal cores, time to first batch with and without ``.idx``, auto-tuning into a YAML
preset, and a machine record with every result (JSON, table, PNG).

    from imagenet_pipe.bench import run_bench
    result = run_bench("shards/imagenet1k", presets=["train-224", "eval-224"], cores=8, out_dir="bench-out")
"""

from __future__ import annotations

from .run import DEFAULT_STAGES, STAGES, resolve_presets, run_bench

__all__ = ["DEFAULT_STAGES", "STAGES", "resolve_presets", "run_bench"]
