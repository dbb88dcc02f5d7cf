"""The datatrove steps (llama_audit.integrations.datatrove) inside a real datatrove run.

One ``LocalPipelineExecutor`` run (2 tasks, 1 worker: the tasks run one after the other in
this process) reads the bundled example corpus with datatrove's ``JsonlReader``, annotates it
with ``LlamaAuditAnnotator`` into an OUT directory, writes every annotated document, filters
with ``LlamaAuditFilter`` and writes the kept ones. Everything it produced is compared with
what ``llama-audit scan`` / ``report`` / ``filter`` make of the same corpus."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from datatrove.data import Document
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from llama_audit.cli import command
from llama_audit.filter.run import FilterRequest, run_filter
from llama_audit.integrations.datatrove import METADATA_KEY, LlamaAuditAnnotator, LlamaAuditFilter
from llama_audit.job import ScanRequest, run_scan
from llama_audit.types import ConfigError
from conftest import EXAMPLES

ANALYZERS = ["pronouns", "pii", "identities", "language"]
DROP = "pii_count > 0 or lang != 'en'"
TASKS = 2


def cli(*args) -> str:
    result = CliRunner().invoke(command(), [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


def read_jsonl_dir(folder: Path) -> list[dict]:
    rows = []
    for path in sorted(folder.glob("*.jsonl.gz")):
        with gzip.open(path, "rt") as f:
            rows.extend(json.loads(line) for line in f)
    return rows


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The datatrove run and the scan + filter of the same corpus."""
    tmp = tmp_path_factory.mktemp("datatrove")
    corpus = tmp / "corpus"
    shutil.copytree(EXAMPLES, corpus)
    executor = LocalPipelineExecutor(
        pipeline=[
            JsonlReader(str(corpus)),
            LlamaAuditAnnotator(analyzers=ANALYZERS, out=str(tmp / "dt_out")),
            JsonlWriter(str(tmp / "annotated")),
            LlamaAuditFilter(drop=DROP),
            JsonlWriter(str(tmp / "kept")),
        ],
        tasks=TASKS, workers=1, logging_dir=str(tmp / "logs"))
    executor.run()
    scan = run_scan(ScanRequest([str(corpus)], str(tmp / "scan_out"), analyzers=ANALYZERS))
    assert scan.exit_code == 0
    cleaned = run_filter(FilterRequest(str(tmp / "scan_out"), str(tmp / "clean"), drop=[DROP]))
    assert cleaned.exit_code == 0
    return tmp


def test_metadata_holds_the_scan_annotation_columns_per_document(runs):
    scanned = pq.read_table(runs / "scan_out" / "annotations").to_pylist()
    annotated = read_jsonl_dir(runs / "annotated")
    assert len(annotated) == len(scanned) > 300
    by_id = {row["doc_id"]: row for row in scanned}
    analyzer_columns = [c for c in scanned[0] if c not in ("shard", "row")]  # positions differ by design
    for doc in annotated:
        meta = doc["metadata"][METADATA_KEY]
        assert {c: meta[c] for c in analyzer_columns} == {c: by_id[doc["id"]][c] for c in analyzer_columns}
    # the annotations each datatrove task wrote into OUT hold the same values
    written = pq.read_table(runs / "dt_out" / "annotations").to_pylist()
    assert sorted((r["doc_id"], r["pii_count"], r["lang"]) for r in written) == \
        sorted((r["doc_id"], r["pii_count"], r["lang"]) for r in scanned)


def test_merge_and_report_of_the_datatrove_out_equal_the_scan_report(runs):
    cli("merge", runs / "dt_out")
    ours = json.loads(cli("report", runs / "dt_out", "--format", "json"))
    scanned = json.loads(cli("report", runs / "scan_out", "--format", "json"))
    assert set(ours) == set(scanned)
    for section in scanned:
        if section in ("corpus", "provenance"):
            continue
        assert ours[section] == scanned[section], section
    naming_shards = {"shards", "shards_done"}  # 2 datatrove tasks vs 4 files
    assert {k: v for k, v in ours["corpus"].items() if k not in naming_shards} == \
        {k: v for k, v in scanned["corpus"].items() if k not in naming_shards}
    assert ours["corpus"]["shards"] == ours["corpus"]["shards_done"] == TASKS
    assert ours["provenance"]["complete"] and ours["provenance"]["shards"]["done"] == TASKS
    assert ours["provenance"]["config_hash"] != scanned["provenance"]["config_hash"]  # a datatrove OUT is its own


