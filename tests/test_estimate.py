"""`estimate`: times the analyzers on a sample and projects a full scan."""

from click.testing import CliRunner

from llama_audit.cli import command
from llama_audit.estimate import estimate
from conftest import EXAMPLES


def test_estimate_projects_from_a_sample():
    est = estimate([str(EXAMPLES)], analyzers=["language", "pronouns", "pii"], options={}, sample_mb=0.5)
    assert est.shards == 4 and est.sample_documents > 0
    assert est.analyzers == ["language", "pronouns", "pii"]
    assert set(est.seconds_per_mb) == {"language", "pronouns", "pii", "total"}
    assert all(v > 0 for v in est.seconds_per_mb.values())
    # gzip: more text than bytes on disk
    assert est.text_bytes_projected > est.file_bytes
    assert est.hours(4) * 4 == est.hours(1)


def test_estimate_cli():
    res = CliRunner().invoke(command(), ["estimate", str(EXAMPLES), "--analyzers", "language", "--sample-mb", "0.3",
                                         "--workers", "4"])
    assert res.exit_code == 0, res.output
    assert "MB/s per core" in res.stdout and "projected analysis time" in res.stdout and "4 workers" in res.stdout


def _corpus_with_unreadable_files(tmp_path):
    import shutil

    c = tmp_path / "c"
    c.mkdir()
    for f in EXAMPLES.iterdir():
        if f.is_file():
            shutil.copy(f, c / f.name)
    (c / "array.jsonl").write_text('[{"text": "a"},\n {"text": "b"}]\n')
    (c / "garbage.jsonl.zst").write_bytes(b"this is not zstd data" * 50)
    return c


def test_estimate_skips_unreadable_shards_with_a_warning(tmp_path):
    c = _corpus_with_unreadable_files(tmp_path)
    warned: list[str] = []
    est = estimate([str(c)], analyzers=["language"], options={}, sample_mb=0.3, warn=warned.append)
    assert est.sample_documents > 0 and est.shards == 6
    assert sorted(est.unreadable) == ["array.jsonl", "garbage.jsonl.zst"]
    assert any("array.jsonl" in w and "JSON array" in w for w in warned), warned
    assert any("garbage.jsonl.zst" in w for w in warned), warned
    # the projection does not count bytes known to be unreadable
    readable = sum(f.stat().st_size for f in c.iterdir() if f.name not in ("array.jsonl", "garbage.jsonl.zst"))
    assert est.file_bytes == readable


def test_estimate_cli_with_unreadable_shards(tmp_path):
    c = _corpus_with_unreadable_files(tmp_path)
    res = CliRunner().invoke(command(), ["estimate", str(c), "--analyzers", "language", "--sample-mb", "0.3"])
    assert res.exit_code == 0, res.output
    assert "array.jsonl" in res.stderr and "projected analysis time" in res.stdout
    assert "Traceback" not in res.output


def test_estimate_with_nothing_readable_is_one_line_error(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "array.jsonl").write_text('[{"text": "a"},\n {"text": "b"}]\n')
    res = CliRunner().invoke(command(), ["estimate", str(tmp_path / "c"), "--analyzers", "language"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    (line,) = res.stderr.strip().splitlines()[-1:]
    assert line.startswith("error:") and "no shard" in line and "array.jsonl" in line


def test_estimate_with_a_text_field_no_record_has(tmp_path):
    res = CliRunner().invoke(command(), ["estimate", str(EXAMPLES), "--analyzers", "language", "--text-field", "body"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "'body'" in res.stderr and res.stderr.strip().splitlines()[-1].startswith("error:")


def test_estimate_of_standard_input_says_what_to_do_in_one_line():
    """'-' is standard input for scan; estimate projects from sizes on disk, which a pipe has not."""
    res = CliRunner().invoke(command(), ["estimate", "-", "--analyzers", "language"], input='{"text": "hi"}\n')
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "standard input" in lines[0] and "file" in lines[0]
