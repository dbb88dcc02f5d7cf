"""Shards as Ray tasks (``scan --executor ray [--ray-address ADDR]``).

Every task scans one shard and writes its annotations, partial and done marker to OUT, so OUT
must be on a file system all Ray nodes see (as for Slurm slices). Ray worker processes are
long-lived: each loads the analyzers once (the same initialisation as the local pool) and reuses
them for every shard it gets. GPU analyzers ask Ray for a GPU per task (``gpus_per_task``).
Ray is an optional extra (``pip install 'llama-audit[ray]'``), imported only here.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

from llama_audit.analyzers.base import AnalyzerUnavailable, ConfigError, ScanOptions
from llama_audit.corpus import Shard
from llama_audit.scan import ReadOptions, StrictError
from llama_audit.store import OutDir


def _scan_task(shard: Shard, init_args: tuple):
    from llama_audit import executors

    # a Ray worker process outlives one scan: (re)load the analyzers when the scan changes
    if executors._WORKER.get("init_args") != init_args:
        for a in executors._WORKER.get("analyzers", []):
            a.close()
        executors._WORKER.clear()
        executors._init_worker(*init_args, None)
        executors._WORKER["init_args"] = init_args
    return executors._worker_scan(shard)


def run_ray(shards: Sequence[Shard], names: list[str], options: ScanOptions, out: OutDir, read: ReadOptions,
            *, strict: bool, progress: Callable[[int, int], None] | None, config_hash: str,
            address: str | None = None, num_cpus: int | None = None, gpus_per_task: float = 0.0) -> Iterator[tuple]:
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
        ray.init(**kwargs)
    task = ray.remote(num_cpus=1, num_gpus=gpus_per_task, max_retries=1)(_scan_task)
    init_args = (names, options, str(out.root.resolve()), read, strict, config_hash)
    size = {s.key: s.size for s in shards}
    pending = [task.remote(s, init_args) for s in shards]
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            outcome = ray.get(done[0])
            if outcome[0] in ("strict", "setup_failed"):
                for ref in pending:
                    ray.cancel(ref)
                if outcome[0] == "strict":
                    raise StrictError(outcome[2])
                raise AnalyzerUnavailable(outcome[2])
            if progress is not None and outcome[0] == "done":
                progress(outcome[1]["documents"], size.get(outcome[1]["key"], 0))
            yield outcome
    finally:
        for ref in pending:
            ray.cancel(ref)
        if started_here:
            ray.shutdown()
