"""``llama-audit estimate``: how long would a scan of this corpus take here?

Reads a sample of documents from the corpus (spread over its shards), times the selected
analyzers on it with the scan's own code path, and projects the time for the whole corpus from
its size on disk and the sample's ratio of text bytes to file bytes. Nothing is written.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any, Mapping, Sequence

from llama_audit.analyzers.registry import build_analyzers
from llama_audit.corpus import ReadSpec, discover, read_shard
from llama_audit.job import check_languages, choose_analyzers
from llama_audit.scan import Scope, analyze_batch


@dataclasses.dataclass
class Estimate:
    shards: int
    file_bytes: int
    sample_documents: int
    sample_text_bytes: int
    sample_file_bytes: int
    text_bytes_projected: float
    seconds_per_mb: dict[str, float]  # per analyzer and "total", on one core
    analyzers: list[str]
    skipped: dict[str, str]

    def hours(self, workers: int = 1) -> float:
        return self.text_bytes_projected / 1e6 * self.seconds_per_mb["total"] / max(1, workers) / 3600


def estimate(paths: Sequence[str], *, analyzers: Sequence[str] | None = None, languages: Sequence[str] = ("en",),
             options: Mapping[str, Any] | None = None, sample_mb: float = 8.0, text_field: str = "text",
             id_field: str = "id", skip_unknown: bool = False, warn=lambda m: None) -> Estimate:
    choice = choose_analyzers(analyzers, languages, options, warn)
    names, skipped = choice.names, choice.skipped
    instances = build_analyzers(names, choice.options)
    scope = Scope(tuple(languages), next((a.scope_column for a in instances if a.scope_column), None))
    check_languages(instances, scope)
    for a in instances:
        a.setup()
    shards = discover(paths, skip_unknown=skip_unknown, warn=warn)
    file_bytes = sum(s.size for s in shards)
    # sample: round-robin over (up to 16) shards, the first documents of each
    budget = sample_mb * 1e6
    per_shard = budget / max(1, min(len(shards), 16))
    batches, text_bytes, read_bytes = [], 0, 0
    spec = ReadSpec(text_field=text_field, id_field=id_field, batch_docs=256, batch_bytes=1 << 20)
    for shard in shards[:: max(1, len(shards) // 16)][:16]:
        got = 0
        for batch, _, pos in read_shard(shard, spec):
            if batch is not None and len(batch):
                n = sum(len(t.encode("utf-8", "surrogatepass")) for t in batch.texts)
                batches.append(batch)
                got += n
            consumed = pos
            if got >= per_shard:
                break
        text_bytes += got
        read_bytes += consumed
    ratio = text_bytes / read_bytes if read_bytes else 1.0
    mb = max(text_bytes / 1e6, 1e-9)
    timings: dict[str, float] = {}
    for b in batches:  # one pass, as a scan does it (caches start cold, as in a fresh scan)
        analyze_batch(b, instances, scope, {"corpus": Counter()}, timings)
    per = {a.name: timings.get(a.name, 0.0) / mb for a in instances}
    per["total"] = sum(timings.values()) / mb
    for a in instances:
        a.close()
    return Estimate(len(shards), file_bytes, sum(len(b) for b in batches), text_bytes, read_bytes,
                    file_bytes * ratio, per, names, skipped)
