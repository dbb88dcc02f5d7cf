"""Executors run the same shard scan in different places, behind one protocol
(:class:`~llama_audit.executors.base.Executor`): in this process, a local process pool, or Ray.
"""

from __future__ import annotations

from typing import Callable, Sequence

from llama_audit.analyzers.base import Analyzer
from llama_audit.executors.base import Executor, Progress, ScanPlan, ShardOutcome
from llama_audit.types import ConfigError

EXECUTORS = ("local", "ray")


def make_executor(name: str, *, workers: int, shards: int, analyzers: Sequence[Analyzer],
                  emit: Callable | None = None, ray_address: str | None = None) -> Executor:
    """``local`` is in-process for one worker (or one shard), else a process pool; ``ray`` runs
    shards as Ray tasks. ``--emit jsonl`` streams from one process only."""
    if name not in EXECUTORS:
        raise ConfigError(f"--executor takes {' or '.join(EXECUTORS)} (got {name!r})")
    if emit is not None and (workers > 1 or name != "local"):
        raise ConfigError("--emit jsonl streams from one process: drop --workers / --executor ray")
    if name == "ray":
        from llama_audit.executors.ray import RayExecutor

        return RayExecutor(ray_address, num_cpus=workers if workers > 1 else None)
    if workers > 1 and shards > 1:
        from llama_audit.executors.pool import PoolExecutor

        return PoolExecutor(workers)
    from llama_audit.executors.local import InProcessExecutor

    return InProcessExecutor(analyzers, emit)


__all__ = ["EXECUTORS", "Executor", "Progress", "ScanPlan", "ShardOutcome", "make_executor"]
