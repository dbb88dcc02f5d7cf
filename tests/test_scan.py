"""scan.py: one shard end to end -- outputs that do not depend on how the shard is batched, and
analysis memory bounded for a huge document."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from collections import Counter

import numpy as np
import pyarrow.parquet as pq

from llama_audit.analyzers.registry import build_analyzers
from llama_audit.job import ScanRequest, run_scan
from llama_audit.scan import ReadOptions, Scope, analyze_batch
from llama_audit.types import DocBatch

from conftest import EXAMPLES

CPU_ANALYZERS = ["language", "pronouns", "identities", "pii"]


def _annotations(out):
    tables = {p.name: pq.read_table(p) for p in sorted((out / "annotations").glob("*.parquet"))}
    assert tables
    return tables


def test_annotation_columns_do_not_depend_on_batch_docs(tmp_path):
    """Every column, lang_score included, is bit-identical for --batch-docs 1, 7 and the default:
    a document's float path does not depend on what else is in its batch (at 1, lang_score used
    to move by ~1e-7 through the output layer's summation order)."""
    results = {}
    for batch in (1, 7, None):
        out = tmp_path / f"b{batch}"
        res = run_scan(ScanRequest(paths=[str(EXAMPLES)], out=str(out), analyzers=CPU_ANALYZERS,
                                   read=ReadOptions(batch_docs=batch)))
        assert res.exit_code == 0
        results[batch] = _annotations(out)
    assert results[1].keys() == results[7].keys() == results[None].keys()
    for name, default in results[None].items():
        assert "lang_score" in default.column_names
        for other in (results[1][name], results[7][name]):
            assert other.schema == default.schema
            for col in default.column_names:
                assert other[col].combine_chunks().equals(default[col].combine_chunks()), (name, col)


def _example_text() -> str:
    texts = []
    for p in sorted(EXAMPLES.glob("*.jsonl.gz")):
        with gzip.open(p, "rt", encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for line in f]
    return "\n".join(texts)


def test_one_huge_document_is_analysed_in_bounded_memory(monkeypatch):
    """A document far longer than the piece sizes (here 64 K characters, by default 4 M) is
    analysed a piece at a time: the analysis peak is a small multiple of the text, not the ~25x of
    whole-document token lists and feature matrices (200 MB took 7 GB). Measured with tracemalloc
    (numpy and Python allocations), caches warmed first so only the document's own cost counts."""
    import llama_audit.analyzers.fastlid as fastlid
    import llama_audit.text as text

    monkeypatch.setattr(text, "LONG_DOC_CHARS", 1 << 16)
    monkeypatch.setattr(fastlid, "LONG_LINE_CHARS", 1 << 16)
    monkeypatch.setattr(fastlid, "BATCH_CHARS", 1 << 16)
    doc = _example_text()
    size = len(doc.encode("utf-8"))
    assert size > 1_500_000
    analyzers = build_analyzers(CPU_ANALYZERS)
    scope = Scope(("en",), "lang")

    def analyse():
        batch = DocBatch("huge", np.zeros(1, dtype=np.int64), ["huge"], [doc])
        return analyze_batch(batch, analyzers, scope, {"corpus": Counter()})

    warm = analyse()
    tracemalloc.start()
    try:
        table = analyse()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert table.equals(warm)
    assert table["lang"][0].as_py() == "en" and table["pronoun_groups"][0].as_py()
    assert peak < 16 * size, f"analysis peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB document"
