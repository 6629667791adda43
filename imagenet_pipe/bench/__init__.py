"""The profiler behind ``imagenet-pipe bench``: stages measured separately (raw read, decode-only
ceiling, decode + crop/resize, the full loaders, a model step), the DALI loader against the
baseline at equal cores, time to first batch with and without ``.idx``, auto-tuning into a YAML
preset, and a machine record with every result (JSON, table, PNG).

    from imagenet_pipe.bench import BenchOptions, run_bench
    result = run_bench("shards/imagenet1k", BenchOptions(presets=("train-224", "eval-224"), cores=8))

The runner imports torch and DALI; it is loaded only when used, not for ``imagenet-pipe --help``.
"""

from __future__ import annotations

from ..lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "options": ("DEFAULT_STAGES", "STAGES", "BenchOptions", "resolve_presets"),
    "run": ("run_bench",),
})
