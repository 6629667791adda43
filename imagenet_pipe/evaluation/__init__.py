"""Evaluation of models over converted shard folders (``imagenet-pipe eval``).

* :func:`evaluate` / :func:`evaluate_folders` (:mod:`.harness`) with :class:`EvalOptions`
  (:mod:`.options`), returning :class:`EvalResult` (:mod:`.results`; scores per split in
  :class:`SplitScore`, computed in :mod:`.scoring` with the numpy-only :mod:`.metrics`);
* :func:`load_model` (:mod:`.models`): the model a spec names, by the one grammar of :mod:`.spec`
  that eval, the profiler and the training example share;
* :mod:`.report`: the table and the JSON document.

Names are imported lazily: the command line reads :data:`PRECISIONS` and :data:`SPEC_HELP` from
the light modules (:mod:`.options`, :mod:`.spec`) without importing torch.
"""

from __future__ import annotations

from ..lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "harness": ("evaluate", "evaluate_folders", "resolve_preprocessing"),
    "models": ("LoadedModel", "SmallCNN", "load_model"),
    "options": ("PRECISIONS", "EvalOptions"),
    "report": ("format_table", "results_document", "write_results_json"),
    "results": ("EvalResult", "SplitScore"),
    "scoring": ("resolve_clean_error",),
    "spec": ("SPEC_HELP", "ModelSpec", "ModelSpecError", "parse_model_spec"),
})
