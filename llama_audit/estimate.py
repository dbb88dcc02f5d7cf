"""``llama-audit estimate``: how long would a scan of this corpus take here?

Reads a sample of documents from the corpus (spread over its shards), times the selected
analyzers on it with the scan's own code path, and projects the time for the whole corpus from
its size on disk and the sample's ratio of text bytes to file bytes. Nothing is written.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any, Mapping, Sequence

from llama_audit import partials
from llama_audit.analyzers.registry import build_analyzers
from llama_audit.corpus import ReadSpec, Shard, ShardUnreadable, discover, read_shard
from llama_audit.job import check_languages, choose_analyzers
from llama_audit.scan import Scope, analyze_batch
from llama_audit.types import ConfigError, DocBatch

SAMPLED_SHARDS = 16  # shards the sample is spread over
READ_FACTOR = 4  # a shard's sample stops after READ_FACTOR x its text budget of input bytes


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
    unreadable: dict[str, str] = dataclasses.field(default_factory=dict)  # shard name -> why (not in the projection)

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
    try:
        return _estimate(paths, instances, scope, names, skipped, sample_mb=sample_mb, text_field=text_field,
                         id_field=id_field, skip_unknown=skip_unknown, warn=warn)
    finally:
        for a in instances:
            a.close()


def _estimate(paths: Sequence[str], instances: Sequence[Any], scope: Scope, names: list[str], skipped: dict[str, str],
              *, sample_mb: float, text_field: str, id_field: str, skip_unknown: bool, warn) -> Estimate:
    shards = discover(paths, skip_unknown=skip_unknown, warn=warn)
    spec = ReadSpec(text_field=text_field, id_field=id_field, batch_docs=256, batch_bytes=1 << 20)
    per_shard = sample_mb * 1e6 / max(1, min(len(shards), SAMPLED_SHARDS))
    batches: list[DocBatch] = []
    text_bytes = read_bytes = sampled = 0
    unreadable: dict[str, str] = {}
    # sample: the first documents of up to 16 shards spread over the corpus; a shard that cannot
    # be read is reported and skipped as a scan would, and the next one in line takes its place
    for shard in _sample_order(shards):
        if sampled >= SAMPLED_SHARDS:
            break
        try:
            got, consumed = _sample_shard(shard, spec, per_shard, batches)
        except ShardUnreadable as exc:
            unreadable[shard.rel] = str(exc)
            warn(f"skipping shard {shard.rel}: {exc}")
            continue
        sampled += 1
        text_bytes += got
        read_bytes += consumed
    if shards and not sampled:
        first = next(iter(unreadable.values()))
        raise ConfigError(f"no shard could be read ({len(unreadable)} tried; first: {first})")
    if shards and not batches:
        raise ConfigError(f"no document in the first {read_bytes / 1e6:,.1f} MB read from {sampled} shard(s) "
                          f"has a string at field {text_field!r} (is --text-field right?)")
    file_bytes = sum(s.size for s in shards if s.rel not in unreadable)
    ratio = text_bytes / read_bytes if read_bytes else 1.0
    mb = max(text_bytes / 1e6, 1e-9)
    timings: dict[str, float] = {}
    for b in batches:  # one pass, as a scan does it (caches start cold, as in a fresh scan)
        analyze_batch(b, instances, scope, {partials.CORPUS: Counter()}, timings)
    per = {a.name: timings.get(a.name, 0.0) / mb for a in instances}
    per["total"] = sum(timings.values()) / mb
    return Estimate(len(shards), file_bytes, sum(len(b) for b in batches), text_bytes, read_bytes,
                    file_bytes * ratio, per, names, skipped, unreadable)


def _sample_order(shards: Sequence[Shard]) -> list[Shard]:
    """Every shard once: first 16 spread evenly over the corpus, then the rest in order (the
    stand-ins for sampled shards that turn out unreadable)."""
    spread = list(shards[:: max(1, len(shards) // SAMPLED_SHARDS)][:SAMPLED_SHARDS])
    picked = {id(s) for s in spread}
    return spread + [s for s in shards if id(s) not in picked]


def _sample_shard(shard: Shard, spec: ReadSpec, budget: float, batches: list[DocBatch]) -> tuple[int, int]:
    """Append the first documents of ``shard`` (about ``budget`` bytes of text) to ``batches``;
    returns (text bytes, input bytes consumed). Reading stops after READ_FACTOR x ``budget`` input
    bytes even without documents, so a shard of bad records is not read to its end. Raises
    ShardUnreadable (nothing is appended then)."""
    got = consumed = 0
    mine: list[DocBatch] = []
    items = read_shard(shard, spec)
    try:
        for batch, _, pos in items:
            if batch is not None and len(batch):
                got += sum(len(t.encode("utf-8", "surrogatepass")) for t in batch.texts)
                mine.append(batch)
            consumed = pos
            if got >= budget or pos >= READ_FACTOR * budget:
                break
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()  # the reader's file, at once
    batches.extend(mine)
    return got, consumed
