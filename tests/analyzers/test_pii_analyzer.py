"""The ``pii`` analyzer: contract (fields, annotate, fold, config), options, and privacy."""

from __future__ import annotations

import traceback
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from llama_audit.analyzers.base import Analyzer, BatchContext, ConfigError, DocBatch
from llama_audit.analyzers.pii import PII_TYPES, PiiAnalyzer, PiiDetectionError
from llama_audit.analyzers.registry import load_class

SECRET_VALUES = ["ana.perez@example.com", "(415) 555-0132", "8.8.8.8", "4111 1111 1111 1111", "078-05-1123"]

TEXTS = [
    "Write to ana.perez@example.com or bob@example.org.",  # 2 emails
    "Call (415) 555-0132, server 8.8.8.8, router 192.168.0.1",  # phone, public + private IP
    "nothing to see here",
    "",
    "Ünïcödé first, then card 4111 1111 1111 1111 and SSN 078-05-1123",
    "only a private address: 10.0.0.1",
]


def make_batch(texts, shard="part-0.jsonl", first_row=0):
    rows = np.arange(first_row, first_row + len(texts), dtype=np.int64)
    return DocBatch(shard, rows, [f"{shard}:{r}" for r in rows], list(texts))


def ctx_for(batch):
    return BatchContext(in_scope=np.zeros(len(batch), dtype=bool), columns={})


def run(texts, **options):
    analyzer = PiiAnalyzer(options)
    analyzer.setup()
    batch = make_batch(texts)
    ctx = ctx_for(batch)
    cols = analyzer.annotate(batch, ctx)
    return analyzer, cols, analyzer.fold(cols, ctx)


