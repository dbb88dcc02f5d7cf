"""Executors run the same shard scan in different places, behind one protocol
(:class:`~llama_audit.executors.base.Executor`): in this process, a local process pool, or Ray.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from llama_audit.analyzers.base import Analyzer
from llama_audit.executors.base import Executor, Progress, ScanPlan, ShardOutcome
from llama_audit.types import ConfigError

EXECUTORS = ("local", "ray")


def make_executor(name: str, *, workers: int, shards: int, analyzers: Sequence[Analyzer],
                  emit: Callable | None = None, ray_address: str | None = None,
                  ray_options: Mapping[str, Any] | None = None) -> Executor:
    """``local`` is in-process for one worker (or one shard), else a process pool; ``ray`` runs
    the Ray Data pipeline when an analyzer declares two stages (a GPU model), else shards as Ray
    tasks (``ray_options["mode"]``: auto | data | tasks; the other keys are
    :class:`~llama_audit.executors.ray_data.RayDataOptions`). ``--emit jsonl`` streams from one
    process only."""
    if name not in EXECUTORS:
        raise ConfigError(f"--executor takes {' or '.join(EXECUTORS)} (got {name!r})")
    if emit is not None and (workers > 1 or name != "local"):
        raise ConfigError("--emit jsonl streams from one process: drop --workers / --executor ray")
    if name == "ray":
        from llama_audit.executors.ray import RAY_MODES, RayExecutor
        from llama_audit.executors.ray_data import RayDataExecutor, RayDataOptions, split_stages

        given = dict(ray_options or {})
        mode = given.pop("mode", None) or "auto"
        if mode not in RAY_MODES:
            raise ConfigError(f"--ray-mode takes {', '.join(RAY_MODES)} (got {mode!r})")
        num_cpus = workers if workers > 1 else None
        if mode == "tasks" or (mode == "auto" and not split_stages(analyzers).staged):
            sized = [k for k in ("gpu_actors", "cpu_tasks", "write_actors") if given.get(k) is not None]
            if sized:
                why = ("--ray-mode tasks runs" if mode == "tasks" else
                       "with no analyzer of two stages, --ray-mode auto runs")
                raise ConfigError(f"--ray-{sized[0].replace('_', '-')} sizes the Ray Data pipeline: drop it, or "
                                  f"use --ray-mode data ({why} one Ray task per shard)")
            retries = given.get("max_retries")
            if retries is not None and retries < 0:
                raise ConfigError(f"--ray-max-retries must be >= 0 (got {retries})")
            return RayExecutor(ray_address, num_cpus=num_cpus,
                               **({"max_retries": retries} if retries is not None else {}))
        try:
            options = RayDataOptions(**{k: v for k, v in given.items() if v is not None})
        except TypeError as exc:
            raise ConfigError(f"ray options: {exc}") from None
        return RayDataExecutor(ray_address, num_cpus=num_cpus, options=options)
    if workers > 1 and shards > 1:
        from llama_audit.executors.pool import PoolExecutor

        return PoolExecutor(workers)
    from llama_audit.executors.local import InProcessExecutor

    return InProcessExecutor(analyzers, emit)


__all__ = ["EXECUTORS", "Executor", "Progress", "ScanPlan", "ShardOutcome", "make_executor"]
