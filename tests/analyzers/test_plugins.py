"""A third-party analyzer registered through the entry-point group runs like a built-in, and its
report section appears in every report format: its own section (the example plugin), or the
default one (a plugin with only ``fields``, ``annotate`` and ``fold``)."""

import csv
import io
import json
import shutil
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from click.testing import CliRunner

from llama_audit.analyzers.base import Analyzer
from llama_audit.analyzers.registry import ENTRY_POINT_GROUP, available_names
from llama_audit.cli import command
from llama_audit.job import ScanRequest, run_scan
from llama_audit.report.tables import build_report

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "examples" / "plugin"


class LineCounter(Analyzer):
    """The smallest plugin: no report code, so its counts get the default section."""

    name = "lines"

    def fields(self):
        return [pa.field("lines", pa.int32())]

    def annotate(self, batch, ctx):
        return {"lines": pa.array([t.count("\n") + 1 for t in batch.texts], pa.int32())}

    def fold(self, columns, ctx):
        return Counter({"lines": pc.sum(columns["lines"]).as_py() or 0, "documents": len(columns["lines"])})


def install_plugins(tmp_path, monkeypatch):
    dist = tmp_path / "site" / "url_counter-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: url-counter\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nurls = url_counter:UrlAnalyzer\n"
                                           f"lines = {__name__}:LineCounter\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    return dist


@pytest.fixture
def plugin_out(tmp_path, monkeypatch, make_jsonl):
    """An OUT scanned with both plugins and a built-in; yields (OUT, the plugins' dist-info)."""
    dist = install_plugins(tmp_path, monkeypatch)
    make_jsonl("a.jsonl", [{"text": "see https://example.org and http://x.y"}, {"text": "no link\nsecond line"}])
    run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "out"),
                         analyzers=["urls", "lines", "pronouns"], languages=("all",)))
    yield tmp_path / "out", dist
    sys.modules.pop("url_counter", None)


def report(out, fmt):
    res = CliRunner().invoke(command(), ["report", str(out), "--format", fmt])
    assert res.exit_code == 0, res.output
    return res.stdout


def test_plugin_is_discovered_and_runs(plugin_out):
    out, _ = plugin_out
    assert available_names()["urls"] == "url_counter:UrlAnalyzer"
    r = build_report(str(out))
    assert r["urls"] == {"documents_with_urls": 1, "pct_documents": 50.0, "urls": 2}
    import pyarrow.parquet as pq
    t = pq.read_table(next((out / "annotations").glob("*.parquet")))
    assert t["urls"].to_pylist() == [2, 0]


def test_plugin_sections_in_every_format(plugin_out):
    out, _ = plugin_out
    r = json.loads(report(out, "json"))
    assert r["urls"] == {"documents_with_urls": 1, "pct_documents": 50.0, "urls": 2}
    assert r["lines"] == {"counts": {"documents": 2, "lines": 3}}  # the default section
    for fmt in ("table", "markdown", "html"):
        text = report(out, fmt)
        # the example's own table, and the default table titled with the name, after the built-in's
        assert "documents with a URL" in text and "50.00" in text, fmt
        assert text.index("Table 9a") < min(text.index("URLs"), text.index("lines")), fmt
    rows = list(csv.reader(io.StringIO(report(out, "csv"))))
    # a plugin's rows without the interval columns get empty ones
    assert ["urls", "", "documents_with_urls", "1", "50.0", "2", "", ""] in rows
    assert ["lines", "", "lines", "3", "", "", "", ""] in rows and ["lines", "", "documents", "2", "", "", "", ""] in rows


def test_a_section_whose_analyzer_is_gone_keeps_its_counts(plugin_out):
    out, dist = plugin_out
    shutil.rmtree(dist)  # both plugins uninstalled after the scan
    r = json.loads(report(out, "json"))
    assert r["urls"] == {"counts": {"documents_with_urls": 1, "urls": 2}}
    assert "documents_with_urls" in report(out, "markdown")
    assert ["urls", "", "urls", "2", "", "", "", ""] in list(csv.reader(io.StringIO(report(out, "csv"))))
