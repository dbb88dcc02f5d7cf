#!/usr/bin/env python3
"""The cost of ``scan --group-by`` and of ``report --group-by``, measured side by side in one run.

1. Analysis (the CPU audit: language, pronouns, identities, PII) of the same batches of a web
   corpus whose records carry one of ``--sources`` sources: without grouping, and with the counts
   folded per source as well (llama_audit/groups.py). Printed as MB/s per core and the ratio.
2. ``report --group-by source --top-groups 20`` of an OUT holding ``--groups`` groups (10,000 by
   default; made by a real scan of short documents, one source each), rendered in every format;
   the issue asks for under a second per format.

    python bench/group_by.py [--mb 8] [--sources 20] [--groups 10000]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import example_docs, one_core, text_mb  # noqa: E402

from llama_audit import groups  # noqa: E402
from llama_audit.analyzers.registry import build_analyzers  # noqa: E402
from llama_audit.corpus import ReadSpec, discover, read_shard  # noqa: E402
from llama_audit.scan import Scope, analyze_in_order  # noqa: E402

CPU_AUDIT = ["language", "pronouns", "identities", "pii"]


def write_corpus(folder: Path, target_mb: float, sources: int) -> Path:
    docs = example_docs()
    per_round = sum(len(d["text"].encode()) for d in docs)
    rounds = max(1, round(target_mb * 1e6 / per_round))
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "web.jsonl.gz", "wt", encoding="utf-8") as f:
        i = 0
        for r in range(rounds):
            for d in docs:
                f.write(json.dumps({"id": f"{r}-{i}", "text": d["text"], "source": f"source-{i % sources:02d}"}) + "\n")
                i += 1
    return folder


def batches_of(folder: Path):
    out = []
    for shard in discover([str(folder)]):
        for batch, _, _ in read_shard(shard, ReadSpec(fields=("source",))):
            if batch is not None:
                out.append(batch)
    return out


def analyze(batches, grouped: bool) -> float:
    analyzers = build_analyzers(CPU_AUDIT)
    scope = Scope(("en",), "lang")
    by = groups.GroupBy.parse("source")
    counts: dict = {"corpus": Counter()}
    group_counts: dict = {}
    t = time.perf_counter()
    for batch in batches:
        batch.cache.clear()
        g = groups.BatchGroups.of(batch.fields, by, len(batch)) if grouped else None
        analyze_in_order(batch, analyzers, scope, counts, None, None, g, group_counts if grouped else None)
    return time.perf_counter() - t


def report_seconds(n_groups: int) -> dict[tuple[str, bool], float]:
    from click.testing import CliRunner

    from llama_audit.cli import command

    runner = CliRunner()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        with open(corpus / "many.jsonl", "w") as f:
            for i in range(n_groups * 2):
                f.write(json.dumps({"text": "She called him at 555-123-4567. I am a gay man from France.",
                                    "source": f"site-{i % n_groups:05d}"}) + "\n")
        out = Path(tmp) / "out"
        res = runner.invoke(command(), ["scan", str(corpus), "--out", str(out), "--analyzers", ",".join(CPU_AUDIT),
                                        "--languages", "all", "--group-by", "source", "--quiet"])
        assert res.exit_code == 0, res.output
        runner.invoke(command(), ["report", str(out), "--format", "json"])  # imports, once (as any report pays)
        seconds = {}
        for fmt in ("json", "table", "md", "csv", "html"):
            for grouped, extra in ((False, []), (True, ["--group-by", "source", "--top-groups", "20"])):
                t = time.perf_counter()
                res = runner.invoke(command(), ["report", str(out), "--format", fmt, "--no-figures", *extra])
                seconds[fmt, grouped] = time.perf_counter() - t
                assert res.exit_code == 0, res.output
        data = json.loads(runner.invoke(command(), ["report", str(out), "-f", "json", "--group-by", "source"]).stdout)
        assert data["group_by"]["groups"] == n_groups, data["group_by"]
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=8.0)
    ap.add_argument("--sources", type=int, default=20)
    ap.add_argument("--groups", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    one_core()
    with tempfile.TemporaryDirectory() as tmp:
        batches = batches_of(write_corpus(Path(tmp) / "c", args.mb, args.sources))
    mb = text_mb(t for b in batches for t in b.texts)
    plain = min(analyze(batches, False) for _ in range(args.repeat))
    grouped = min(analyze(batches, True) for _ in range(args.repeat))
    print(f"CPU audit ({', '.join(CPU_AUDIT)}) on {mb:.1f} MB, {args.sources} sources, one core:")
    print(f"  without --group-by      {mb / plain:7.2f} MB/s")
    print(f"  with --group-by source  {mb / grouped:7.2f} MB/s   ({grouped / plain:.3f}x the time)")
    print(f"report of an OUT with {args.groups:,} groups, seconds (CLI in-process, imports already done):")
    print("  format  plain  --group-by source --top-groups 20")
    seconds = report_seconds(args.groups)
    for fmt in ("json", "table", "md", "csv", "html"):
        print(f"  {fmt:6s} {seconds[fmt, False]:6.2f} {seconds[fmt, True]:6.2f}")


if __name__ == "__main__":
    main()
