"""Identity × toxicity on a hand-built corpus, scored by a stub scorer whose line scores are known.

The stub replaces the toxicity model only (the toxicity analyzer's engine): a line containing
"hate" scores 0.75, any other 0.25 (binary fractions, so a document of one of each scores exactly
0.5, the threshold). Everything else — the identities analyzer in both counting modes, the scan,
the partials, the merge, the report — is the real code.
"""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from llama_audit.analyzers.base import BatchContext, DocBatch
from llama_audit.analyzers.identities import IdentityAnalyzer
from llama_audit.analyzers.identity_toxicity import SCORE_COLUMN, IdentityToxicityAnalyzer
from llama_audit.analyzers.registry import load_class
from llama_audit.analyzers.toxicity import ToxicityAnalyzer
from llama_audit.cli import command
from llama_audit.job import ScanRequest, run_scan
from llama_audit.manifest import merge
from llama_audit.report.render import display_tables, render_csv, render_html, render_markdown
from llama_audit.report.section import wilson_ci95
from llama_audit.report.tables import build_report
from llama_audit.scan import split_for_overlap
from llama_audit.types import ConfigError

TOXIC_LINE, BENIGN_LINE = 0.75, 0.25

# text, then by hand: its document score (None: no line to score) and the terms each mode counts
DOCS = [
    ("I hate Catholic people.", 0.75, ["catholic"], ["catholic"]),
    ("Catholic schools are fine.", 0.25, ["catholic"], ["catholic"]),
    ("I hate white wine.", 0.75, ["white"], []),  # sense mode: wine, not people
    ("White people hate nothing.", 0.75, ["white"], ["white"]),
    ("She is a gay man.", 0.25, ["gay"], ["gay"]),
    ("The weather is nice.", 0.25, [], []),
    ("I hate Mondays.", 0.75, [], []),
    ("   ", None, [], []),  # in scope, not scored
    ("I hate Muslim people.\nCatholic and Muslim people are nice.", 0.5, ["catholic", "muslim"], ["catholic", "muslim"]),
    ("The gay pride parade in the White House", 0.25, ["white", "gay"], ["gay"]),
]

# the counts above, by hand: (documents scored, documents scoring >= 0.5)
EXPECTED = {
    "paper": {"axes": {"religion": (3, 2), "race_ethnicity": (3, 2), "sexual_orientation": (2, 0)},
              "terms": {"catholic": (3, 2), "muslim": (1, 1), "white": (3, 2), "gay": (2, 0)}},
    "sense": {"axes": {"religion": (3, 2), "race_ethnicity": (1, 1), "sexual_orientation": (2, 0)},
              "terms": {"catholic": (3, 2), "muslim": (1, 1), "white": (1, 1), "gay": (2, 0)}},
}
ALL_SCORED, ALL_TOXIC = 9, 5


class StubEngine:
    """What the toxicity analyzer asks of its engine, scoring by the presence of "hate"."""

    cuda = False

    def __init__(self):
        self.cache = {}

    def score(self, lines):
        return np.array([TOXIC_LINE if "hate" in line.lower() else BENIGN_LINE for line in lines])

    def stats(self):
        return {}

    def close(self):
        pass


@pytest.fixture
def stub_scorer(monkeypatch):
    def setup(self):
        self._closed = False
        self._engine = self._engine or StubEngine()

    monkeypatch.setattr(ToxicityAnalyzer, "setup", setup)
    monkeypatch.setattr(ToxicityAnalyzer, "unavailable_reason", classmethod(lambda cls, options: None))


def expected_counts() -> Counter:
    out = Counter({"scored": ALL_SCORED, "ge_0_5": ALL_TOXIC})
    for mode, by in EXPECTED.items():
        for kind in ("axes", "terms"):
            for name, (scored, toxic) in by[kind].items():
                prefix = f"{mode}/{'axis' if kind == 'axes' else 'term'}/{name}/"
                out[prefix + "scored"] += scored
                out[prefix + "ge_0_5"] += toxic
    return +out


