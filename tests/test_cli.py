"""The command line end to end (click's runner, in process): scan + report on the example corpus."""

import json

import pytest
from click.testing import CliRunner

from llama_audit import __version__
from llama_audit.cli import command
from conftest import EXAMPLES

runner = CliRunner()


def invoke(*args):
    return runner.invoke(command(), [str(a) for a in args])


def test_version_and_help_on_every_command():
    assert invoke("--version").stdout.strip() == f"llama-audit {__version__}"
    for cmd in ("scan", "report", "filter", "merge", "estimate", "analyzers", "models"):
        res = invoke(cmd, "--help")
        assert res.exit_code == 0 and "Usage" in res.stdout, cmd


def test_scan_and_report_json_on_the_example_corpus(tmp_path):
    out = tmp_path / "out"
    res = invoke("scan", EXAMPLES, "--out", out, "--analyzers", "language,pronouns,identities", "--quiet")
    assert res.exit_code == 0, res.output
    res = invoke("report", out, "--format", "json")
    assert res.exit_code == 0
    report = json.loads(res.stdout)  # nothing but data on stdout
    assert report["corpus"]["documents"] == 622 and report["corpus"]["shards"] == 4
    assert report["corpus"]["bad_records"] == 0
    assert 0 < report["corpus"]["in_scope_documents"] < 622
    langs = {r["lang"]: r["pct"] for r in report["languages"]["rows"]}
    assert langs["en"] > 50
    assert 0 < report["pronouns"]["gender"]["pct"] <= 100
    assert report["identities"]["nationality"]["descriptors"][0]["term"] == "american"
    # table, markdown and csv render the same scan
    for fmt in ("table", "markdown", "csv", "html"):
        res = invoke("report", out, "--format", fmt, "--paper")
        assert res.exit_code == 0 and "christian" in res.stdout, fmt
    # rerun resumes: nothing to scan
    res = invoke("scan", EXAMPLES, "--out", out, "--analyzers", "language,pronouns,identities")
    assert res.exit_code == 0 and "4 shard(s) already done" in res.stderr


def test_errors_are_one_line_with_exit_code_2(tmp_path):
    res = invoke("scan", tmp_path / "missing", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "error:" in res.stderr and "Traceback" not in res.output
    assert [line for line in res.stderr.splitlines() if not line.startswith("warning:")] == \
        [f"error: no such file or directory: {tmp_path / 'missing'}"] and res.stdout == ""
    (tmp_path / "x.docx").write_text("x")
    res = invoke("scan", tmp_path / "x.docx", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "supported" in res.stderr
    res = invoke("report", tmp_path / "nowhere")
    assert res.exit_code == 2 and "no manifest.json" in res.stderr
    res = invoke("scan", EXAMPLES, "--out", tmp_path / "o", "--analyzers", "nope")
    assert res.exit_code == 2 and "unknown analyzer 'nope'" in res.stderr


def test_strict_exit_code(tmp_path):
    bad = tmp_path / "c" / "a.jsonl"
    bad.parent.mkdir()
    bad.write_text('{"text": "fine"}\n{oops\n')
    res = invoke("scan", bad.parent, "--out", tmp_path / "o", "--strict", "--analyzers", "language")
    assert res.exit_code == 2 and "malformed_json" in res.stderr


def test_emit_jsonl_streams_annotations(tmp_path):
    c = tmp_path / "c" / "a.jsonl"
    c.parent.mkdir()
    c.write_text('{"id": "x", "text": "She is here."}\n{"id": "y", "text": "Bonjour tout le monde, comment allez-vous?"}\n')
    res = invoke("scan", c.parent, "--out", tmp_path / "o", "--emit", "jsonl", "--quiet",
                 "--analyzers", "language,pronouns", "--languages", "all")
    assert res.exit_code == 0
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["doc_id"] for r in rows] == ["x", "y"]
    assert rows[0]["pronoun_groups"] == ["she", "3rd"] and rows[1]["lang"] == "fr"
    assert "text" not in rows[0]


def test_merge_after_slices(tmp_path):
    for i in range(2):
        res = invoke("scan", EXAMPLES, "--out", tmp_path / "o", "--analyzers", "language", "--quiet",
                     "--num-shards", 2, "--shard-index", i)
        assert res.exit_code == 0
    res = invoke("merge", tmp_path / "o")
    assert res.exit_code == 0 and "4 of 4 shards done" in res.stderr


def test_emit_into_a_closed_pipe_stops_quietly(tmp_path):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "llama_audit.cli", "scan", str(EXAMPLES), "--out", str(tmp_path / "o"),
                             "--emit", "jsonl", "--quiet", "--analyzers", "language", "--batch-docs", "8"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # the reader goes away, like `| head -1`
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in stderr and "stdout was closed" in stderr
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert {s["status"] for s in manifest["shards"]} <= {"done", "pending"}


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_report_into_a_closed_pipe_exits_141(tmp_path, fmt):
    import os
    import subprocess
    import sys

    assert invoke("scan", EXAMPLES, "--out", tmp_path / "o", "--analyzers", "language", "--quiet").exit_code == 0
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is already gone: the first write fails
    proc = subprocess.run([sys.executable, "-m", "llama_audit.cli", "report", str(tmp_path / "o"), "--format", fmt],
                          stdout=write_end, stderr=subprocess.PIPE, timeout=120)
    os.close(write_end)
    assert proc.returncode == 141
    assert b"Traceback" not in proc.stderr and b"Error" not in proc.stderr


def test_option_checks(tmp_path):
    res = invoke("scan", EXAMPLES, "--out", tmp_path / "o", "--languages", "xx", "--analyzers", "pronouns")
    assert res.exit_code == 2 and "'xx' not among the language model's" in res.stderr
    res = invoke("scan", EXAMPLES, "--out", tmp_path / "o2", "--languages", "EN,FR", "--analyzers", "pronouns", "--quiet")
    assert res.exit_code == 0
    assert json.loads((tmp_path / "o2" / "manifest.json").read_text())["config"]["languages"] == ["en", "fr"]
    for bad in (["--workers", "0"], ["--batch-docs", "-5"], ["--toxicity-sample", "2"], ["--toxicity-batch-tokens", "0"]):
        res = invoke("scan", EXAMPLES, "--out", tmp_path / "o3", *bad)
        assert res.exit_code == 2, bad
        assert bad[0] in res.stderr and not (tmp_path / "o3").exists(), bad  # checked before OUT is written
    res = invoke("report", tmp_path / "o2", "--top", "-1")
    assert res.exit_code == 2 and "--top" in res.stderr


def test_missing_text_field_everywhere_warns(tmp_path):
    res = invoke("scan", EXAMPLES, "--out", tmp_path / "o", "--text-field", "body", "--analyzers", "language")
    assert res.exit_code == 0 and "no document was read" in res.stderr and "--text-field 'body'" in res.stderr


def test_gzip_data_under_a_plain_name(tmp_path):
    import shutil
    (tmp_path / "c").mkdir()
    shutil.copy(next(EXAMPLES.glob("*.gz")), tmp_path / "c" / "misnamed.jsonl")
    res = invoke("scan", tmp_path / "c", "--out", tmp_path / "o", "--analyzers", "language")
    assert res.exit_code == 1 and "name it .jsonl.gz" in res.stderr
