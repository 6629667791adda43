"""The DALI loader: the epoch plan's batches, read ahead by a few threads, fed to the DALI graph
(:mod:`.dali_graph`) through ``fn.external_source``, delivered as torch tensors.

Feeding. DALI calls :class:`_PlanSource` once per batch it schedules, in order, from
``pipe.run()`` (``prefetch`` batches ahead). The source hands out batch ``i`` of the current plan
and keeps what it read in a queue, so that each output batch is matched with its keys, labels and
check results, and a decoder failure can be traced to the batches in flight. At the end of a plan
it raises StopIteration, DALI's end of an epoch; an abandoned pass is drained (only the batches
already in flight) before the next one starts.

Delivery without a host stall. On GPU the outputs are requested on the consumer's current CUDA
stream (``pipe.run(stream)``): DALI makes that stream wait for its work instead of making the host
wait, and the batch is handed out as a zero-copy DLPack view of DALI's output buffer (valid for as
long as the tensor is referenced; DALI reuses the memory only after it is released). So
``next(loader)`` never waits for model work queued on the stream, and loading overlaps training.
"""

from __future__ import annotations

import os
import weakref
from collections import deque
from collections.abc import Iterator

import numpy as np
import torch

from ..errors import ImagenetPipeError
from .augment import augment_spec, decide
from .common import Batch, LoaderDataError, finish_images, make_batch, resolve_device
from .config import LoaderConfig
from .dali_augment import augment_arrays, erase_arrays
from .dali_graph import build_pipeline, output_layout, pipeline_dtype, source_outputs
from .diagnose import explain_decoder_failure
from .epochs import PlannedLoader
from .erasing import decide_erasing
from .geometry import eval_regions, train_params, train_size
from .plan import EpochPlan, PlanArgs
from .reader import FetchedBatch, ReadAhead, SampleReader
from .shardset import DistInfo, ShardSet

_FINAL_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "uint8": torch.uint8}

# A forked child (a DataLoader worker, say) inherits the parent's DALI pipelines but not their
# threads. If the child's garbage collector destroys one (a loader caught in a reference cycle,
# e.g. through an exception's traceback), the destructor joins threads that do not exist there and
# the child crashes. So a child keeps every inherited pipeline alive; it exits without freeing them.
_LIVE_PIPELINES: weakref.WeakSet = weakref.WeakSet()
_INHERITED: list = []


def _keep_inherited_pipelines() -> None:
    _INHERITED.extend(_LIVE_PIPELINES)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_keep_inherited_pipelines)


def source_arrays(cfg: LoaderConfig, gpu: bool, epoch: int, fetched: FetchedBatch) -> dict[str, object]:
    """One batch of every external-source output, from the samples read and the plan's epoch."""
    out: dict[str, object] = {"jpegs": fetched.jpegs, "labels": fetched.labels}
    if cfg.mode == "train":
        out.update(train_arrays(cfg, gpu, epoch, fetched))
    else:
        out.update(eval_regions(cfg, fetched.width, fetched.height, window=not gpu))
    return out


def train_arrays(cfg: LoaderConfig, gpu: bool, epoch: int, fetched: FetchedBatch) -> dict[str, object]:
    """A training batch's decisions: crop windows, output size, flips, augmentation layers, erasing."""
    draws, size = fetched.draw_ids, train_size(cfg, epoch)
    boxes, flips = train_params(cfg, epoch, draws, fetched.width, fetched.height)
    left, top, w, h = boxes.T
    n = len(draws)
    out: dict[str, object] = {"crop_start": np.stack([top, left], axis=1).astype(np.int32),
                              "crop_end": np.stack([top + h, left + w], axis=1).astype(np.int32),
                              "out_size": np.full((n, 2), size, np.float32), "flip": flips.astype(np.int32)}
    spec = augment_spec(cfg)
    if spec.layers:
        out.update(augment_arrays(spec, decide(spec, cfg.seed, epoch, draws, size)))
    if cfg.re_prob > 0:
        erase = decide_erasing(cfg, epoch, draws, size, size)
        noise_dtype = np.float16 if pipeline_dtype(cfg.dtype, gpu) == "float16" else np.float32
        out.update(erase_arrays(cfg, erase, epoch, draws, output_layout(cfg), noise_dtype))
    return out


class _PlanSource:
    """The external source: batch ``i`` of the current plan per call, StopIteration at its end."""

    def __init__(self, reader: SampleReader, cfg: LoaderConfig, gpu: bool) -> None:
        self.reader, self.cfg, self.gpu = reader, cfg, gpu
        self.names = source_outputs(cfg, gpu)
        self.threads = cfg.io_threads or (4 if gpu else 2)
        self.plan: EpochPlan | None = None
        self.in_flight: deque[FetchedBatch] = deque()
        self._ahead: ReadAhead | None = None
        self._next = 0

    def start(self, plan: EpochPlan) -> None:
        self.stop()
        self.plan, self._next = plan, 0
        self._ahead = ReadAhead(self.reader, plan, ahead=self.cfg.prefetch + 2, threads=self.threads)

    def stop(self) -> None:
        """Hand out nothing more from the current plan."""
        if self._ahead is not None:
            self._ahead.close()
        self._ahead, self.plan = None, None

    def __call__(self):
        if self.plan is None or self._next >= self.plan.steps:
            raise StopIteration
        fetched = self._ahead.get(self._next)
        self._next += 1
        self.in_flight.append(fetched)
        arrays = source_arrays(self.cfg, self.gpu, self.plan.epoch, fetched)
        return tuple(arrays[name] for name in self.names)


