"""`report NEW --against OLD`: the audit diff (delta of every number, demographic erasure ratio)."""

import csv
import io
import json
import shutil

import pytest
from click.testing import CliRunner

from llama_audit.cli import command
from llama_audit.filter import FilterRequest, run_filter
from llama_audit.job import ScanRequest, run_scan
from llama_audit.report.diff import build_diff, diff_values
from llama_audit.report.tables import build_report
from llama_audit.types import ConfigError
from conftest import write_jsonl

# Each record with the identity axes it mentions by construction (terms of the built-in lexicon).
RECORDS = [
    ("The Muslim scholar read quietly in the library all afternoon.", {"religion"}),
    ("A Jewish baker opened a new shop downtown last spring.", {"religion"}),
    ("The gay singer and the Muslim poet met for tea on Sunday.", {"religion", "sexual_orientation"}),
    ("A female pilot flew the cargo plane through the night.", {"gender_and_sex"}),
    ("The Cuban hiker and the gay chef crossed the river together.", {"nationality", "sexual_orientation"}),
    ("The committee met on Tuesday to discuss the budget for next year.", set()),
    ("Rain is expected tomorrow across the northern valleys and hills.", set()),
    ("He fixed the old bicycle in the garage before dinner.", set()),
]
DROPPED_AXIS = "sexual_orientation"
ANALYZERS = ["language", "pronouns", "identities", "pii"]
runner = CliRunner()


def scan(corpus, out, analyzers=ANALYZERS, languages=("all",)):
    run_scan(ScanRequest(paths=[str(corpus)], out=str(out), analyzers=list(analyzers), languages=languages))
    return str(out)


@pytest.fixture(scope="module")
def audits(tmp_path_factory):
    """OLD: a scan of RECORDS; NEW: a scan of its copy cleaned of the documents mentioning DROPPED_AXIS."""
    root = tmp_path_factory.mktemp("diff")
    write_jsonl(root / "corpus" / "a.jsonl", [{"id": str(i), "text": t} for i, (t, _) in enumerate(RECORDS)])
    old = scan(root / "corpus", root / "old")
    run_filter(FilterRequest(out=old, clean=str(root / "clean"), drop=[f"contains(identity_axes, '{DROPPED_AXIS}')"]))
    new = scan(root / "clean", root / "new")
    return old, new, root


def invoke(*args):
    return runner.invoke(command(), [str(a) for a in args])


