"""An analyzer that declares record fields (``input_fields``) gets them projected into its batches,
by dotted path, with one value per document (None where absent)."""

from collections import Counter

import pyarrow as pa

from llama_audit.analyzers import registry
from llama_audit.analyzers.base import Analyzer
from llama_audit.job import ScanRequest, run_scan
from llama_audit.partials import from_table
from llama_audit.store import OutDir


class SourceAnalyzer(Analyzer):
    name = "sources"

    def input_fields(self):
        return ("meta.source",)

    def fields(self):
        return [pa.field("source", pa.string())]

    def annotate(self, batch, ctx):
        return {"source": pa.array(batch.fields["meta.source"], pa.string())}

    def fold(self, columns, ctx):
        return Counter("source/" + (s or "none") for s in columns["source"].to_pylist())


def test_declared_fields_reach_the_batch(tmp_path, make_jsonl, monkeypatch):
    monkeypatch.setitem(registry.BUILTINS, "sources", f"{__name__}:SourceAnalyzer")
    make_jsonl("a.jsonl", [{"text": "x", "meta": {"source": "web"}}, {"text": "y", "meta": {"source": "code"}},
                           {"text": "z"}, {"text": "w", "meta": {"source": "web"}}])
    run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "out"), analyzers=["sources"],
                         languages=("all",)))
    import pyarrow.parquet as pq

    counts = from_table(pq.read_table(OutDir(tmp_path / "out").summary_path()))["sources"]
    assert counts == Counter({"source/web": 2, "source/code": 1, "source/none": 1})
