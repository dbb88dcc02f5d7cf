"""Shards as Ray tasks (``scan --executor ray [--ray-address ADDR]``).

Every task scans one shard and writes its annotations, partial and done marker to OUT, so OUT
must be on a file system all Ray nodes see (as for Slurm slices). Ray worker processes are
long-lived: each keeps one :class:`~llama_audit.executors.worker.ShardWorker` per plan (analyzers
set up once) and reuses it for every shard it gets. A task asks Ray for the GPUs the analyzers
declared (``Resources.gpus``). Ray is an optional extra (``pip install 'llama-audit[ray]'``),
imported only here.

Two modes (``--ray-mode``): ``data`` is the Ray Data pipeline of ``ray_data.py`` (a CPU stage, an
accelerator actor pool for the analyzers that declare two stages, the writes in order); ``tasks``
is this module's task per shard. ``auto`` (the default) takes ``data`` when a staged analyzer
(a GPU model) runs, where splitting CPU from GPU work pays, and ``tasks`` otherwise: with CPU
analyzers only, a task per shard reads, analyzes and writes on the node that holds the shard,
and nothing but its outcome travels, while the pipeline would carry every batch's columns to
the writing process.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator, Sequence

from llama_audit.corpus import Shard
from llama_audit.executors.base import Progress, ScanPlan, ShardOutcome
from llama_audit.executors.worker import ShardWorker, worker_label
from llama_audit.scan import StrictError
from llama_audit.types import ConfigError

_current: list[ShardWorker] = []  # per Ray worker process: the worker of the current plan


def scan_task(shard: Shard, plan: ScanPlan) -> ShardOutcome | tuple[str, str]:
    """One shard in a Ray worker process (a process outlives one scan: a new plan replaces the
    worker and closes the old analyzers)."""
    if not _current or _current[0].plan != plan:
        for old in _current:
            old.close()
        _current[:] = [ShardWorker(plan, label=worker_label())]
    worker = _current[0]
    try:
        return worker.scan(shard)
    except StrictError as exc:
        return ("strict", str(exc))


@contextlib.contextmanager
def _keep_stop_handlers() -> Iterator[None]:
    """``ray.init`` replaces the SIGTERM handler with its own ``sys.exit``; put back the one this
    process had, so SIGTERM stops a Ray scan as Ctrl-C does (:mod:`llama_audit.signals`): the
    pending tasks are cancelled, the local Ray this run started is shut down, the manifest is
    written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            if handler is not None:
                signal.signal(signum, handler)


RAY_MODES = ("auto", "data", "tasks")
DEFAULT_RETRIES = 2  # attempts of a shard's task (or stage) beyond the first after its worker died (--ray-max-retries)


@contextlib.contextmanager
def local_ray(address: str | None, num_cpus: int | None):
    """Ray, connected: a running instance is used as it is; else one is started (at ``address``,
    or locally with ``num_cpus``) and shut down on the way out, interrupted or not."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'llama-audit[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        kwargs = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        if address:
            kwargs["address"] = address
        elif num_cpus:
            kwargs["num_cpus"] = num_cpus
        with _keep_stop_handlers():
            try:
                ray.init(**kwargs)
            except BaseException:  # interrupted while Ray starts: stop what it started
                ray.shutdown()
                raise
    try:
        yield ray
    finally:  # interrupted or done: the local Ray this run started goes away
        if started_here:
            ray.shutdown()


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, max_retries: int = DEFAULT_RETRIES):
        self.address = address
        self.num_cpus = num_cpus
        self.max_retries = max_retries

    def describe(self) -> dict:
        return {"name": self.name, "engine": "ray.tasks", "address": self.address, "stages": ["shard"],
                "max_retries": self.max_retries}

    def run(self, shards: Sequence[Shard], plan: ScanPlan, progress: Progress | None) -> Iterator[ShardOutcome]:
        with local_ray(self.address, self.num_cpus) as ray:
            yield from self._run(ray, shards, plan, progress)

    def _run(self, ray, shards: Sequence[Shard], plan: ScanPlan, progress: Progress | None) -> Iterator[ShardOutcome]:
        pending = []
        try:
            task = ray.remote(num_cpus=1, num_gpus=plan.gpus_per_worker, max_retries=self.max_retries)(scan_task)
            size = {s.key: s.size for s in shards}
            pending = [task.remote(s, plan) for s in shards]
            shard_of = dict(zip(pending, shards))
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                try:
                    outcome = ray.get(done[0])
                except ray.exceptions.RayError as exc:  # its worker died on every attempt: this shard fails
                    outcome = ShardOutcome(shard_of[done[0]].key, "failed", reason=self._lost(ray, shard_of[done[0]], exc))
                if isinstance(outcome, tuple):
                    raise StrictError(outcome[1])
                if progress is not None and outcome.status == "done":
                    progress(outcome.record["documents"], size.get(outcome.key, 0))
                yield outcome
        finally:  # interrupted or done: nothing of this run keeps running
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref)

    def _lost(self, ray, shard: Shard, exc: BaseException) -> str:
        """One line for a shard whose task Ray gave up on (a worker that died on each of its
        attempts, or an error Ray raised around the task)."""
        if isinstance(exc, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)):
            return f"{shard.rel}: lost in Ray: its worker died on it {self.max_retries + 1} time(s)"
        text = str(exc).strip().splitlines()
        return f"{shard.rel}: lost in Ray ({type(exc).__name__}: {text[0][:200] if text else ''})"
