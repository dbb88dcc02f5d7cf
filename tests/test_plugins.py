"""A third-party analyzer registered through the entry-point group runs like a built-in."""

import json
import sys
from pathlib import Path

from llama_audit.analyzers.base import ScanOptions
from llama_audit.analyzers.registry import ENTRY_POINT_GROUP, available_names
from llama_audit.job import ScanRequest, run_scan
from llama_audit.report.tables import build_report

PLUGIN_DIR = Path(__file__).resolve().parent.parent / "examples" / "plugin"


def install_plugin(tmp_path, monkeypatch):
    dist = tmp_path / "site" / "url_counter-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: url-counter\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nurls = url_counter:UrlAnalyzer\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))


def test_plugin_is_discovered_and_runs(tmp_path, monkeypatch, make_jsonl):
    install_plugin(tmp_path, monkeypatch)
    assert available_names()["urls"] == "url_counter:UrlAnalyzer"
    make_jsonl("a.jsonl", [{"text": "see https://example.org and http://x.y"}, {"text": "no link"}])
    run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "out"),
                         analyzers=["urls", "pronouns"], options=ScanOptions(languages=("all",))))
    r = build_report(str(tmp_path / "out"))
    assert r["urls"] == {"counts": {"documents_with_urls": 1, "urls": 2}}
    import pyarrow.parquet as pq
    t = pq.read_table(next((tmp_path / "out/annotations").glob("*.parquet")))
    assert t["urls"].to_pylist() == [2, 0]
    sys.modules.pop("url_counter", None)
