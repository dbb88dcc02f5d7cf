#!/usr/bin/env python3
"""llama-audit vs datatrove, side by side in one run, on the same gzipped JSON-lines web corpus.

datatrove is not a dependency: install it in its own virtualenv and pass its python, e.g.

    python3 -m venv /tmp/dtvenv && /tmp/dtvenv/bin/pip install 'datatrove[processing]==0.10.1'
    python bench/peers_datatrove.py --datatrove-python /tmp/dtvenv/bin/python

Both sides run pinned to one core and use the same fastText model file (our embedded lid.176.ftz;
datatrove would otherwise download lid.176.bin). Rows, end to end from the compressed files:
datatrove reader -> LanguageFilter(label_only); datatrove reader -> LanguageFilter -> PIIFormatter
(email, IP); llama-audit scan with the language analyzer; llama-audit scan with language,
pronouns, identities and pii (the full CPU audit, writing annotations and partials).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import build_corpus, one_core, text_mb  # noqa: E402

from llama_audit.analyzers.language import embedded_model_path  # noqa: E402
from llama_audit.job import ScanRequest, run_scan  # noqa: E402

DATATROVE_SCRIPT = textwrap.dedent("""
    import os, sys, time, tempfile
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import datatrove.utils.lid as lid
    lid.cached_asset_path_or_download = lambda *a, **k: sys.argv[2]
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.filters import LanguageFilter
    from datatrove.pipeline.formatters import PIIFormatter
    steps = [JsonlReader(sys.argv[1], glob_pattern="*.jsonl.gz"), LanguageFilter(label_only=True)]
    if sys.argv[3] == "pii":
        steps.append(PIIFormatter())
    with tempfile.TemporaryDirectory() as logs:
        t = time.perf_counter()
        LocalPipelineExecutor(steps, tasks=1, workers=1, logging_dir=logs).run()
        print(time.perf_counter() - t)
""")


def datatrove_seconds(python: str, folder: Path, mode: str) -> float:
    res = subprocess.run([python, "-c", DATATROVE_SCRIPT, str(folder), str(embedded_model_path()), mode],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"datatrove run failed:\n{res.stderr[-2000:]}")
    return float(res.stdout.strip().splitlines()[-1])


def ours_seconds(folder: Path, analyzers: list[str], engine: str = "auto") -> float:
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        run_scan(ScanRequest(paths=[str(folder)], out=out, analyzers=analyzers, options={"language": {"engine": engine}}))
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datatrove-python", required=True, help="python of a virtualenv with datatrove installed")
    ap.add_argument("--mb", type=float, default=20)
    args = ap.parse_args()
    one_core()
    folder = build_corpus(args.mb)
    import gzip
    import orjson
    texts = []
    for p in sorted(folder.glob("*.jsonl.gz")):
        with gzip.open(p) as f:
            texts.extend(orjson.loads(line)["text"] for line in f)
    mb = text_mb(texts)
    rows = [
        ("datatrove: reader -> LanguageFilter", datatrove_seconds(args.datatrove_python, folder, "lang")),
        ("llama-audit: scan --analyzers language", ours_seconds(folder, ["language"])),
        ("llama-audit: same, --lid-engine fasttext (binding)", ours_seconds(folder, ["language"], "fasttext")),
        ("datatrove: reader -> LanguageFilter -> PIIFormatter", datatrove_seconds(args.datatrove_python, folder, "pii")),
        ("llama-audit: scan language,pronouns,identities,pii", ours_seconds(folder, ["language", "pronouns", "identities", "pii"])),
    ]
    print(f"corpus: {len(texts):,} documents, {mb:.1f} MB of text; one core each; same lid.176.ftz")
    print(f"{'pipeline (end to end)':52s} {'MB/s':>7s}")
    for label, t in rows:
        print(f"{label:52s} {mb / t:7.2f}")
    d = dict(rows)
    print(f"language: llama-audit / datatrove = {d[rows[0][0]] / d[rows[1][0]]:.2f}x "
          f"(with the fastText binding: {d[rows[0][0]] / d[rows[2][0]]:.2f}x)")
    print(f"full CPU audit vs datatrove lang+PII = {d[rows[3][0]] / d[rows[4][0]]:.2f}x (ours also counts pronouns and identities)")
    print("note: the corpus repeats the example documents, which warms FastLid's per-word cache; "
          "bench/scan_throughput.py prints a cold-cache row")


if __name__ == "__main__":
    main()