def test_documents_by_hand_agree_with_the_stub():
    """The hand-written table above is what the identities analyzer and the stub say."""
    texts = [d[0] for d in DOCS]
    batch = DocBatch(texts=texts, doc_ids=[str(i) for i in range(len(texts))], rows=list(range(len(texts))), shard="s")
    columns = IdentityAnalyzer().annotate(batch, BatchContext(in_scope=np.ones(len(texts), bool), columns={}))
    assert columns["identity_terms:paper"].to_pylist() == [d[2] for d in DOCS]
    assert columns["identity_terms:sense"].to_pylist() == [d[3] for d in DOCS]
    scored = [d for d in DOCS if d[1] is not None]
    assert (len(scored), sum(d[1] >= 0.5 for d in scored)) == (ALL_SCORED, ALL_TOXIC)


def corpus(make_jsonl, docs=DOCS, files=1):
    for f in range(files):
        make_jsonl(f"part{f}.jsonl", [{"id": f"d{i}", "text": d[0]} for i, d in enumerate(docs) if i % files == f])


def scan(tmp_path, name="out", analyzers=("identity_toxicity",), toxicity=None, **kw):
    options = {"toxicity": {"self_test": "off", "device": "cpu", **(toxicity or {})}}
    result = run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / name),
                                  analyzers=list(analyzers) if analyzers is not None else None,
                                  languages=("all",), options=options, **kw))
    return result, tmp_path / name


def summary_counts(out) -> Counter:
    table = pq.read_table(out / "summary" / "counts.parquet").to_pylist()
    return Counter({r["key"]: r["value"] for r in table if r["analyzer"] == "identity_toxicity"})


@pytest.mark.parametrize("overlap", [False, True], ids=["in-order", "toxicity-in-background"])
def test_counts_by_hand_in_both_modes(stub_scorer, tmp_path, make_jsonl, overlap):
    corpus(make_jsonl)
    result, out = scan(tmp_path, toxicity={"overlap": overlap})
    assert not result.failed
    assert summary_counts(out) == expected_counts()
    schema = pq.read_schema(next((out / "annotations").glob("*.parquet")))
    assert not [f for f in schema.names if f.startswith("identity_toxicity")]  # no column of its own


def test_toxicity_in_the_background_takes_its_dependants_along():
    """An analyzer that reads a background (overlapping) analyzer's columns runs after it in the
    background thread, instead of pulling every analyzer back into the scanning thread."""
    analyzers = [IdentityAnalyzer(), ToxicityAnalyzer({"overlap": True}), IdentityToxicityAnalyzer()]
    foreground, background = split_for_overlap(analyzers)
    assert [a.name for a in foreground] == ["identities"]
    assert [a.name for a in background] == ["toxicity", "identity_toxicity"]


@pytest.mark.parametrize("mode", ["paper", "sense"])
def test_report_section_by_hand(stub_scorer, tmp_path, make_jsonl, mode):
    corpus(make_jsonl)
    _, out = scan(tmp_path)
    options = IdentityToxicityAnalyzer.ReportOptions(identity_mode=mode)
    section = build_report(str(out), report_options={"identity_toxicity": options})["identity_toxicity"]
    overall = ALL_TOXIC / ALL_SCORED
    assert section["identity_mode"] == mode
    assert (section["documents_scored"], section["documents_ge_0_5"]) == (ALL_SCORED, ALL_TOXIC)
    assert section["pct_ge_0_5"] == pytest.approx(100 * overall)
    assert section["pct_ge_0_5_ci95"] == wilson_ci95(ALL_TOXIC, ALL_SCORED)
    expected = EXPECTED[mode]
    assert set(section["axes"]) >= set(expected["axes"])
    for axis, (scored, toxic) in expected["axes"].items():
        sec = section["axes"][axis]
        assert (sec["documents_scored"], sec["documents_ge_0_5"]) == (scored, toxic)
        assert sec["pct_ge_0_5"] == pytest.approx(100 * toxic / scored)
        assert sec["pct_ge_0_5_ci95"] == wilson_ci95(toxic, scored)
        assert sec["ratio"] == pytest.approx((toxic / scored) / overall)
    terms = {d["term"]: (axis, d) for axis, sec in section["axes"].items() for d in sec["descriptors"]}
    assert {t: (d["documents_scored"], d["documents_ge_0_5"]) for t, (_, d) in terms.items()} == expected["terms"]
    assert {t: axis for t, (axis, _) in terms.items()} == {"catholic": "religion", "muslim": "religion",
                                                           "white": "race_ethnicity", "gay": "sexual_orientation"}
    assert terms["white"][1]["hidden_from_top"] and not terms["catholic"][1]["hidden_from_top"]
    assert terms["muslim"][1]["ratio"] == pytest.approx(1 / overall)
    # most scored documents first
    assert [d["term"] for d in section["axes"]["religion"]["descriptors"]] == ["catholic", "muslim"]