def test_filter_drops_what_llama_audit_filter_drops(runs):
    annotated = {d["id"] for d in read_jsonl_dir(runs / "annotated")}
    kept = {d["id"] for d in read_jsonl_dir(runs / "kept")}
    log = pq.read_table(runs / "clean" / "_llama_audit" / "filter_log.parquet").to_pylist()
    dropped_by_cli = {r["doc_id"] for r in log}
    assert dropped_by_cli and kept
    assert annotated - kept == dropped_by_cli


def test_datatrove_stats_count_documents_and_drops(runs):
    stats = json.loads((runs / "logs" / "stats.json").read_text())
    by_name = {s["name"]: s["stats"] for s in stats}
    annotator = next(v for k, v in by_name.items() if "llama-audit annotator" in k)
    filtered = next(v for k, v in by_name.items() if "llama-audit filter" in k)
    documents = len(read_jsonl_dir(runs / "annotated"))
    kept = len(read_jsonl_dir(runs / "kept"))

    def total(stat):  # datatrove saves a stat counted by ones as its total alone
        return stat if isinstance(stat, int) else stat["total"]
    assert total(annotator["total"]) == total(annotator["forwarded"]) == documents
    assert total(annotator["in_scope"]) == json.loads(
        cli("report", runs / "scan_out", "--format", "json"))["corpus"]["in_scope_documents"]
    assert total(filtered["dropped"]) == documents - kept
    assert total(filtered["forwarded"]) == kept


@pytest.mark.parametrize("expression, says", [
    ("pii_cnt > 0", "unknown column 'pii_cnt'"),
    ("pii_count >", "cannot parse expression"),
    ("'lang == en'", "quoted string"),
])
def test_a_bad_expression_is_one_error_at_construction(expression, says):
    with pytest.raises(ConfigError) as err:
        LlamaAuditFilter(drop=expression)
    assert says in str(err.value) and "\n" not in str(err.value)


def docs(*texts: str) -> list[Document]:
    return [Document(text=t, id=f"d{i}") for i, t in enumerate(texts)]


def test_a_column_no_annotator_wrote_is_an_error_at_the_first_batch():
    annotate = LlamaAuditAnnotator(analyzers=["pronouns"], languages=("all",))
    keep_clean = LlamaAuditFilter(drop="pii_count > 0")  # a known column, but pii did not run
    with pytest.raises(ConfigError, match="pii_count") as err:
        list(keep_clean.run(annotate.run(iter(docs("She wrote to me.", "They came.")))))
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="LlamaAuditAnnotator"):  # no annotator before the filter at all
        list(keep_clean.run(iter(docs("plain"))))


def test_annotator_configuration_errors_come_before_any_document():
    with pytest.raises(ConfigError, match="unknown analyzer 'pronoun'"):
        LlamaAuditAnnotator(analyzers=["pronoun"])
    with pytest.raises(ConfigError, match="piii"):
        LlamaAuditAnnotator(analyzers=["pii"], piii={"types": "EMAIL_ADDRESS"})
    with pytest.raises(ConfigError, match="--languages|languages"):
        LlamaAuditAnnotator(analyzers=["pronouns"], languages=("english",))


def test_annotator_without_out_respects_the_language_scope():
    annotate = LlamaAuditAnnotator(analyzers=["pronouns", "language"], batch_docs=2)
    english = "She said that he would bring his sister to the party with them tonight."
    french = "Elle a dit qu'il amènerait sa soeur à la fête avec eux ce soir, sans doute."
    out = list(annotate.run(iter(docs(english, french, english))))
    assert [d.metadata[METADATA_KEY]["lang"] for d in out] == ["en", "fr", "en"]
    groups = [d.metadata[METADATA_KEY]["pronoun_groups"] for d in out]
    assert groups[0] and groups[2] and not groups[1]  # out of scope: not counted
    assert [d.metadata[METADATA_KEY]["row"] for d in out] == [0, 1, 2]


def test_importing_llama_audit_does_not_import_datatrove_and_a_missing_one_names_the_extra():
    code = ("import sys, llama_audit, llama_audit.integrations\n"
            "assert 'datatrove' not in sys.modules, 'imported'\n"
            "sys.modules['datatrove'] = None\n"
            "try:\n"
            "    import llama_audit.integrations.datatrove\n"
            "except ImportError as exc:\n"
            "    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    message = done.stdout.strip()
    assert "llama-audit[datatrove]" in message and "\n" not in message
