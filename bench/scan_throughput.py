#!/usr/bin/env python3
"""Scan throughput, side by side in one run on the same gzipped JSON-lines web corpus.

Prints MB/s per core (MB = UTF-8 bytes of document text) and the ratio to raw read for:
raw read (gzip + JSON parse), our reader, each analyzer alone (identities also with its sense-mode
step off, i.e. paper mode only), language+pronouns+identities,
the full CPU audit (+ PII), an end-to-end `scan` (read, analyze, write), and baselines measured
in the same run (plain fastText predict k=1, fastText k=-1 as datatrove's language filter calls
it, a naive Python pronoun + descriptor counter). `--rss` adds peak RSS of whole scans on
100 MB and 1 GB corpora (separate processes).

    python bench/scan_throughput.py [--mb 20] [--rss] [--rss-sizes 100,1000]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import resource
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import build_corpus, one_core, text_mb, timed  # noqa: E402

import orjson  # noqa: E402

from llama_audit.analyzers.registry import build_analyzers  # noqa: E402
from llama_audit.corpus import discover, read_shard  # noqa: E402
from llama_audit.job import ScanRequest, run_scan  # noqa: E402
from llama_audit.lexicon import Lexicon, builtin_path  # noqa: E402
from llama_audit.scan import Scope, analyze_batch  # noqa: E402


def raw_read(paths):
    texts = []
    for p in paths:
        with gzip.open(p, "rb") as f:
            for line in f:
                texts.append(orjson.loads(line)["text"])
    return texts


def our_read(folder):
    batches = []
    for shard in discover([str(folder)]):
        for batch, _, _ in read_shard(shard):
            if batch is not None:
                batches.append(batch)
    return batches


def run_analyzers(batches, names, languages, paper_only=False):
    analyzers = build_analyzers(names)  # default options
    if paper_only:  # the identities analyzer as it was before sense mode: its sense step returns paper's hits
        for a in analyzers:
            if hasattr(a, "sense_matcher"):
                a.sense_matcher.counted = lambda text, hits: hits
    analyzers.sort(key=lambda a: a.scope_column is None)  # the scope provider runs first, as in a scan
    scope = Scope(tuple(languages), next((a.scope_column for a in analyzers if a.scope_column), None))
    for a in analyzers:
        a.setup()

    def go():
        for b in batches:
            b.cache.clear()
            analyze_batch(b, analyzers, scope, {})
    return go


def naive_counter(texts):
    """What a user would write first: lowercase, regex words, count lexicon hits per document."""
    pron = Lexicon.load(builtin_path("pronouns.tsv"), allow_multi_group=True)
    ids = Lexicon.load(builtin_path("identities.tsv"))
    words = {e.term for e in pron.entries} | {e.term for e in ids.entries if " " not in e.term}
    word_re = re.compile(r"\w+")

    def go():
        c = Counter()
        for t in texts:
            c.update(set(word_re.findall(t.lower())) & words)
        return c
    return go


def rss_scan(mb: int) -> tuple[float, float]:
    folder = build_corpus(mb, name=f"web_{mb}mb_rss", shards=max(1, mb // 100))
    with tempfile.TemporaryDirectory() as out:
        code = ("import resource,sys,time;from llama_audit.job import ScanRequest,run_scan;t=time.time();"
                f"run_scan(ScanRequest(paths=[{str(folder)!r}],out={out!r},analyzers=['language','pronouns','identities','pii']));"
                "print(time.time()-t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        secs, kb = res.stdout.split()
    return float(secs), int(kb) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=20, help="corpus size in MB of text")
    ap.add_argument("--repeat", type=int, default=2, help="best of N runs per row")
    ap.add_argument("--rss", action="store_true", help="also measure peak RSS of whole scans")
    ap.add_argument("--rss-sizes", default="100,1000", help="corpus sizes (MB) for --rss")
    args = ap.parse_args()
    one_core()
    folder = build_corpus(args.mb)
    paths = sorted(folder.glob("*.jsonl.gz"))

    t_raw, texts = timed(lambda: raw_read(paths), args.repeat)
    mb = text_mb(texts)
    rows = [("raw read (gzip + orjson)", t_raw)]
    t_read, batches = timed(lambda: our_read(folder), args.repeat)
    rows.append(("llama-audit reader", t_read))
    for names, langs in ((["language"], ("all",)), (["pronouns"], ("all",)), (["identities"], ("all",)),
                         (["pii"], ("all",)), (["language", "pronouns", "identities"], ("en",)),
                         (["language", "pronouns", "identities", "pii"], ("en",))):
        try:
            t, _ = timed(run_analyzers(batches, names, langs), args.repeat)
        except Exception as exc:  # e.g. an analyzer not installed
            print(f"skip {names}: {exc}", file=sys.stderr)
            continue
        label = "+".join(names) if len(names) > 1 else names[0] + " alone"
        rows.append((f"{label} (analyze only)", t))

    t_paper, _ = timed(run_analyzers(batches, ["identities"], ("all",), paper_only=True), args.repeat)
    rows.append(("identities alone, sense step off (paper only)", t_paper))

    # The corpus repeats the example documents, so FastLid's per-word cache is warm after the
    # first round. Honest cold figure: a fresh analyzer on the first round (unique text) only.
    import numpy as np
    from llama_audit.analyzers.base import DocBatch
    round0 = [(i, t) for b in batches for i, t in zip(b.doc_ids, b.texts) if i.startswith("0-")]
    first = [DocBatch("cold", np.arange(len(round0[k:k + 1024])), [i for i, _ in round0[k:k + 1024]],
                      [t for _, t in round0[k:k + 1024]]) for k in range(0, len(round0), 1024)]
    first_mb = text_mb(t for b in first for t in b.texts)
    t_cold, _ = timed(run_analyzers(first, ["language"], ("all",)), 1)
    cold_row = ("language alone, cold cache (unique text)", t_cold * mb / first_mb)
    rows.insert(3, cold_row)

    with tempfile.TemporaryDirectory() as out:
        t_scan, _ = timed(lambda: run_scan(ScanRequest(paths=[str(folder)], out=out, overwrite=True,
                                                      analyzers=["language", "pronouns", "identities", "pii"])), 1)
    rows.append(("scan end to end: read+4 analyzers+write", t_scan))

    import fasttext
    from llama_audit.analyzers.language import embedded_model_path
    model = fasttext.load_model(str(embedded_model_path()))
    lines = [t.replace("\n", " ") for t in texts]
    rows.append(("baseline: fastText predict k=1", timed(lambda: model.predict(lines, k=1), args.repeat)[0]))
    rows.append(("baseline: fastText k=-1 (datatrove's call)",
                 timed(lambda: [model.predict(line, k=-1) for line in lines], 1)[0]))
    rows.append(("baseline: naive pronoun+descriptor counter", timed(naive_counter(texts), args.repeat)[0]))

    print(f"corpus: {len(texts):,} documents, {mb:.1f} MB of text, {len(paths)} jsonl.gz shard(s); one core")
    print(f"{'step':48s} {'MB/s':>8s} {'x raw read':>10s}")
    for label, t in rows:
        print(f"{label:48s} {mb / t:8.2f} {t_raw / t:10.3f}")
    d = dict(rows)
    lang, ft = d.get("language alone (analyze only)"), d["baseline: fastText k=-1 (datatrove's call)"]
    if lang:
        print(f"language analyzer vs datatrove-style fastText call: {ft / lang:.2f}x")
    ids = d.get("identities alone (analyze only)")
    if ids:
        print(f"identities, both modes (paper + sense) vs paper only: {t_paper / ids:.2f}x the throughput")
    full = d.get("language+pronouns+identities+pii (analyze only)")
    if full:
        print(f"full CPU audit (analyze only): {mb / full:.2f} MB/s; end to end: {mb / t_scan:.2f} MB/s")
    if args.rss:
        for size in (int(s) for s in args.rss_sizes.split(",")):
            secs, rss = rss_scan(size)
            print(f"peak RSS, scan of {size} MB corpus: {rss:,.0f} MiB ({size / secs:.2f} MB/s)")


if __name__ == "__main__":
    main()