class DaliLoader(PlannedLoader):
    """Iterable of :class:`Batch` (or :class:`KeyedBatch`) over one split; one epoch per ``iter()``."""

    backend = "dali"

    def __init__(self, shards: ShardSet, cfg: LoaderConfig, dist: DistInfo | None = None) -> None:
        super().__init__(shards, cfg, dist)
        self.device_id = resolve_device(cfg, dist.local_rank if dist is not None else None)
        self.device = torch.device("cuda", self.device_id) if self.device_id is not None else torch.device("cpu")
        self.reader = SampleReader(shards)
        self._source = _PlanSource(self.reader, cfg, self.device_id is not None)
        self._started = False  # the pipeline has run since it was built or reset
        self._broken: Exception | None = None
        self.pipe = build_pipeline(cfg, self.device_id, self._source)
        _LIVE_PIPELINES.add(self.pipe)
        self.pipe.build()

    def _batches(self, plan: EpochPlan) -> Iterator[Batch]:
        if self._broken is not None:
            raise RuntimeError("the loader stopped after an error and cannot continue") from self._broken
        self._rewind()
        if plan.steps == 0:
            return
        self._source.start(plan)
        self._started = True
        for _ in range(plan.steps):
            images, labels = self._run()
            yield self._deliver(images, labels, self._source.in_flight.popleft())

    def _rewind(self) -> None:
        """End the pipeline's current epoch: drop what an abandoned pass left in flight, reset."""
        if not self._started:
            return
        self._source.stop()
        while True:
            try:
                self._run()
            except StopIteration:
                break
        self.pipe.reset()
        self._source.in_flight.clear()
        self._started = False

    def _run(self):
        try:
            if self.device_id is None:
                return self.pipe.run()
            return self.pipe.run(torch.cuda.current_stream(self.device))
        except StopIteration:
            raise
        except ImagenetPipeError as e:  # a damaged shard met while reading
            self._broken = e
            raise
        except RuntimeError as e:
            self._broken = e
            raise LoaderDataError(explain_decoder_failure(e, list(self._source.in_flight))) from e

    def _deliver(self, images_tl, labels_tl, fetched: FetchedBatch) -> Batch:
        ok = fetched.ok
        keys = fetched.keys
        if not ok.all():
            self._report_bad(fetched)
        if self.device_id is None:
            images = torch.from_numpy(np.asarray(images_tl.as_tensor())).to(_FINAL_DTYPES[self.cfg.dtype], copy=True)
            labels = torch.from_numpy(np.asarray(labels_tl.as_tensor())).clone()
        else:  # zero-copy views, ordered on the consumer's stream (see the module docstring)
            images = torch.from_dlpack(images_tl.as_tensor())
            labels = torch.from_dlpack(labels_tl.as_tensor())
        if not ok.all():
            rows = torch.as_tensor(np.flatnonzero(ok), device=images.device)
            images, labels = images[rows], labels[rows]
            keys = [k for k, good in zip(keys, ok, strict=True) if good]
        layout = "NHWC" if self.cfg.memory_format != "contiguous" else "NCHW"
        return make_batch(finish_images(images, self.cfg, layout), labels, keys, self.cfg)

    def _report_bad(self, fetched: FetchedBatch) -> None:
        for row, why in sorted(fetched.problems.items()):
            if self.cfg.on_error == "raise":
                raise LoaderDataError(f"{fetched.located(row)} {why} (pass on_error='skip' to drop bad samples; "
                                      "`imagenet-pipe verify --decode` checks a whole folder)")
            self.skipped.append((fetched.shards[row], fetched.keys[row], why))

    def close(self) -> None:
        source = getattr(self, "_source", None)
        if source is not None:
            source.stop()
        if getattr(self, "pipe", None) is not None:
            del self.pipe
            self.pipe = None
        if getattr(self, "reader", None) is not None:
            self.reader.close()
        super().close()


class StagePipeline:
    """For the profiler: the DALI loader's own reader, source and pipeline settings with ``graph``
    (a function of the source's inputs dict, see :func:`.dali_graph.build_pipeline`) in place of
    the loader's graph. One process, epochs repeated without end; :meth:`run` processes one batch
    and returns its sample count."""

    def __init__(self, shards: ShardSet, cfg: LoaderConfig, device_id: int | None, graph) -> None:
        import warnings

        self.args = PlanArgs(shards.num_samples, shards.lengths, cfg.batch_size, 1, 0, cfg.mode == "train",
                             cfg.seed, cfg.shuffle_block)
        self.source = _PlanSource(SampleReader(shards), cfg, device_id is not None)
        self.epoch = 0
        with warnings.catch_warnings():  # a stage may leave some of the loader's inputs unused
            warnings.filterwarnings("ignore", message=".*not used. For best performance")
            self.pipe = build_pipeline(cfg, device_id, self.source, graph)
            self.pipe.build()
        self.source.start(EpochPlan(self.args, self.epoch))

    def run(self) -> int:
        try:
            self.pipe.run()
        except StopIteration:
            self.pipe.reset()
            self.epoch += 1
            self.source.start(EpochPlan(self.args, self.epoch))
            self.pipe.run()
        return len(self.source.in_flight.popleft().ids)

    def close(self) -> None:
        self.source.stop()
        del self.pipe
        self.source.reader.close()
