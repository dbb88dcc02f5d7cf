"""Local process pool (``--workers N``): shards in parallel on this machine. Each worker process
builds and sets up its analyzers once (a :class:`ShardWorker`) and scans the shards it is given;
progress comes back through a queue while shards run."""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Iterator, Sequence

from llama_audit.corpus import Shard
from llama_audit.executors.base import Progress, ScanPlan, ShardOutcome
from llama_audit.executors.worker import ShardWorker, worker_label
from llama_audit.scan import StrictError

PROGRESS_EVERY_BYTES = 1 << 20  # a worker reports progress after this many input bytes...
PROGRESS_EVERY_DOCS = 4096  # ...or this many documents

_worker: ShardWorker | None = None  # this pool process's worker
_progress_queue = None


def _init_worker(plan: ScanPlan, progress_queue, counter, workers: int) -> None:
    global _worker, _progress_queue
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
        ctx = mp.get_context("spawn")
        progress_queue = ctx.Queue()
        counter = ctx.Value("i", 0)
        workers = min(self.workers, len(shards))
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(plan, progress_queue, counter, workers)) as pool:
            futures = {pool.submit(_scan_in_worker, s): s for s in shards}
            pending = set(futures)
            try:
                while pending:
                    done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                    _drain(progress_queue, progress)
                    for fut in done:
                        outcome = fut.result()
                        if isinstance(outcome, tuple):
                            raise StrictError(outcome[1])
                        yield outcome
                _drain(progress_queue, progress)
            except BaseException:  # Ctrl-C, --strict: shards not started are not started
                for f in pending:
                    f.cancel()
                raise


def _drain(q, progress: Progress | None) -> None:
    while True:
        try:
            docs, nbytes = q.get_nowait()
        except queue_mod.Empty:
            return
        if progress is not None:
            progress(docs, nbytes)
