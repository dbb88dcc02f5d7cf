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
