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
    for cmd in ("scan", "report", "filter", "merge", "estimate", "analyzers", "models", "eval", "prompts", "export"):
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


def test_missing_text_field_everywhere_fails_each_shard(tmp_path):
    # a field no record of a shard has is one shard error naming the fields that exist (issue 9 trap)
    res = invoke("scan", EXAMPLES, "--out", tmp_path / "o", "--text-field", "body", "--analyzers", "language")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "no record has field 'body'" in res.stderr and "'text'" in res.stderr and "is --text-field right?" in res.stderr


def test_gzip_data_under_a_plain_name(tmp_path):
    import shutil
    (tmp_path / "c").mkdir()
    shutil.copy(next(EXAMPLES.glob("*.gz")), tmp_path / "c" / "misnamed.jsonl")
    res = invoke("scan", tmp_path / "c", "--out", tmp_path / "o", "--analyzers", "language")
    assert res.exit_code == 1 and "name it .jsonl.gz" in res.stderr


def test_markup_in_paths_is_printed_literally(tmp_path):
    """'[/]' in a path aborted every scan (rich MarkupError); '[bold red]' in a file name was
    swallowed. Paths are data: printed as they are."""
    corpus = tmp_path / "c[/]"  # the directories 'c[' and ']'
    corpus.mkdir(parents=True)
    (corpus / "[bold red]x.jsonl").write_text('{"text": "She is here."}\n')
    (corpus / "[bold red]y.docx").write_text("x")  # skipped with a warning that names it
    out = tmp_path / "o[/]:fire:"
    res = invoke("scan", corpus, "--out", out, "--analyzers", "pronouns", "--skip-unknown")
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    assert f"skipping {corpus / '[bold red]y.docx'}" in res.stderr
    assert f"-> {out}" in res.stderr  # the summary line names OUT as given (no emoji either)
    res = invoke("scan", corpus / "[bold red]x.jsonl", "--out", tmp_path / "o2", "--strict",
                 "--analyzers", "nope[/]")
    assert res.exit_code == 2 and "unknown analyzer 'nope[/]'" in res.stderr


def test_failed_shard_reason_with_markup_and_escapes_is_printed_literally(tmp_path):
    import shutil

    corpus = tmp_path / "c"
    corpus.mkdir()
    shutil.copy(next(EXAMPLES.glob("*.gz")), corpus / "[red]mis\x1b[31mnamed.jsonl")
    res = invoke("scan", corpus, "--out", tmp_path / "o", "--analyzers", "pronouns")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "[red]mis\\x1b[31mnamed.jsonl" in res.stderr and "\x1b" not in res.stderr


def test_analyzer_skip_warning_is_one_literal_line_once_per_out(tmp_path, monkeypatch):
    """The warning about an analyzer that cannot run here is shown by the scan that creates OUT,
    on one line, with its install hint intact ('llama-audit[toxicity]' is not markup); a resume
    does not repeat it."""
    from llama_audit.analyzers.toxicity import model as tm

    monkeypatch.setattr(tm, "hub_cache_dir", lambda: str(tmp_path / "empty-hub-cache"))
    monkeypatch.setattr(tm, "missing_extras", lambda: ["torch"])  # as without the toxicity extra
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.jsonl").write_text('{"text": "She is here."}\n')
    args = ("scan", corpus, "--out", tmp_path / "o", "--languages", "all")
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    skips = [line for line in res.stderr.splitlines() if "skipping analyzer 'toxicity'" in line]
    assert len(skips) == 1 and "pip install 'llama-audit[toxicity]'" in skips[0], res.stderr
    res = invoke(*args)
    assert res.exit_code == 0 and "already done" in res.stderr
    assert "skipping analyzer" not in res.stderr


def test_unknown_analyzer_suggests_the_closest_name(tmp_path):
    res = invoke("scan", EXAMPLES, "--out", tmp_path / "o", "--analyzers", "language,pronoun")
    assert res.exit_code == 2
    assert "error: unknown analyzer 'pronoun'; did you mean 'pronouns'?" in res.stderr
    assert not (tmp_path / "o").exists()
    res = invoke("analyzers", "toxicty")
    assert res.exit_code == 2 and "did you mean 'toxicity'?" in res.stderr
    res = invoke("scan", EXAMPLES, "--out", tmp_path / "o", "--analyzers", "zzz")
    assert res.exit_code == 2 and "did you mean" not in res.stderr and "known: language" in res.stderr


