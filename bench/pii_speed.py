#!/usr/bin/env python
"""Throughput of the PII analyzer beside raw read throughput, measured in the same run.

    python bench/pii_speed.py CORPUS.jsonl [--field text] [--min-mb 8] [--batch-size 1024]
                              [--trials 3] [--types EMAIL_ADDRESS,PHONE_NUMBER,...] [--region US]

The jsonl file is repeated in memory until it holds at least ``--min-mb`` MB of text, then:

* raw read: read the file from disk (page cache after the first pass) and ``orjson``-parse every
  line, taking the text field: as many passes as repeats;
* analyzer: ``PiiAnalyzer.annotate`` + ``fold`` over the same texts in batches of ``--batch-size``
  documents (the analyzer alone: no reading, no writing).

MB are 10^6 bytes of UTF-8 text in the field. The process is pinned to one CPU core (Linux) and
Arrow to one thread, so the figures are per core. Each figure is the best of ``--trials`` runs.
Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa

from llama_audit.analyzers.base import BatchContext, DocBatch
from llama_audit.analyzers.pii import PiiAnalyzer


def pin_one_core() -> str:
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    return "not pinned (no sched_setaffinity here); Arrow limited to 1 thread"


def _open(path: Path):
    """Plain or gzipped JSON lines."""
    import gzip

    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_pass(path: Path, field: str) -> int:
    nbytes = 0
    with _open(path) as fh:
        for line in fh:
            if line.strip():
                text = orjson.loads(line).get(field)
                if isinstance(text, str):
                    nbytes += len(text.encode("utf-8"))
    return nbytes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path, nargs="?",
                    default=Path(__file__).resolve().parent.parent / "examples/web_samples/part-00000.jsonl.gz",
                    help="a .jsonl or .jsonl.gz file of documents (default: a bundled web sample shard)")
    ap.add_argument("--field", default="text")
    ap.add_argument("--min-mb", type=float, default=8.0)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--types", default=None, help="comma-separated PII types (default: all)")
    ap.add_argument("--region", default="US")
    args = ap.parse_args(argv)

    pinned = pin_one_core()
    texts_once: list[str] = []
    with _open(args.corpus) as fh:
        for line in fh:
            if line.strip():
                text = orjson.loads(line).get(args.field)
                if isinstance(text, str):
                    texts_once.append(text)
    mb_once = sum(len(t.encode("utf-8")) for t in texts_once) / 1e6
    if mb_once == 0:
        ap.error("no text found")
    repeats = max(1, int(np.ceil(args.min_mb / mb_once)))
    texts = texts_once * repeats
    mb = mb_once * repeats

    types = tuple(args.types.split(",")) if args.types else None
    analyzer = PiiAnalyzer({"types": types, "region": args.region})
    analyzer.setup()
    batches = []
    for b0 in range(0, len(texts), args.batch_size):
        chunk = texts[b0 : b0 + args.batch_size]
        rows = np.arange(b0, b0 + len(chunk), dtype=np.int64)
        batches.append(DocBatch("bench", rows, [str(r) for r in rows], chunk))

    read_s: list[float] = []
    pii_s: list[float] = []
    documents_with_pii = 0
    for _ in range(args.trials):
        t0 = time.perf_counter()
        for _ in range(repeats):
            read_pass(args.corpus, args.field)
        read_s.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        total = 0
        for batch in batches:
            ctx = BatchContext(in_scope=np.ones(len(batch), dtype=bool), columns={})
            cols = analyzer.annotate(batch, ctx)
            total += analyzer.fold(cols, ctx).get("documents_with_pii", 0)
        pii_s.append(time.perf_counter() - t0)
        documents_with_pii = total

    read_mbs = mb / min(read_s)
    pii_mbs = mb / min(pii_s)
    print(f"corpus: {args.corpus.name}  {len(texts_once)} docs x {repeats} = {len(texts)} docs, {mb:.1f} MB of text")
    print(f"cpu: {platform.processor() or platform.machine()}, python {platform.python_version()}, {pinned}")
    print(f"types: {','.join(analyzer.types)}  region: {analyzer.region}  batch: {args.batch_size}  trials: {args.trials} (best)")
    print(f"raw read (read + orjson parse) : {read_mbs:8.1f} MB/s per core")
    print(f"pii analyzer (annotate + fold) : {pii_mbs:8.1f} MB/s per core")
    print(f"ratio analyzer / raw read      : {pii_mbs / read_mbs:8.2f}")
    print(f"documents with PII             : {documents_with_pii} of {len(texts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
