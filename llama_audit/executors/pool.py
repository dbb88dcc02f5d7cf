"""Local process pool (``--workers N``): shards in parallel on this machine. Each worker process
builds and sets up its analyzers once (a :class:`ShardWorker`) and scans the shards it is given;
progress comes back through a queue while shards run.

Workers never outlive the run (:mod:`llama_audit.signals`): they ignore Ctrl-C, exit quietly on
SIGTERM and die with the parent process however it dies. When the run is interrupted (Ctrl-C,
SIGTERM, ``--strict``) the parent stops them itself: SIGTERM, then SIGKILL after
:data:`STOP_GRACE_SECONDS`; the shards they were scanning are left for the rerun."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue as queue_mod
import time
import signal
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Iterator, Sequence

from llama_audit.corpus import Shard
from llama_audit.executors.base import Progress, ScanPlan, ShardOutcome
from llama_audit.executors.worker import ShardWorker, worker_label
from llama_audit.scan import StrictError
from llama_audit.signals import (WORKER_EXIT_CODE, Interrupted, interrupts_deferred, received_signal, signals_blocked,
                                 stoppable_shard, worker_lifecycle)
from llama_audit.types import ConfigError

PROGRESS_EVERY_BYTES = 1 << 20  # a worker reports progress after this many input bytes...
PROGRESS_EVERY_DOCS = 4096  # ...or this many documents
UNEXPLAINED_DEATHS = 2  # pools in a row that may lose a worker no shard can be blamed for
STOP_GRACE_SECONDS = 5.0  # an interrupted run waits this long for workers to unwind, then kills them

_worker: ShardWorker | None = None  # this pool process's worker
_progress_queue = None


def _init_worker(plan: ScanPlan, progress_queue, counter, workers: int, parent_pid: int) -> None:
    global _worker, _progress_queue
    worker_lifecycle(parent_pid)  # before the (slow) analyzer set-up: no Ctrl-C traceback, no orphan
    with counter.get_lock():  # hands each worker its index (for Analyzer.worker_options)
        index = counter.value
        counter.value += 1
    _progress_queue = progress_queue
    _worker = ShardWorker(plan, index=index, workers=workers, label=worker_label())


def _scan_in_worker(shard: Shard) -> ShardOutcome | tuple[str, str]:
    pending = [0, 0]

    def progress(docs: int, nbytes: int) -> None:
        pending[0] += docs
        pending[1] += nbytes
        if pending[1] >= PROGRESS_EVERY_BYTES or pending[0] >= PROGRESS_EVERY_DOCS:
            _progress_queue.put(tuple(pending))
            pending[0] = pending[1] = 0

    with stoppable_shard():  # SIGTERM: abandon this shard (no done marker) and exit quietly
        _progress_queue.put(("start", shard.key, os.getpid()))  # who scans what, should a worker die
        try:
            return _worker.scan(shard, progress)
        except StrictError as exc:  # crosses the process boundary as a value: the parent re-raises it
            return ("strict", str(exc))
        finally:
            if any(pending):
                _progress_queue.put(tuple(pending))


class PoolExecutor:
    name = "pool"

    def __init__(self, workers: int):
        self.workers = workers

    def describe(self) -> dict:
        return {"name": self.name, "workers": self.workers}

    def run(self, shards: Sequence[Shard], plan: ScanPlan, progress: Progress | None) -> Iterator[ShardOutcome]:
        remaining = list(shards)
        unexplained = 0  # pools in a row whose dead worker could not be tied to a shard
        while remaining:  # more than once only when a worker process died (out of memory, a crash)
            ended: set[str] = set()
            died: list[bool] = []
            yield from self._run_pool(remaining, plan, progress, ended, died, unexplained >= UNEXPLAINED_DEATHS)
            unexplained = unexplained + 1 if died and not ended else 0
            remaining = [s for s in remaining if s.key not in ended]

    def _run_pool(self, shards: Sequence[Shard], plan: ScanPlan, progress: Progress | None,
                  ended: set[str], died: list[bool], blame_all: bool) -> Iterator[ShardOutcome]:
        """One pool over ``shards``; adds the key of every shard it yields to ``ended``. When a
        worker process dies, the shard it was scanning fails (its reason says how the process
        ended), the pool is stopped and :meth:`run` goes on with the shards left in a new one."""
        ctx = mp.get_context("spawn")
        # new per pool: a worker killed while writing to the queue leaves its lock held for good
        progress_queue = ctx.Queue()
        counter = ctx.Value("i", 0)
        workers = min(self.workers, len(shards))
        # "spawn": a fresh interpreter per worker (no inherited threads or locks); its parent is
        # this process, started from this thread, so PR_SET_PDEATHSIG tracks this process
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                   initargs=(plan, progress_queue, counter, workers, os.getpid()))
        started: dict[str, int] = {}  # shard key -> pid of the worker scanning it
        processes: dict[int, object] = {}  # pid -> Process, kept here: a broken pool forgets its own
        try:
            with signals_blocked():  # workers are born with Ctrl-C held back until they ignore it
                futures = {pool.submit(_scan_in_worker, s): s for s in shards}
            pending = set(futures)
            while pending:
                with interrupts_deferred():  # wait() takes the futures' locks outside any try
                    processes.update(getattr(pool, "_processes", None) or {})
                    done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                    _drain(progress_queue, progress, started)
                    results = [_result_of(fut) for fut in done]
                for outcome in results:
                    if isinstance(outcome, BrokenProcessPool):
                        with interrupts_deferred():
                            _drain(progress_queue, progress, started)
                        stop_workers(pool, known=processes)  # the pool ends the others too, but waits forever
                        died.append(True)
                        yield from _worker_died(processes, futures, started, ended, blame_all)
                        return
                    if isinstance(outcome, tuple):
                        raise StrictError(outcome[1])
                    ended.add(outcome.key)
                    yield outcome
            with interrupts_deferred():
                _drain(progress_queue, progress, started)
        except BaseException:  # Ctrl-C, SIGTERM, --strict: stop now; unfinished shards are for the rerun
            # (no Future.cancel() here: Python 3.11's pool then fails on the cancelled futures once it
            # sees its workers gone; a pool whose workers died starts nothing more)
            stop_workers(pool, known=processes)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _result_of(future) -> ShardOutcome | tuple[str, str] | BrokenProcessPool:
    try:
        return future.result()
    except BrokenProcessPool as exc:
        return exc


def _worker_died(processes: dict, futures: dict, started: dict[str, int],
                 ended: set[str], blame_all: bool) -> Iterator[ShardOutcome]:
    """A worker process ended without a word (SIGKILL by the out-of-memory killer or a person, a
    crash in native code). If this run is being stopped anyway, that is the interruption;
    otherwise the shard it was scanning fails with a reason that says how it ended, and the
    shards of the workers the pool stopped with it are scanned again in a new pool. When the dead
    worker cannot be tied to a shard (it died before it reported one), nothing fails and the run
    goes on in a new pool, unless that already happened ``UNEXPLAINED_DEATHS`` times in a row
    (``blame_all``): then every unfinished shard fails rather than looping."""
    signum = received_signal()
    if signum is not None:  # the signal reached the workers before this process handled it
        raise Interrupted(signum)
    for p in processes.values():
        with contextlib.suppress(OSError, ValueError, AssertionError):
            p.join(STOP_GRACE_SECONDS)  # the exit code is known once the process is reaped
    exit_codes = {pid: p.exitcode for pid, p in processes.items()}
    stopped = (None, 0, WORKER_EXIT_CODE, -signal.SIGTERM)  # alive, or ended by the pool after the death
    dead = {pid for pid, code in exit_codes.items() if code not in stopped}
    unfinished = {key: pid for key, pid in started.items() if key not in ended}
    culprits = {key: pid for key, pid in unfinished.items() if pid in dead}
    if not culprits and not blame_all:
        return  # a new pool scans what is left
    if not culprits and not unfinished:  # before any shard started: a new pool would die the same way
        how = ", ".join(_how_it_ended(code) for code in exit_codes.values() if code not in (None, 0)) or "unknown"
        raise ConfigError(f"a worker process died before it started a shard ({how}); finished shards are kept. "
                          "If memory ran out, use fewer --workers.")
    by_key = {s.key: s for s in futures.values()}
    for key, pid in sorted((culprits or unfinished).items()):
        ended.add(key)
        yield ShardOutcome(key, "failed", reason=f"{by_key[key].rel}: the worker process scanning it died "
                           f"({_how_it_ended(exit_codes.get(pid))}); if memory ran out, use fewer --workers "
                           "or a smaller --batch-docs, then rerun to retry it")


def _how_it_ended(exitcode: int | None) -> str:
    if exitcode is None:
        return "unknown"
    if exitcode < 0:
        name = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else str(-exitcode)
        return f"killed by {name}" + (": out of memory?" if exitcode == -signal.SIGKILL else "")
    return f"exit code {exitcode}"


def stop_workers(pool: ProcessPoolExecutor, grace: float = STOP_GRACE_SECONDS, known: dict | None = None) -> None:
    """Stop the pool's worker processes now: SIGTERM (each abandons its shard and exits quietly),
    then SIGKILL for any still alive after ``grace`` seconds (stuck in native code)."""
    processes = list({**(known or {}), **(getattr(pool, "_processes", None) or {})}.values())
    for p in processes:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            p.terminate()
    deadline = time.monotonic() + grace
    for p in processes:
        with contextlib.suppress(OSError, ValueError, AttributeError, AssertionError):
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(1.0)


def _drain(q, progress: Progress | None, started: dict[str, int]) -> None:
    """Read the workers' messages: ``(docs, bytes)`` progress, ``("start", key, pid)`` a shard begun."""
    while True:
        try:
            message = q.get_nowait()
        except queue_mod.Empty:
            return
        if message[0] == "start":
            started[message[1]] = message[2]
        elif progress is not None:
            progress(*message)