def test_registered_and_contract():
    cls = load_class("pii")
    assert cls is PiiAnalyzer and issubclass(cls, Analyzer)
    assert PiiAnalyzer.name == "pii" and PiiAnalyzer.scoped is False and PiiAnalyzer.requires == ()
    fields = PiiAnalyzer().fields()
    assert [f.name for f in fields] == ["pii_spans", "pii_count"]
    assert fields[0].type == pa.list_(
        pa.struct([("type", pa.string()), ("start", pa.int64()), ("end", pa.int64())])
    )
    assert fields[1].type == pa.int32()
    assert PII_TYPES == ("EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "SECRET")


def test_annotate_columns_align_with_batch():
    analyzer, cols, _ = run(TEXTS)
    assert set(cols) == {"pii_spans", "pii_count"}
    for field in analyzer.fields():
        assert cols[field.name].type == field.type
        assert len(cols[field.name]) == len(TEXTS)
    spans = cols["pii_spans"].to_pylist()
    for text, doc in zip(TEXTS, spans):
        starts = [s["start"] for s in doc]
        assert starts == sorted(starts)
        for s in doc:
            assert 0 <= s["start"] < s["end"] <= len(text)
    got = [[(s["type"], TEXTS[i][s["start"] : s["end"]]) for s in doc] for i, doc in enumerate(spans)]
    assert got == [
        [("EMAIL_ADDRESS", "ana.perez@example.com"), ("EMAIL_ADDRESS", "bob@example.org")],
        [("PHONE_NUMBER", "(415) 555-0132"), ("IP_ADDRESS", "8.8.8.8"), ("IP_ADDRESS_PRIVATE", "192.168.0.1")],
        [],
        [],
        [("CREDIT_CARD", "4111 1111 1111 1111"), ("US_SSN", "078-05-1123")],
        [("IP_ADDRESS_PRIVATE", "10.0.0.1")],
    ]
    # Private/reserved addresses are listed but are not counted as PII.
    assert cols["pii_count"].to_pylist() == [2, 2, 0, 0, 2, 0]


def test_fold_counts():
    _, _, counts = run(TEXTS)
    assert isinstance(counts, Counter)
    assert counts["documents"] == 6
    assert counts["documents_with_pii"] == 3
    assert counts["matches/EMAIL_ADDRESS"] == 2 and counts["documents/EMAIL_ADDRESS"] == 1
    assert counts["matches/PHONE_NUMBER"] == 1 and counts["documents/PHONE_NUMBER"] == 1
    assert counts["matches/IP_ADDRESS"] == 1 and counts["documents/IP_ADDRESS"] == 1
    assert counts["matches/IP_ADDRESS_PRIVATE"] == 2 and counts["documents/IP_ADDRESS_PRIVATE"] == 2
    assert counts["matches/CREDIT_CARD"] == 1 and counts["matches/US_SSN"] == 1
    assert counts["matches/IBAN_CODE"] == 0 and "matches/IBAN_CODE" not in counts


def test_fold_is_additive_over_batches():
    analyzer = PiiAnalyzer()
    total = Counter()
    for i in range(0, len(TEXTS), 2):
        batch = make_batch(TEXTS[i : i + 2], first_row=i)
        ctx = ctx_for(batch)
        total += analyzer.fold(analyzer.annotate(batch, ctx), ctx)
    assert total == run(TEXTS)[2]


def test_empty_batch():
    analyzer, cols, counts = run([])
    assert len(cols["pii_spans"]) == 0 and len(cols["pii_count"]) == 0
    assert counts["documents"] == 0 and counts["documents_with_pii"] == 0


def test_all_documents_analysed_whatever_the_scope():
    # ctx.in_scope is all False in these tests: an unscoped analyzer ignores it.
    _, cols, _ = run(["mail ana@example.com"])
    assert cols["pii_count"].to_pylist() == [1]


def test_type_selection_and_config():
    analyzer, cols, counts = run(TEXTS, types=("email_address", "US_SSN"))
    assert analyzer.types == ("EMAIL_ADDRESS", "US_SSN")
    assert {s["type"] for doc in cols["pii_spans"].to_pylist() for s in doc} == {"EMAIL_ADDRESS", "US_SSN"}
    config = analyzer.config()
    assert config["types"] == ["EMAIL_ADDRESS", "US_SSN"]
    assert config["region"] == "US"
    assert config["rules_version"] and config["phonenumbers"]
    assert PiiAnalyzer().config()["types"] == list(PII_TYPES)


def test_region_option():
    text = ["Telepono: 0917 123 4567"]
    assert run(text)[1]["pii_count"].to_pylist() == [0]
    analyzer, cols, _ = run(text, region="ph")
    assert analyzer.config()["region"] == "PH"
    assert cols["pii_count"].to_pylist() == [1]


@pytest.mark.parametrize(
    "options", [{"types": ("EMAIL", "PHONE_NUMBER")}, {"types": ()}, {"region": "Atlantis"},
                {"types": "EMAIL,PHONE_NUMBER"}, {"region": 5}, {"pii_types": ("EMAIL_ADDRESS",)}]
)
def test_bad_options_are_config_errors(options):
    with pytest.raises(ConfigError):
        PiiAnalyzer(options)


def test_lone_surrogates_do_not_break_a_batch():
    texts = ["ok ana@example.com", "broken \udc80 text bob@example.com", "8.8.8.8"]
    _, cols, _ = run(texts)
    assert cols["pii_count"].to_pylist() == [1, 1, 1]


# ---------------------------------------------------------------------------------- privacy


def _rendered(obj) -> str:
    return repr(obj) + str(obj)


def test_no_value_in_outputs_or_reprs():
    analyzer, cols, counts = run(TEXTS)
    outputs = [
        _rendered(analyzer),
        _rendered(analyzer.detector),
        *(_rendered(r) for r in analyzer.detector.recognizers),
        _rendered(analyzer.config()),
        _rendered(cols["pii_spans"].to_pylist()),
        _rendered(cols["pii_spans"]),
        _rendered(counts),
    ]
    for value in SECRET_VALUES:
        for out in outputs:
            assert value not in out


class _Boom(Exception):
    pass


def test_failures_do_not_leak_text(monkeypatch):
    analyzer = PiiAnalyzer()
    email = analyzer.detector.recognizers[1]
    assert email.entity == "EMAIL_ADDRESS"

    def explode(text):
        raise _Boom(f"could not handle {text!r}")  # a careless library might do this

    monkeypatch.setattr(email, "find", explode)
    batch = make_batch(TEXTS, shard="s.jsonl", first_row=40)
    with pytest.raises(PiiDetectionError) as info:
        analyzer.annotate(batch, ctx_for(batch))
    err = info.value
    assert err.__cause__ is None and err.__suppress_context__
    rendered = "".join(traceback.format_exception(err)) + repr(err)
    assert "s.jsonl" in rendered and "40" in rendered
    for value in SECRET_VALUES:
        assert value not in rendered


def test_validators_swallow_value_bearing_errors():
    # ipaddress's ValueError quotes its input; the recognizers never let it out.
    _, cols, _ = run(["999.1.2.3 and 2001::db8::1 and 192.168.01.1"])
    assert cols["pii_count"].to_pylist() == [0]


def test_lines_are_produced_lazily_exactly_as_splitlines():
    """A huge document is split into lines a chunk at a time (bounded memory), with every line
    break kind of str.splitlines, including a \\r\\n cut between two chunks."""
    import random

    from llama_audit.analyzers.pii.detector import iter_lines

    rng = random.Random(7)
    alphabet = "ab \n\r\x0b\x0c\x1c\x85\u2028\u2029é"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 50)))
        for chunk in (1, 2, 3, 8):
            assert list(iter_lines(text, chunk)) == text.splitlines(keepends=True), (text, chunk)


def test_line_groups_give_the_spans_of_one_pass(monkeypatch):
    """Stage 3 (line-local recognizers) in bounded groups of lines finds the same spans, at the
    same document offsets, as the whole document at once."""
    from llama_audit.analyzers.pii import detector as det

    doc = "".join(f"line {i}: write to user{i}@example.com or call (202) 555-01{i % 90 + 10:02d}\r\n"
                  for i in range(300))
    texts = ["nothing here", doc, "x@y.org\nsecond"]
    whole = det.PiiDetector().detect_batch(texts)
    monkeypatch.setattr(det, "LINE_GROUP_CHARS", 97)
    monkeypatch.setattr(det, "_LINE_CHUNK_CHARS", 64)
    grouped = det.PiiDetector().detect_batch(texts)
    assert grouped == whole and len(whole[1]) >= 300
    assert grouped == [det.PiiDetector().detect(t) for t in texts]