@pytest.mark.parametrize("args,option", [
    (["scan", "C", "--out", "O", "--executor", "rey"], "--executor"),
    (["scan", "C", "--out", "O", "--emit", "json"], "--emit"),
    (["scan", "C", "--out", "O", "--lid-engine", "fastext"], "--lid-engine"),
    (["report", "O", "--format", "htm"], "--format"),
])
def test_closed_sets_of_values_are_choices(tmp_path, args, option):
    """A value outside the set is a usage error (exit code 2) that lists the choices, before
    anything is read or written."""
    res = runner.invoke(command(), args)
    assert res.exit_code == 2 and f"Invalid value for '{option}'" in res.stderr and "is not" in res.stderr


def test_executor_choices_are_the_executors():
    from llama_audit.cli import EXECUTOR_CHOICES
    from llama_audit.executors import EXECUTORS

    assert EXECUTOR_CHOICES == EXECUTORS


def test_shell_completion_offers_choices_and_analyzer_names():
    """Click's completion, as the shell asks for it (_LLAMA_AUDIT_COMPLETE, the console script's name)."""
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["llama-audit"] == "llama_audit.cli:main"  # -> _LLAMA_AUDIT_COMPLETE

    def complete(words: str) -> list[str]:
        res = runner.invoke(command(), [], prog_name="llama-audit", complete_var="_LLAMA_AUDIT_COMPLETE",
                            env={"_LLAMA_AUDIT_COMPLETE": "bash_complete", "COMP_WORDS": words,
                                 "COMP_CWORD": str(len(words.split(" ")) - 1)})
        assert res.exit_code == 0, res.output
        return [line.split(",", 1)[1] for line in res.stdout.splitlines()]

    assert complete("llama-audit report O --format ") == ["table", "json", "markdown", "md", "csv", "html"]
    assert complete("llama-audit scan C --lid-engine ") == ["auto", "fastlid", "fasttext"]
    assert complete("llama-audit scan C --analyzers language,pro") == ["language,pronouns"]
    assert "--lid-engine" in complete("llama-audit scan C --lid")


