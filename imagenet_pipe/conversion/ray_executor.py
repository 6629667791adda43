"""The conversion's tasks as Ray tasks, on every node of a Ray cluster (``--executor ray``).

Imported only when chosen (Ray is the optional extra ``imagenet-pipe[ray]``). The driver keeps
the plan (catalog, global shuffle, shard assignment); each scan listing, inspection chunk and
shard is one Ray task that reads the shared source and writes into the shared output folder,
exactly as a local pool worker does, so the output bytes are the same.

* **State once per worker**: a phase's :class:`~.workers.PhaseTask` (catalog, inspections,
  hygiene policy) is ``ray.put`` once; each task receives the reference boxed in a list (so Ray
  does not resolve it per call), and a worker process fetches and starts it once, on its first
  task of the phase, like a pool initializer. numpy columns are read from the node's object
  store without a copy.
* **Tasks at a time**: at most ``workers`` (default: the cluster's CPUs) are submitted at once;
  an ordered map keeps finished results until their turn and looks at most ``4 x workers`` items
  ahead, so the driver's memory stays bounded.
* **Failures**: a task lost with its worker process or node is retried by Ray on another node
  (``MAX_RETRIES`` times); its effects are idempotent (files under temporary names, renamed when
  complete, to the same bytes). An expected error raised by a task (a damaged archive) is raised
  again here as itself; a task lost beyond the retries stops the run with a
  :class:`~.options.ConvertError`, and rerunning the command resumes.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import ray
import ray.exceptions

from ..errors import ImagenetPipeError
from .options import ConvertError
from .workers import Executor, Item, PhaseTask, Result

MAX_RETRIES = 3  # per task, on worker or node failure (Ray's own default)
AHEAD = 4  # an ordered map submits at most this many times `workers` items past the next one due
KNOBS = "IMAGENET_PIPE_"  # environment variables the driver passes on to its workers (DEVELOPERS.md)


class RayExecutor(Executor):
    """Ray tasks on the cluster at ``address`` (None: as ``ray.init`` finds one: ``RAY_ADDRESS``,
    else the cluster ``ray start`` made on this machine, else a Ray started here for this run).
    Connects on the first map, so a conversion with nothing left to do never starts Ray."""

    def __init__(self, address: str | None = None, workers: int | None = None,
                 log: Callable[[str], None] = print) -> None:
        self.address, self.requested, self.log = address, workers, log
        self.workers = workers or 1
        self.connected = self.owned = False

    def connect(self) -> None:
        if self.connected:
            return
        if not ray.is_initialized():  # else the caller's own connection is used as it is
            knobs = {k: v for k, v in os.environ.items() if k.startswith(KNOBS)}
            try:
                ray.init(address=self.address, include_dashboard=False, logging_level=logging.WARNING,
                         runtime_env={"env_vars": knobs} if knobs else None)
            except (ConnectionError, ray.exceptions.RayError) as e:
                # Ray's reason (e.g. a missing auth token) ends the message of the error behind its own
                reasons = [str(x).strip().splitlines()[-1] for x in (e, e.__cause__ or e.__context__) if x and str(x)]
                where = f" at {self.address}" if self.address else ""
                raise ConvertError(f"cannot connect to the Ray cluster{where}: {'; '.join(reasons)}") from e
            self.owned = True
        self.connected = True
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if cpus < 1:
            raise ConvertError("the Ray cluster has no CPUs for tasks: start nodes with `ray start --address ...`")
        self.workers = self.requested or cpus
        self.log(f"Ray cluster: {len(nodes)} node(s), {cpus} CPUs; up to {self.workers} tasks at a time")

    def map(self, task: PhaseTask[Item, Result], items: Sequence[Item], *, ordered: bool = False
            ) -> Iterator[Result]:
        if not items:
            return
        self.connect()
        submit = functools.partial(_run.remote, [ray.put(task)])  # put once; boxed: tasks fetch it themselves
        nodes: set[str] = set()
        for done, (node, result) in enumerate(_schedule(submit, items, self.workers, ordered, task.name), 1):
            nodes.add(node)
            if done == len(items):  # said before the last result: a reader may not ask past it
                self.log(f"{task.name}: {done} task(s) ran on {len(nodes)} Ray node(s)")
            yield result

    def close(self) -> None:
        if self.owned:
            ray.shutdown()
        self.connected = self.owned = False


def _schedule(submit: Callable[[Any], ray.ObjectRef], items: Sequence[Any], workers: int, ordered: bool,
              name: str) -> Iterator[Any]:
    """Submit ``items`` with at most ``workers`` running; results in item order with ``ordered``
    (a failed task raises at its turn, as a serial run would), else as they finish."""
    running: dict[ray.ObjectRef, int] = {}
    finished: dict[int, ray.ObjectRef] = {}
    submitted = due = 0
    try:
        while due < len(items):
            while submitted < len(items) and len(running) < workers and \
                    (not ordered or submitted < due + AHEAD * workers):
                running[submit(items[submitted])] = submitted
                submitted += 1
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                finished[running.pop(ref)] = ref
            while finished and (due in finished or not ordered):
                yield _result(finished.pop(due if ordered else next(iter(finished))), name)
                due += 1  # unordered: counts the results given
    finally:
        for ref in running:  # stopped early (an error, the consumer gone): free the cluster
            ray.cancel(ref)


def _result(ref: ray.ObjectRef, name: str) -> Any:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, ImagenetPipeError):  # an expected error: its one-line message, as locally
            raise e.cause from None
        raise
    except ray.exceptions.RayError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConvertError(f"a {name} task was lost on the Ray cluster after {MAX_RETRIES} retries ({first}); "
                           "rerun the same command to resume") from e


_started: dict[str, PhaseTask] = {}  # in a Ray worker process: the phase task it started, by object id


@ray.remote(num_cpus=1, max_retries=MAX_RETRIES)
def _run(box: list[ray.ObjectRef], item: Any) -> tuple[str, Any]:
    """In a Ray worker: this phase's task, started on the process's first item of the phase."""
    key = box[0].hex()
    task = _started.get(key)
    if task is None:
        for old in _started.values():  # the previous phase's (its reader's file handles)
            old.stop()
        _started.clear()
        task = _started[key] = ray.get(box[0])
        task.start()
    return ray.get_runtime_context().get_node_id(), task(item)
