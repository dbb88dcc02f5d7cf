"""In-process executor: shard after shard in this process, with the job's own analyzers (the only
executor that can stream ``--emit jsonl``)."""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import pyarrow as pa

from llama_audit.analyzers.base import Analyzer
from llama_audit.corpus import Shard
from llama_audit.executors.base import Progress, ScanPlan, ShardOutcome
from llama_audit.executors.worker import ShardWorker
from llama_audit.types import ConfigError


class InProcessExecutor:
    name = "in-process"

    def __init__(self, analyzers: Sequence[Analyzer], emit: Callable[[pa.Table], None] | None = None):
        self.analyzers = analyzers
        self.emit = emit

    def describe(self) -> dict:
        return {"name": self.name}

    def run(self, shards: Sequence[Shard], plan: ScanPlan, progress: Progress | None) -> Iterator[ShardOutcome]:
        worker = ShardWorker(plan, analyzers=self.analyzers, emit=self.emit)
        if worker.setup_error is not None:
            raise ConfigError(worker.setup_error)
        for shard in shards:
            try:
                outcome = worker.scan(shard, progress)
            except BaseException:
                yield ShardOutcome(shard.key, "interrupted")
                raise
            yield outcome