def test_lexicon_group_names_are_escaped_in_every_report_format(tmp_path):
    """A user lexicon's group names are data in the report: rich markup is printed literally in the
    terminal table, '|' cannot split a markdown cell, '<' and '&' cannot open HTML."""
    lexicon = tmp_path / "lex.tsv"
    lexicon.write_text("axis\tterm\n[bold red]odd\tpagan\na|b <i>&amp;\tdruid\n", encoding="utf-8")
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.jsonl").write_text('{"text": "A pagan and a druid."}\n')
    res = invoke("scan", corpus, "--out", tmp_path / "o", "--analyzers", "identities", "--languages", "all",
                 "--lexicon", lexicon, "--quiet")
    assert res.exit_code == 0, res.output
    table = runner.invoke(command(), ["report", str(tmp_path / "o")], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "[bold red]odd" in table.stdout and "a|b <i>&amp;" in table.stdout
    markdown = invoke("report", tmp_path / "o", "--format", "markdown").stdout
    assert "a\\|b &lt;i>&amp;amp;" in markdown and "a|b" not in markdown and "<i>" not in markdown
    html = invoke("report", tmp_path / "o", "--format", "html").stdout
    assert "a|b &lt;i&gt;&amp;amp;" in html and "<i>" not in html


def test_a_scan_that_read_no_document_exits_1(tmp_path):
    """Every record bad (here: none is JSON): nothing was audited, so the scan is no success, and a
    rerun (resume) says the same."""
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.jsonl").write_text("not json\n{broken\n")
    args = ("scan", corpus, "--out", tmp_path / "o", "--analyzers", "pronouns", "--languages", "all")
    for _ in range(2):
        res = invoke(*args)
        assert res.exit_code == 1, res.output
        assert "error: no document was read: all 2 records are bad" in res.stderr and "Traceback" not in res.output


def _raise_in_run_scan(monkeypatch, exc: BaseException, after_shards: int = 0):
    """run_scan that finishes ``after_shards`` shards (as the hooks see them), then raises ``exc``:
    the shape of a fault that no lower layer turned into an error of its own."""
    import llama_audit.job as job
    from llama_audit.executors.base import ShardOutcome

    def failing_run_scan(req, hooks):
        for i in range(after_shards):
            hooks.shard_finished(ShardOutcome(key=f"s{i}", status="done", record={}))
        raise exc

    monkeypatch.setattr(job, "run_scan", failing_run_scan)


@pytest.mark.parametrize("exc,after,code,expected", [
    (PermissionError(13, "Permission denied", "/data/out/partials"), 0, 2,
     "error: permission denied: /data/out/partials; make it writable"),
    (OSError(28, "No space left on device", "/data/out/annotations/a.parquet"), 2, 1,
     "error: no space left on device: /data/out/annotations/a.parquet; free space"),
], ids=["permission-before-work", "disk-full-after-shards"])
def test_an_os_error_reaching_the_cli_is_one_line_with_path_and_fix(tmp_path, monkeypatch, exc, after, code, expected):
    _raise_in_run_scan(monkeypatch, exc, after)
    res = invoke("scan", EXAMPLES, "--out", tmp_path / "o", "--analyzers", "language", "--quiet")
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), res.stderr
    if after:
        assert "rerun the same command to resume" in lines[0]


def test_an_unexpected_exception_is_a_short_internal_error_unless_debugging(tmp_path, monkeypatch):
    _raise_in_run_scan(monkeypatch, ZeroDivisionError("division by zero"))
    res = invoke("scan", EXAMPLES, "--out", tmp_path / "o", "--analyzers", "language", "--quiet")
    assert res.exit_code == 70, res.output  # EX_SOFTWARE: a bug, not a failed shard (1) or a usage error (2)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("internal error: ZeroDivisionError: division by zero"), res.stderr
    assert "LLAMA_AUDIT_DEBUG=1" in lines[0]
    res = runner.invoke(command(), ["scan", str(EXAMPLES), "--out", str(tmp_path / "o"), "--quiet"],
                        env={"LLAMA_AUDIT_DEBUG": "1"})
    assert isinstance(res.exception, ZeroDivisionError)  # the traceback, as it was


def test_a_library_logging_a_traceback_prints_one_line():
    """gcsfs/s3fs log their retries with a traceback; Python's last-resort handler printed it
    whole (40 lines before our one-line error). Through ``main`` it is one warning line."""
    import subprocess
    import sys
    from pathlib import Path

    import llama_audit

    code = ("import logging\n"
            "import llama_audit.cli as cli\n"
            "def retry(*a, **k):\n"
            "    try:\n        raise ConnectionError('Cannot connect to host 127.0.0.1:9')\n"
            "    except ConnectionError:\n"
            "        logging.getLogger('gcsfs').error('_request out of retries on exception: %s', 'boom',"
            " exc_info=True)\n"
            "    cli.fail('gs://b/x: cannot list')\n"
            "cli.app.add_command(cli.click.Command('probe', callback=retry))\n"
            "cli.main()\n")
    root = str(Path(llama_audit.__file__).resolve().parent.parent)
    res = subprocess.run([sys.executable, "-c", code, "probe"], capture_output=True, text=True, timeout=60,
                         env={**__import__("os").environ, "PYTHONPATH": root})
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    assert res.stderr.splitlines() == ["warning: gcsfs: _request out of retries on exception: boom",
                                       "error: gs://b/x: cannot list"], res.stderr


def test_file_urls_name_local_outs_in_every_command(tmp_path, monkeypatch):
    """--out file:///abs/path is that local path (as a corpus file:// URL is), never a folder named
    'file:' under the working directory."""
    monkeypatch.chdir(tmp_path)
    out, clean = tmp_path / "o", tmp_path / "clean"
    res = invoke("scan", EXAMPLES, "--out", f"file://{out}", "--analyzers", "pronouns", "--quiet")
    assert res.exit_code == 0, res.output
    assert (out / "manifest.json").is_file() and not (tmp_path / "file:").exists()
    assert invoke("report", f"file://{out}", "--format", "json").exit_code == 0
    assert invoke("merge", f"file://{out}").exit_code == 0
    res = invoke("filter", f"file://{out}", "--out", f"file://{clean}", "--drop", "chars > 5000")
    assert res.exit_code == 0, res.output
    assert clean.is_dir() and not (tmp_path / "file:").exists()
