"""What a benchmark run is asked to do (no heavy imports: the command line builds these without
loading torch or DALI)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import OptionsError

STAGES = ("read", "decode", "resize", "loader", "baseline", "model", "ttfb", "tune", "ops", "backends", "memory")
DEFAULT_STAGES = ("backends", "read", "decode", "resize", "loader", "baseline", "memory", "ttfb")
PARITY = ("both", "on", "off")
MODEL_STEPS = ("fwd", "fwdbwd", "auto")
TUNABLE = ("num_threads", "prefetch", "batch_size", "hw_decoder_load")


@dataclass(frozen=True)
class BenchOptions:
    """Options of :func:`imagenet_pipe.bench.run_bench`.

    Each of ``presets`` (``train-224``, ``eval-224``, ``eval-384``, or a YAML path) is measured
    stage by stage (``stages``, a subset of :data:`STAGES`) on one ``split``, at ``cores`` CPUs
    (default: all this process may use); DALI threads = baseline workers = ``cores`` unless
    ``threads`` / ``workers`` (or a tuned preset) say otherwise. ``batch_size``, ``prefetch`` and
    ``hw_decoder_load`` override every preset; without ``batch_size``, a preset's batch size is
    lowered where a pass would hold fewer than ``warmup`` + 2 batches (small shard sets).

    Timing: ``repeats`` windows of ``batches`` timed batches after ``warmup`` untimed ones, both
    raised to drain each loader's prefetch queue and span several queues
    (:func:`imagenet_pipe.bench.timing.steady_window`); a split too small for that gets no ratios.
    ``parity``: eval presets measure the DALI loader with ``pil_parity`` on, off or both.

    Model step (with ``model_step``: ``fwd``, ``fwdbwd``, or ``auto``: fwdbwd for train presets,
    fwd for eval): ``model`` (a spec, :mod:`imagenet_pipe.evaluation.spec`, freshly initialised) fed
    by each of ``model_backends``. Time to first batch: ``ttfb_shards`` shards of
    ``ttfb_per_shard`` samples (0 shards: skipped), ``ttfb_repeats`` times, with 16x16 JPEGs when
    ``ttfb_tiny_images``. Auto-tune (``tune``): trials of ``tune_repeats`` passes over
    ``tune_space`` (``{"num_threads": [4, 8], "batch_size": [256]}``; default:
    :func:`imagenet_pipe.bench.autotune.candidates`), the preset written to ``tune_out`` (may hold
    ``{preset}`` and ``{device}``; default ``<out_dir>/tuned-<preset>-<device>.yaml``).

    ``cache_dir`` / ``cache_limit``: the node's shard cache when ``root`` is ``s3://bucket/prefix``.

    Output: with ``out_dir``, ``bench.json`` after every stage, ``bench.png`` (``plot``, when
    matplotlib is installed) and tuned presets there; ``print_table`` prints the table on stdout at
    the end; ``command`` is recorded in ``bench.json``.
    """

    presets: tuple[str, ...] = ("train-224", "eval-224")
    split: str = "train"
    cache_dir: str | None = None
    cache_limit: int | str | None = None
    device: str = "auto"
    cores: int | None = None
    batch_size: int | None = None
    threads: int | None = None
    workers: int | None = None
    prefetch: int | None = None
    hw_decoder_load: float | None = None
    repeats: int = 3
    warmup: int = 3
    batches: int = 20
    stages: tuple[str, ...] = DEFAULT_STAGES
    parity: str = "both"
    model: str = "small"
    model_step: str | None = None
    model_backends: tuple[str, ...] = ("dali",)
    ttfb_shards: int = 1024
    ttfb_per_shard: int = 4
    ttfb_repeats: int = 3
    ttfb_tiny_images: bool = False
    tune: bool = False
    tune_repeats: int = 2
    tune_space: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    tune_out: str | Path | None = None
    out_dir: str | Path | None = "bench-out"
    plot: bool = True
    print_table: bool = True
    command: str | None = None

    def __post_init__(self) -> None:
        for name in ("presets", "stages", "model_backends"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        unknown = self.wanted - set(STAGES)
        if unknown:
            raise OptionsError(f"unknown stage(s) {sorted(unknown)}; known: {', '.join(STAGES)}")
        if self.parity not in PARITY:
            raise OptionsError(f"parity must be one of {PARITY}")
        if self.model_step is not None and self.model_step not in MODEL_STEPS:
            raise OptionsError(f"model_step must be None or one of {MODEL_STEPS}, not {self.model_step!r}")
        untunable = sorted(set(self.tune_space) - set(TUNABLE))
        if untunable:
            raise OptionsError(f"cannot tune {untunable}; tunable: {', '.join(TUNABLE)}")

    @property
    def wanted(self) -> set[str]:
        """The stages to run: ``stages``, plus ``tune`` and ``model`` when asked for."""
        return set(self.stages) | ({"tune"} if self.tune else set()) | ({"model"} if self.model_step else set())

    def quick(self) -> BenchOptions:
        """A short look: at most 2 repeats of 5 batches after 1 warm-up batch, 256 first-batch shards."""
        return replace(self, repeats=min(self.repeats, 2), warmup=min(self.warmup, 1), batches=min(self.batches, 5),
                       ttfb_shards=min(self.ttfb_shards, 256))


def resolve_presets(presets: Sequence[str] | None, modes: Sequence[str] | None, sizes: Sequence[int] | None
                    ) -> tuple[str, ...]:
    """Preset names from ``--preset`` or from ``--mode`` x ``--size`` (``train-224``, ``eval-384``, ...)."""
    if presets:
        return tuple(presets)
    return tuple(f"{m}-{s}" for m in (modes or ("train", "eval")) for s in (sizes or (224,)))