def test_merge_of_two_slices_equals_one_scan(stub_scorer, tmp_path, make_jsonl):
    corpus(make_jsonl, files=3)
    _, whole = scan(tmp_path, "whole")
    for index in (0, 1):
        result, sliced = scan(tmp_path, "sliced", num_shards=2, shard_index=index)
        assert not result.failed
    merge(str(sliced))
    assert summary_counts(sliced) == summary_counts(whole) == expected_counts()
    partials = [Counter({r["key"]: r["value"] for r in pq.read_table(p).to_pylist() if r["analyzer"] == "identity_toxicity"})
                for p in sorted((sliced / "partials").glob("*.parquet"))]
    assert len(partials) == 3 and sum(partials, Counter()) == expected_counts()
    for mode in ("paper", "sense"):
        options = {"identity_toxicity": IdentityToxicityAnalyzer.ReportOptions(identity_mode=mode)}
        assert (build_report(str(sliced), report_options=options)["identity_toxicity"]
                == build_report(str(whole), report_options=options)["identity_toxicity"])


def test_report_in_every_format(stub_scorer, tmp_path, make_jsonl):
    corpus(make_jsonl)
    _, out = scan(tmp_path)
    runner = CliRunner()

    def report(*args):
        res = runner.invoke(command(), ["report", str(out), *args])
        assert res.exit_code == 0, res.output
        return res.stdout

    data = json.loads(report("--format", "json"))["identity_toxicity"]
    assert data["identity_mode"] == "paper" and data["axes"]["race_ethnicity"]["documents_scored"] == 3
    sense = json.loads(report("--format", "json", "--identity-mode", "sense"))
    assert sense["identity_toxicity"]["identity_mode"] == "sense"  # the one flag sets Table 9b's mode and this one
    assert sense["identity_toxicity"]["axes"]["race_ethnicity"]["documents_scored"] == 1

    religion = data["axes"]["religion"]
    religion_cell = f"{religion['pct_ge_0_5']:.2f} ({religion['pct_ge_0_5_ci95'][0]:.2f}\u2013{religion['pct_ge_0_5_ci95'][1]:.2f})"
    for fmt in ("markdown", "html"):
        text = report("--format", fmt)
        assert "Identity \u00d7 toxicity" in text and religion_cell in text and "ToxiGen" in text
    terminal = report("--format", "table")  # 80 columns: a cell may wrap at its space
    assert "Identity \u00d7 toxicity" in terminal and all(part in terminal for part in religion_cell.split(" "))
    csv_text = report("--format", "csv")
    lo, hi = religion["pct_ge_0_5_ci95"]
    assert f"identity_toxicity,religion,(any),3,{religion['pct_ge_0_5']},,{lo},{hi}" in csv_text
    assert f"identity_toxicity.ratio,religion,(any),3,{religion['ratio']}," in csv_text
    assert "identity_toxicity,race_ethnicity,white,3," in csv_text  # JSON and CSV keep every term

    # the tables: paper mode leaves the hidden term out of the top listing; sense mode lists it; --top cuts
    report_object = build_report(str(out))
    (paper_table,) = [t for t in display_tables(report_object) if t.key == "identity_toxicity"]
    assert "white" not in [r[1] for r in paper_table.rows] and "catholic" in [r[1] for r in paper_table.rows]
    sense_object = build_report(str(out), report_options={
        "identity_toxicity": IdentityToxicityAnalyzer.ReportOptions(identity_mode="sense")})
    (sense_table,) = [t for t in display_tables(sense_object, top=1) if t.key == "identity_toxicity"]
    listed = [r[1] for r in sense_table.rows if r[1]]
    assert "white" in listed and "muslim" not in listed  # top 1 per axis: catholic before muslim
    assert sense_table.rows[0][:3] == ["all scored documents", "", ALL_SCORED]
    assert "white (3 scored)" in paper_table.note and "white" not in sense_table.note
    nationality = next(r for r in sense_table.rows if r[0] == "Nationality")
    assert nationality[2:] == [0, "", ""]  # no scored document mentions it: no share, no ratio
    for render in (render_markdown, render_html, render_csv):
        assert "identity_toxicity" in render(report_object) or "Identity \u00d7 toxicity" in render(report_object)


