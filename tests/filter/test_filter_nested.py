"""`filter` on a corpus scanned with ``--text-field meta.text``: the redacted text is written back
at the nested path; every other field, line and column is untouched."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner

from llama_audit.cli import app

MAIL = "Please write to ana.lopez@example.org about the budget of the new school next year."
PLAIN = "The committee met on Tuesday to discuss the budget for next year and the new school."


def cli(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


def scan_and_filter(tmp_path):
    cli("scan", tmp_path / "corpus", "--out", tmp_path / "out", "--analyzers", "pii", "--languages", "all",
        "--text-field", "meta.text", "--quiet")
    cli("filter", tmp_path / "out", "--out", tmp_path / "clean", "--redact", "pii")
    return tmp_path / "clean"


def test_jsonl_redaction_at_a_nested_path(tmp_path):
    (tmp_path / "corpus").mkdir()
    lines = [json.dumps({"id": "a", "meta": {"source": "web", "text": MAIL, "n": 123456789012345678901234567890}}),
             json.dumps({"id": "b", "meta": {"text": PLAIN, "source": "books"}}),
             json.dumps({"id": "c", "text": "no nested text: a bad record"})]
    (tmp_path / "corpus" / "a.jsonl").write_text("\n".join(lines) + "\n")
    clean = scan_and_filter(tmp_path)
    out = (clean / "a.jsonl").read_text().splitlines()
    assert len(out) == 2 and out[1] == lines[1]  # untouched record: the same bytes
    redacted = json.loads(out[0])
    assert redacted == {"id": "a", "meta": {"source": "web", "text": MAIL.replace("ana.lopez@example.org", "<EMAIL_ADDRESS>"),
                                            "n": 123456789012345678901234567890}}
    assert list(redacted["meta"]) == ["source", "text", "n"]  # field order kept


def test_parquet_redaction_in_a_struct(tmp_path):
    (tmp_path / "corpus").mkdir()
    meta = pa.array([{"text": MAIL, "source": "web"}, {"text": PLAIN, "source": None}],
                    pa.struct([("text", pa.string()), ("source", pa.string())]))
    table = pa.table({"id": ["a", "b"], "meta": meta, "score": [0.5, 0.25]})
    pq.write_table(table, tmp_path / "corpus" / "p.parquet")
    clean = scan_and_filter(tmp_path)
    got = pq.read_table(clean / "p.parquet")
    assert got.schema.equals(table.schema)
    assert got.to_pylist() == [
        {"id": "a", "meta": {"text": MAIL.replace("ana.lopez@example.org", "<EMAIL_ADDRESS>"), "source": "web"},
         "score": 0.5},
        {"id": "b", "meta": {"text": PLAIN, "source": None}, "score": 0.25},
    ]
