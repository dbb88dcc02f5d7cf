"""The shard worker every executor runs: one set of analyzers, set up once per process, scanning
shard after shard into OUT. Public, so that the pool and Ray executors (and third-party
executors) drive the same code."""

from __future__ import annotations

import os
from typing import Callable, Sequence

import pyarrow as pa

from llama_audit.analyzers.base import Analyzer
from llama_audit.analyzers.registry import build_analyzers
from llama_audit.corpus import Shard
from llama_audit.emit import EmitClosed
from llama_audit.executors.base import Progress, ScanPlan, ShardOutcome
from llama_audit.scan import ShardFailed, StrictError, scan_shard
from llama_audit.store import OutDir
from llama_audit.types import AnalyzerUnavailable, ConfigError


def worker_options(plan: ScanPlan, index: int, workers: int) -> dict:
    """Each analyzer's options for worker ``index`` of ``workers`` on one machine (its say in how
    the machine is shared: a GPU each, a share of the cores)."""
    from llama_audit.analyzers.registry import load_class

    return {name: load_class(name).worker_options(plan.options[name], index, workers) for name in plan.analyzers}


class ShardWorker:
    """Scans shards of ``plan``. ``analyzers``: already built ones (in-process), else built here
    from the plan (a pool or Ray worker process) with ``index``/``workers`` sharing the machine."""

    def __init__(self, plan: ScanPlan, *, analyzers: Sequence[Analyzer] | None = None, index: int = 0,
                 workers: int = 1, emit: Callable[[pa.Table], None] | None = None, label: str | None = None):
        self.plan = plan
        self.out = OutDir(plan.out_root)
        self.emit = emit
        self.label = label  # "worker PID" in a worker process; None in-process
        self.setup_error: str | None = None
        self.analyzers: list[Analyzer] = list(analyzers) if analyzers is not None else []
        try:
            if analyzers is None:
                options = worker_options(plan, index, workers) if workers > 1 else dict(plan.options)
                self.analyzers = build_analyzers(plan.analyzers, options)
            for a in self.analyzers:
                a.setup()
        except (AnalyzerUnavailable, ConfigError) as exc:
            self.setup_error = str(exc)
        except Exception as exc:  # reported with the first shard, as a one-line error
            self.setup_error = f"{type(exc).__name__}: {exc}"

    def scan(self, shard: Shard, progress: Progress | None = None) -> ShardOutcome:
        if self.setup_error is not None:
            return ShardOutcome(shard.key, "refused", reason=self.setup_error, worker=self.label)
        p = self.plan
        try:
            record = scan_shard(shard, self.analyzers, p.scope, self.out, p.read, strict=p.strict, progress=progress,
                                config_hash=p.config_hash, emit=self.emit)
            outcome = ShardOutcome(shard.key, "done", record=record)
        except ShardFailed as exc:
            outcome = ShardOutcome(shard.key, "failed", reason=str(exc))
        except (StrictError, KeyboardInterrupt, EmitClosed):
            raise
        except Exception as exc:  # an analyzer bug must not take the other shards down
            outcome = ShardOutcome(shard.key, "failed", reason=f"{shard.rel}: {type(exc).__name__}: {str(exc)[:300]}")
        if self.label is None:
            return outcome
        # this worker's cumulative engine counters ride along, for the manifest's run record
        return ShardOutcome(outcome.key, outcome.status, outcome.record, outcome.reason, self.label, self.stats())

    def stats(self) -> dict:
        out = {}
        for a in self.analyzers:
            try:
                out[a.name] = a.stats()
            except Exception as exc:  # noqa: BLE001 - statistics must not hide the run's own outcome
                out[a.name] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
        return {k: v for k, v in out.items() if v}

    def close(self) -> None:
        for a in self.analyzers:
            a.close()


def worker_label() -> str:
    return f"worker {os.getpid()}"