def test_skipped_with_the_reason_when_toxicity_cannot_run(tmp_path, make_jsonl, monkeypatch):
    reason = "toxicity model 'x' is not installed here"
    monkeypatch.setattr(ToxicityAnalyzer, "unavailable_reason", classmethod(lambda cls, options: reason))
    corpus(make_jsonl)
    warnings = []

    class Hooks:
        def warn(self, message): warnings.append(message)
        def start(self, *a): pass
        def advance(self, *a): pass
        def shard_finished(self, *a): pass
        def stop(self): pass

    result = run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "out"),
                                  analyzers=["pronouns", "identities"] + [], languages=("all",)), Hooks())
    assert "identity_toxicity" not in result.skipped_analyzers  # not asked for, not part of an explicit set
    # the default set: both skipped, each with its reason, and the scan goes on
    result = run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "default"),
                                  languages=("all",)), Hooks())
    assert result.skipped_analyzers["toxicity"] == reason
    assert "toxicity" in result.skipped_analyzers["identity_toxicity"] and reason in result.skipped_analyzers["identity_toxicity"]
    assert any("identity_toxicity" in w for w in warnings)
    report = build_report(str(tmp_path / "default"))
    assert report["identity_toxicity"]["status"] == "skipped" and report["identities"]["religion"]["documents"] == 3
    # asked for by name: a one-line error before any work
    with pytest.raises(ConfigError, match=r"analyzer 'identity_toxicity' cannot run: .*toxicity") as info:
        run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "explicit"),
                             analyzers=["identity_toxicity"], languages=("all",)), Hooks())
    assert "\n" not in str(info.value) and not (tmp_path / "explicit").exists()


def test_registered_and_ordered_after_what_it_reads():
    assert load_class("identity_toxicity") is IdentityToxicityAnalyzer
    assert IdentityToxicityAnalyzer.requires == ("identities", "toxicity") and IdentityToxicityAnalyzer().fields() == []
    assert SCORE_COLUMN in {f.name for f in ToxicityAnalyzer().fields()}


def test_ratio_is_absent_when_nothing_scored_is_toxic():
    from llama_audit.report.section import ReportContext

    counts = Counter({"scored": 4, "paper/axis/religion/scored": 2, "paper/term/catholic/scored": 2})
    identities = {"religion": {"descriptors": [{"term": "catholic"}], "hidden_from_top": []}}
    ctx = ReportContext({}, {}, IdentityToxicityAnalyzer.ReportOptions(), required={"identities": identities})
    section = IdentityToxicityAnalyzer.report_section(counts, ctx)
    assert section["pct_ge_0_5"] == 0.0 and section["axes"]["religion"]["ratio"] is None
    assert section["axes"]["religion"]["descriptors"][0]["ratio"] is None
    assert not math.isnan(section["axes"]["religion"]["pct_ge_0_5"])
