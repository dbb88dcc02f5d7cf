"""Executors run the same shard scan in different places.

- ``run_local``: in this process, shard after shard.
- ``run_pool``: a local process pool (``--workers N``); each worker loads the analyzers once.
- ``run_ray`` (executors/ray.py): shards as Ray tasks on a cluster sharing the OUT file system.
- Slurm-style slices are a selection of shards (``--num-shards N --shard-index I``) made by the
  job planner; their partials are combined later by ``merge``/``report``.

Each returns per-shard outcomes: ``("done", record)`` or ``("failed", key, message)``; pool
outcomes end with ``("worker", pid, stats)``, that worker's cumulative analyzer statistics.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import queue as queue_mod
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Callable, Iterator, Sequence

from llama_audit.analyzers.base import AnalyzerUnavailable, ScanOptions
from llama_audit.corpus import Shard
from llama_audit.emit import EmitClosed
from llama_audit.scan import ReadOptions, ShardFailed, StrictError, scan_shard
from llama_audit.store import OutDir

Outcome = tuple  # ("done", record) | ("failed", key, message)


def _scan_one(shard, analyzers, options, out, read, strict, progress, config_hash, emit=None) -> Outcome:
    try:
        return ("done", scan_shard(shard, analyzers, options, out, read, strict=strict,
                                   progress=progress, config_hash=config_hash, emit=emit))
    except ShardFailed as exc:
        return ("failed", shard.key, str(exc))
    except (StrictError, KeyboardInterrupt, EmitClosed):
        raise
    except Exception as exc:  # an analyzer bug must not take the other shards down
        return ("failed", shard.key, f"{shard.rel}: {type(exc).__name__}: {str(exc)[:300]}")


def run_local(shards: Sequence[Shard], analyzers, options: ScanOptions, out: OutDir, read: ReadOptions,
              *, strict: bool, progress: Callable[[int, int], None] | None, config_hash: str,
              emit=None) -> Iterator[Outcome]:
    for a in analyzers:
        a.setup()
    for shard in shards:
        yield _scan_one(shard, analyzers, options, out, read, strict, progress, config_hash, emit)


# -- process pool --------------------------------------------------------------------------------
_WORKER: dict = {}


def share_devices(names, options: ScanOptions, index: int, workers: int) -> ScanOptions:
    """What pool worker ``index`` of ``workers`` uses for toxicity scoring.

    In one process the engine drives every visible GPU itself, or every core. N pool workers doing
    that would load N x #GPUs model replicas, or run N x #cores torch threads. So with GPUs
    (``--device auto|cuda``) worker k takes GPU ``k mod #GPUs``; on the CPU each worker gets
    ``#cores / N`` torch threads (unless ``OMP_NUM_THREADS`` or ``toxicity_threads`` says)."""
    if "toxicity" not in names:
        return options
    spec = (options.device or "auto").strip().lower()
    n_gpu = 0
    if spec != "cpu":
        try:
            import torch

            n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
        except ImportError:
            return options
    if n_gpu and spec in ("auto", "cuda"):
        return dataclasses.replace(options, device=f"cuda:{index % n_gpu}")
    if n_gpu == 0 and "toxicity_threads" not in options.extra and "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, len(os.sched_getaffinity(0)) // max(1, workers))
        return dataclasses.replace(options, extra={**options.extra, "toxicity_threads": threads})
    return options


def _init_worker(names, options, out_root, read, strict, config_hash, progress_queue, counter=None,
                 workers: int = 1) -> None:
    from llama_audit.analyzers.registry import resolve_order

    if counter is not None:
        with counter.get_lock():
            index = counter.value
            counter.value += 1
        options = share_devices(names, options, index, workers)
    try:
        analyzers = [cls(options) for cls in resolve_order(names)]
        for a in analyzers:
            a.setup()
    except Exception as exc:  # reported with the first shard, as a one-line error
        _WORKER["setup_error"] = f"{type(exc).__name__}: {exc}" if not isinstance(exc, AnalyzerUnavailable) else str(exc)
        return
    _WORKER.update(analyzers=analyzers, options=options, out=OutDir(out_root), read=read, strict=strict,
                   config_hash=config_hash, queue=progress_queue)


def _worker_scan(shard: Shard) -> Outcome:
    w = _WORKER
    if "setup_error" in w:
        return ("setup_failed", shard.key, w["setup_error"])
    q = w["queue"]
    pending = [0, 0]

    def progress(docs: int, nbytes: int) -> None:
        if q is None:  # Ray: progress is reported per finished shard by the driver
            return
        pending[0] += docs
        pending[1] += nbytes
        if pending[1] >= (1 << 20) or pending[0] >= 4096:
            q.put(tuple(pending))
            pending[0] = pending[1] = 0

    try:
        outcome = _scan_one(shard, w["analyzers"], w["options"], w["out"], w["read"], w["strict"], progress,
                            w["config_hash"])
        # this worker's cumulative engine counters ride along, for the manifest's run record
        stats = {a.name: a.stats() for a in w["analyzers"] if callable(getattr(a, "stats", None))}
        return outcome + (("worker", os.getpid(), stats),)
    except StrictError as exc:
        return ("strict", shard.key, str(exc))
    finally:
        if q is not None and any(pending):
            q.put(tuple(pending))


def run_pool(shards: Sequence[Shard], names: list[str], options: ScanOptions, out: OutDir, read: ReadOptions,
             *, workers: int, strict: bool, progress: Callable[[int, int], None] | None,
             config_hash: str) -> Iterator[Outcome]:
    ctx = mp.get_context("spawn")
    progress_queue = ctx.Queue()
    counter = ctx.Value("i", 0)  # hands each worker its index (for share_devices)
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(names, options, str(out.root), read, strict, config_hash,
                                       progress_queue, counter, workers)) as pool:
        pending = {pool.submit(_worker_scan, s) for s in shards}
        try:
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                _drain(progress_queue, progress)
                for fut in done:
                    outcome = fut.result()
                    if outcome[0] in ("strict", "setup_failed"):
                        for f in pending:
                            f.cancel()
                        if outcome[0] == "strict":
                            raise StrictError(outcome[2])
                        raise AnalyzerUnavailable(outcome[2])
                    yield outcome
            _drain(progress_queue, progress)
        except BaseException:
            for f in pending:
                f.cancel()
            raise


def _drain(q, progress) -> None:
    while True:
        try:
            docs, nbytes = q.get_nowait()
        except queue_mod.Empty:
            return
        if progress is not None:
            progress(docs, nbytes)
