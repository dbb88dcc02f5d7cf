"""Shared helpers for the benchmarks: a multi-MB web corpus built from the bundled examples."""

from __future__ import annotations

import gzip
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "web_samples"
DATA = ROOT / "bench" / "_data"


def example_docs() -> list[dict]:
    docs = []
    for p in sorted(EXAMPLES.glob("*.jsonl.gz")):
        with gzip.open(p, "rt", encoding="utf-8") as f:
            docs.extend(json.loads(line) for line in f)
    return docs


def build_corpus(target_mb: float, name: str | None = None, shards: int = 1) -> Path:
    """A gzipped JSON-lines corpus of about ``target_mb`` MB of text (the example docs repeated
    with fresh ids). Cached under bench/_data."""
    docs = example_docs()
    per_round = sum(len(d["text"].encode()) for d in docs)
    rounds = max(1, round(target_mb * 1e6 / per_round))
    folder = DATA / (name or f"web_{target_mb:g}mb")
    if (folder / ".done").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    outs = [gzip.open(folder / f"part-{s:05d}.jsonl.gz", "wt", encoding="utf-8", compresslevel=6) for s in range(shards)]
    k = 0
    for r in range(rounds):
        for i, d in enumerate(docs):
            outs[k % shards].write(json.dumps({"id": f"{r}-{i}", "text": d["text"]}, ensure_ascii=False) + "\n")
            k += 1
    for f in outs:
        f.close()
    (folder / ".done").write_text("ok")
    return folder


def text_mb(texts) -> float:
    return sum(len(t.encode("utf-8", "surrogatepass")) for t in texts) / 1e6


def timed(fn, repeat: int = 1):
    best = float("inf")
    result = None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def one_core() -> None:
    """Pin to one core so the figures are per core."""
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    except (AttributeError, OSError):
        pass
