"""The executor protocol: run a plan's shards somewhere, yield one typed outcome per shard.

Every executor (in-process, local process pool, Ray) implements :class:`Executor`; Slurm-style
slices are not an executor but a selection of shards made by the job planner
(``--num-shards N --shard-index I``), run by any executor and combined later by ``merge``.
The job reads outcomes; it never decodes an executor's private messages.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Literal, Mapping, Protocol, Sequence

from llama_audit.analyzers.options import AnalyzerOptions
from llama_audit.corpus import Shard
from llama_audit.scan import ReadOptions, Scope

Progress = Callable[[int, int], None]  # (documents done, input bytes consumed) deltas
Status = Literal["done", "failed", "interrupted", "refused"]


@dataclasses.dataclass(frozen=True)
class ScanPlan:
    """Everything a worker anywhere needs to scan shards of this run (picklable)."""

    analyzers: tuple[str, ...]  # names, in run order (scope provider first, dependencies before)
    options: Mapping[str, AnalyzerOptions]  # typed, validated options per analyzer name
    scope: Scope
    out_root: str
    read: ReadOptions
    strict: bool
    config_hash: str
    gpus_per_worker: float = 0.0  # from the analyzers' declared resources


@dataclasses.dataclass(frozen=True)
class ShardOutcome:
    """What became of one shard.

    ``done``: finished; ``record`` is its done marker. ``failed``: it could not be finished;
    ``reason`` is one line that names the shard and the cause, other shards go on.
    ``interrupted``: the run stopped while it ran (Ctrl-C, ``--strict``, stdout closed); a rerun
    resumes it. ``refused``: the worker did not start it because its analyzers could not be set
    up there (``reason``); the run stops with that one-line error.
    ``worker``/``stats``: which worker process ran it and that worker's cumulative analyzer
    statistics, for the manifest's run record (None in-process)."""

    key: str
    status: Status
    record: dict | None = None
    reason: str | None = None
    worker: str | None = None
    stats: dict[str, Any] | None = None


class Executor(Protocol):
    name: str

    def run(self, shards: Sequence[Shard], plan: ScanPlan, progress: Progress | None) -> Iterator[ShardOutcome]:
        """Scan ``shards``; yield an outcome per shard as each ends (any order). Raises
        :class:`~llama_audit.scan.StrictError` on the first bad record under ``--strict``."""
        ...

    def describe(self) -> dict[str, Any]:
        """The executor as the manifest's run record names it."""
        ...