def numbers(obj, path=()):
    """(path, number) of every number of a report (bools are not numbers); list items of dicts by
    their string fields (a descriptor's term, a language's code)."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return
    if isinstance(obj, (int, float)):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from numbers(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            label = tuple(x for x in v.values() if isinstance(x, str)) if isinstance(v, dict) else (i,)
            yield from numbers(v, path + (label,))


def test_delta_is_new_minus_old_for_every_number(audits):
    old, new, _ = audits
    d = build_diff(new, old)
    old_report, new_report = build_report(old), build_report(new)
    assert d["old"] == old_report and d["new"] == new_report
    old_n, new_n, delta_n = dict(numbers(old_report)), dict(numbers(new_report)), dict(numbers(d["delta"]))
    # not subtracted: intervals (their ends are no interval of the change) and the provenance (not a measurement)
    left_out = {p for p in old_n.keys() | new_n.keys() if p[0] == "provenance" or any("ci95" in str(x) for x in p)}
    expected = {p: new_n.get(p, 0) - old_n.get(p, 0) for p in (old_n.keys() | new_n.keys()) - left_out}
    assert "provenance" not in d["delta"] and d["old"]["provenance"] and d["new"]["provenance"]
    assert delta_n.keys() == expected.keys()
    for p, v in expected.items():
        assert delta_n[p] == pytest.approx(v, abs=1e-6), p
    # a descriptor only in OLD (every document mentioning it was dropped) shows as removed: new 0
    gay = ("identities", DROPPED_AXIS, "descriptors", ("gay",), "documents")
    assert old_n[gay] == 2 and gay not in new_n and delta_n[gay] == -2
    assert d["delta"]["corpus"]["documents"] == -sum(DROPPED_AXIS in axes for _, axes in RECORDS)


def test_erasure_ratio_by_hand(audits):
    old, new, _ = audits
    d = build_diff(new, old)
    kept = [axes for _, axes in RECORDS if DROPPED_AXIS not in axes]
    docs_removed = (len(RECORDS) - len(kept)) / len(RECORDS)
    axes = ["religion", "gender_and_sex", "nationality", "race_ethnicity", "sexual_orientation"]
    assert list(d["erasure"]) == axes
    for axis in axes:
        before = sum(axis in a for _, a in RECORDS)
        after = sum(axis in a for a in kept)
        detail = d["erasure_detail"]["identities"][axis]
        assert (detail["mentioning_before"], detail["mentioning_after"]) == (before, after)
        if before == 0:
            assert d["erasure"][axis] is None and "no document mentioned" in detail["reason"]
        else:
            assert d["erasure"][axis] == pytest.approx(((before - after) / before) / docs_removed)
            assert detail["reason"] is None
    assert d["erasure"]["sexual_orientation"] == pytest.approx(1 / docs_removed)  # all of them went
    assert d["erasure"]["gender_and_sex"] == 0


def test_intervals_are_not_subtracted_and_one_sided_values_count_as_zero():
    old = {"a": {"pct": 10.0, "ci95": [8.0, 12.0], "rows": {"x": 1}, "rows_ci95": {"x": [0.5, 2.0]}},
           "items": [{"term": "p", "documents": 3}, {"term": "q", "documents": 1}], "name": "m", "hist": [1, 2]}
    new = {"a": {"pct": 12.5, "ci95": [10.0, 15.0], "rows": {"x": 4, "y": 2}},
           "items": [{"term": "r", "documents": 5}, {"term": "p", "documents": 1}], "name": "m", "hist": [3, 2]}
    assert diff_values(old, new) == {
        "a": {"pct": 2.5, "rows": {"x": 3, "y": 2}},
        "items": [{"term": "r", "documents": 5}, {"term": "p", "documents": -2}, {"term": "q", "documents": -1}],
        "name": "m", "hist": [2, 0]}
    with pytest.raises(ConfigError, match="different layouts"):
        diff_values({"s": {"rows": [1]}}, {"s": {"rows": {"a": 1}}})


def test_no_document_removed_leaves_erasure_undefined_with_reason(audits):
    old, _, root = audits
    again = scan(root / "corpus", root / "again")
    d = build_diff(again, old)
    assert all(v is None for v in d["erasure"].values())
    assert all("no in-scope document was removed" in x["reason"] for x in d["erasure_detail"]["identities"].values())
    assert all(v == 0 for _, v in numbers(d["delta"]))


@pytest.mark.parametrize("fmt", ["table", "markdown", "html", "csv", "json"])
def test_every_format_renders_the_same_bytes_twice(audits, fmt):
    old, new, _ = audits
    first = invoke("report", new, "--against", old, "--format", fmt)
    assert first.exit_code == 0, first.output
    assert invoke("report", new, "--against", old, "--format", fmt).output == first.output
    d = build_diff(new, old)
    if fmt == "json":
        assert json.loads(first.output) == json.loads(json.dumps(d))
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(first.output)))
        religion = next(r for r in rows if r["table"] == "identities" and r["group"] == "religion"
                        and r["label"] == "(any)")
        assert (int(religion["documents_old"]), int(religion["documents_new"]), int(religion["documents_delta"])) == (
            d["old"]["identities"]["religion"]["documents"], d["new"]["identities"]["religion"]["documents"],
            d["delta"]["identities"]["religion"]["documents"])
        erasure = {r["label"]: r for r in rows if r["table"] == "erasure"}
        assert float(erasure["religion"]["erasure_ratio"]) == pytest.approx(d["erasure"]["religion"])
        assert erasure["race_ethnicity"]["erasure_ratio"] == "" and erasure["race_ethnicity"]["note"]
    else:
        text = " ".join(first.output.split())  # (the terminal wraps notes; it may wrap a heading over two lines)
        headings = ("Δ", "erasure", "n/a for race_ethnicity") if fmt == "table" else (
            "old %", "new %", "Δ %", "old documents", "new documents", "Δ documents", "erasure ratio")
        for heading in headings:
            assert heading in text, heading
        docs = d["delta"]["corpus"]["documents"]
        assert f"{docs:+d}" in text


def test_markdown_rows_show_old_new_and_change(audits):
    old, new, _ = audits
    md = invoke("report", new, "--against", old, "--format", "markdown").output
    d = build_diff(new, old)
    o, n = d["old"]["identities"]["religion"], d["new"]["identities"]["religion"]
    religion = next(line for line in md.splitlines() if line.startswith("| Religion |"))
    cells = [c.strip().split(" (")[0] for c in religion.strip("|").split("|")]  # (an interval after a %)
    assert cells[2:8] == [f"{o['pct']:.2f}", f"{n['pct']:.2f}", f"{n['pct'] - o['pct']:+.2f}",
                          str(o["documents"]), str(n["documents"]), f"{n['documents'] - o['documents']:+d}"]
    gay = next(line for line in md.splitlines() if line.startswith("|  | gay"))  # only in OLD: NEW has no such row
    assert gay.count("—") == 2


def test_a_section_in_one_audit_only_is_named(audits):
    old, _, root = audits
    fewer = scan(root / "clean", root / "fewer", analyzers=["language", "pronouns", "identities"])
    d = build_diff(fewer, old)
    assert d["sections"]["only_in_old"] == ["pii"] and d["sections"]["only_in_new"] == []
    assert "pii" not in d["delta"] and "pii" in d["old"]
    md = invoke("report", fewer, "--against", old, "--format", "markdown").output
    assert "pii" in md.split("### Table 9a")[0]  # said in the header, before the tables


def test_other_scope_warns_and_leaves_erasure_undefined(audits):
    old, _, root = audits
    english = scan(root / "clean", root / "english", languages=("en",))
    d = build_diff(english, old)
    assert any("language scope" in w for w in d["warnings"])
    assert all(v is None for v in d["erasure"].values())
    result = invoke("report", english, "--against", old, "--format", "markdown")
    assert result.exit_code == 0 and "language scope" in result.output


def test_refusals_are_one_line_errors(audits, tmp_path):
    old, new, _ = audits
    same = invoke("report", new, "--against", new)
    assert same.exit_code == 2 and same.output.count("\n") == 1 and "same audit" in same.output
    missing = invoke("report", new, "--against", tmp_path / "nothing")
    assert missing.exit_code == 2 and missing.output.count("\n") == 1 and "no manifest.json" in missing.output
    copy = tmp_path / "copy"
    shutil.copytree(new, copy)
    assert invoke("report", copy, "--against", new).exit_code == 0  # a copy is another OUT: all zeros


def test_the_csv_keeps_every_table_of_a_compared_section(audits):
    """A section's CSV tables may be named otherwise than the section (the identities section also
    writes ``identities.sense``): the diff CSV keeps them all."""
    old, new, _ = audits
    tables = {row[0] for row in csv.reader(io.StringIO(invoke("report", new, "--against", old, "--format", "csv").output))}
    plain = {row[0] for row in csv.reader(io.StringIO(invoke("report", new, "--format", "csv").output))}
    assert "identities.sense" in plain and {"identities", "identities.sense"} <= tables


def test_a_marker_after_a_label_does_not_split_a_row():
    """Table 9b marks a descriptor with † when sense mode counts far fewer: the same descriptor with
    and without the mark is one row of the diff."""
    from llama_audit.report.diff import row_keys

    assert row_keys([["Race", ""], ["", "asian \u2020"]], [0, 1]) == row_keys([["Race", ""], ["", "asian"]], [0, 1])
