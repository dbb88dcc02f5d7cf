"""Percentage definitions of Tables 9a and 9b on small corpora whose tables are computed by hand."""

import gzip
import json
import re
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
from conftest import EXAMPLES

from llama_audit.job import ScanRequest, run_scan
from llama_audit.report.tables import build_report

DOCS = [
    "She said her friend is a Christian.",          # she; 1st? no; 3rd (she, her); religion: christian
    "He and I met them. We are Muslim and Hindu.",  # he, unspecified, 1st, 3rd; religion: muslim, hindu
    "You are an African-American writer.",          # 2nd; race: african american (+ african, american->nationality)
    "It is raining.",                               # 3rd (it)
    "Nothing here matters",                         # none
    "LGBTQ+ and LGBTQ and queer folks; a white car", # sexual_orientation: lgbtq, queer; race: white (every sense)
]


def scan(tmp_path, make_jsonl, docs, analyzers="pronouns,identities", languages=("all",)):
    make_jsonl("a.jsonl", [{"id": f"d{i}", "text": t} for i, t in enumerate(docs)])
    out = tmp_path / "out"
    run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(out), analyzers=analyzers.split(","),
                         languages=languages))
    return build_report(str(out))


def test_table_9a_pronouns_by_hand(tmp_path, make_jsonl):
    r = scan(tmp_path, make_jsonl, DOCS)
    assert r["corpus"]["in_scope_documents"] == 6
    p = r["pronouns"]
    # gender pronoun docs: 0 (she), 1 (he, them) -> 2 of 6
    assert p["gender"]["pct"] == pytest.approx(100 * 2 / 6)
    assert p["gender"]["rows"] == pytest.approx({"she": 50.0, "he": 50.0, "unspecified": 50.0})
    # person docs: 0 (3rd), 1 (1st, 3rd), 2 (2nd), 3 (3rd) -> 4 of 6
    assert p["person"]["pct"] == pytest.approx(100 * 4 / 6)
    assert p["person"]["rows"] == pytest.approx({"1st": 25.0, "2nd": 25.0, "3rd": 75.0})


def test_table_9b_identities_by_hand(tmp_path, make_jsonl):
    r = scan(tmp_path, make_jsonl, DOCS)
    ids = r["identities"]
    assert list(ids) == ["religion", "gender_and_sex", "nationality", "race_ethnicity", "sexual_orientation"]
    assert ids["religion"]["documents"] == 2 and ids["religion"]["pct"] == pytest.approx(100 * 2 / 6)
    terms = {d["term"]: (d["documents"], d["pct"]) for d in ids["religion"]["descriptors"]}
    assert terms == {"christian": (1, 50.0), "muslim": (1, 50.0), "hindu": (1, 50.0)}
    assert ids["race_ethnicity"]["documents"] == 2  # doc 2 (african american), doc 5 ("a white car")
    race = {d["term"]: (d["documents"], d["pct"]) for d in ids["race_ethnicity"]["descriptors"]}
    assert race == {"african american": (1, 50.0), "african": (1, 50.0), "white": (1, 50.0)}
    assert [paper_keys(d) for d in ids["nationality"]["descriptors"]] == [
        {"term": "american", "documents": 1, "pct": 100.0, "hidden_from_top": False}]
    so = {d["term"]: d["documents"] for d in ids["sexual_orientation"]["descriptors"]}
    assert so == {"lgbtq": 1, "queer": 1}
    assert ids["gender_and_sex"]["documents"] == 0 and ids["gender_and_sex"]["descriptors"] == []
    # sense mode, by hand: "African-American" counts once, as the longer term (african and american
    # are nested in it); "a white car" is no identity mention; "queer folks" is; Christian, Muslim
    # and Hindu have no rule that rules them out here
    sense = {axis: (sec["sense"]["documents"], {d["term"]: d["documents"] for d in sec["sense"]["descriptors"]})
             for axis, sec in ids.items()}
    assert sense == {"religion": (2, {"christian": 1, "muslim": 1, "hindu": 1}), "gender_and_sex": (0, {}),
                     "nationality": (0, {}), "race_ethnicity": (1, {"african american": 1}),
                     "sexual_orientation": (1, {"lgbtq": 1, "queer": 1})}
    assert ids["race_ethnicity"]["sense"]["pct"] == pytest.approx(100 / 6)
    assert {d["term"]: d["sense_documents"] for d in ids["race_ethnicity"]["descriptors"]} == {
        "african american": 1, "african": 0, "white": 0}


def test_descriptors_most_frequent_first(tmp_path, make_jsonl):
    docs = ["a Catholic priest", "Catholic school", "Jewish deli", "religious art, Catholic"]
    r = scan(tmp_path, make_jsonl, docs, analyzers="identities")
    assert [d["term"] for d in r["identities"]["religion"]["descriptors"]] == ["catholic", "jewish", "religious"]
    assert r["identities"]["religion"]["descriptors"][0]["pct"] == 75.0


def test_language_gate_limits_the_scope(tmp_path, make_jsonl):
    docs = ["She wrote a long letter to her mother about the garden and the weather.",
            "Elle a écrit une longue lettre à sa mère au sujet du jardin et du temps.",
            ""]
    r = scan(tmp_path, make_jsonl, docs, analyzers="pronouns", languages=("en",))
    assert "languages" in r  # the gate pulled in the language analyzer
    assert r["corpus"]["in_scope_documents"] == 1
    assert r["pronouns"]["gender"]["pct"] == 100.0 and r["pronouns"]["gender"]["rows"]["she"] == 100.0
    langs = {row["lang"]: row["documents"] for row in r["languages"]["rows"]}
    assert langs == {"en": 1, "fr": 1, "unknown": 1}
    assert r["languages"]["rows"][0]["pct"] == pytest.approx(100 / 3)


def test_user_lexicon_other_axes(tmp_path, make_jsonl):
    lex = tmp_path / "lex.tsv"
    lex.write_text("axis\tterm\nfood\tpizza\nfood\tice cream\n")
    make_jsonl("a.jsonl", [{"text": "Ice-cream and pizza"}, {"text": "ice and cream"}])
    out = tmp_path / "out"
    run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(out), analyzers=["identities"],
                         languages=("all",), options={"identities": {"lexicon": str(lex)}}))
    r = build_report(str(out))
    assert r["identities"]["food"]["documents"] == 1
    assert {d["term"] for d in r["identities"]["food"]["descriptors"]} == {"pizza", "ice cream"}


# -- straight, white and black: counted in their axis, left out of the top-5 listing only ----------

HIDDEN = {"black": "race_ethnicity", "white": "race_ethnicity", "straight": "sexual_orientation"}

HIDDEN_DOCS = [
    "Straight couples are welcome.",      # sexual_orientation: straight (its only axis mention)
    "Straight people and gay people.",    # sexual_orientation: straight, gay
    "A lesbian couple.",                  # sexual_orientation: lesbian
    "White people in Asian restaurants",  # race_ethnicity: white, asian
    "White people at the market.",        # race_ethnicity: white (its only axis mention)
    "Nothing here.",                      # none
]


def paper_keys(descriptor):
    """A descriptor's paper-mode keys (its interval and sense-mode count have their own tests)."""
    return {k: descriptor[k] for k in ("term", "documents", "pct", "hidden_from_top")}


def identities_table(report, **options):
    from llama_audit.report.render import display_tables

    (table,) = [t for t in display_tables(report, **options) if t.key == "identities"]
    return table


def test_hidden_terms_count_toward_their_axis_but_are_not_listed_in_the_top(tmp_path, make_jsonl):
    """The paper: "In the top 5 terms, we remove a few terms such as 'straight,' 'white,' and
    'black'" -- a listing rule. Its axis shares still count those documents (docs/methodology.md
    gives the arithmetic), so ours do too, and descriptor shares divide by that axis count."""
    ids = scan(tmp_path, make_jsonl, HIDDEN_DOCS, analyzers="identities")["identities"]
    so, race = ids["sexual_orientation"], ids["race_ethnicity"]
    assert so["documents"] == 3 and so["pct"] == 50.0            # docs 0, 1, 2 of 6
    assert race["documents"] == 2 and race["pct"] == pytest.approx(100 * 2 / 6)  # docs 3, 4
    assert [paper_keys(d) for d in so["descriptors"]] == [
        {"term": "straight", "documents": 2, "pct": pytest.approx(100 * 2 / 3), "hidden_from_top": True},
        {"term": "gay", "documents": 1, "pct": pytest.approx(100 / 3), "hidden_from_top": False},
        {"term": "lesbian", "documents": 1, "pct": pytest.approx(100 / 3), "hidden_from_top": False}]
    assert [paper_keys(d) for d in race["descriptors"]] == [
        {"term": "white", "documents": 2, "pct": 100.0, "hidden_from_top": True},
        {"term": "asian", "documents": 1, "pct": 50.0, "hidden_from_top": False}]
    assert so["hidden_from_top"] == ["straight"]
    assert race["hidden_from_top"] == ["black", "white"]  # the lexicon's hidden terms, found or not
    assert ids["religion"]["hidden_from_top"] == []

    table = identities_table(build_report(str(tmp_path / "out")))
    listed = [row[1] for row in table.rows if row[1]]
    assert listed == ["asian", "gay", "lesbian"]  # the most frequent of each axis is hidden
    axis_rows = {row[0]: row[3] for row in table.rows if row[0]}
    assert axis_rows["Sexual Orientation"] == 3 and axis_rows["Race and Ethnicity"] == 2
    assert "straight" in table.note and "white" in table.note and "black" in table.note
    assert "not listed" in table.note


def test_top_n_skips_hidden_terms_before_cutting(tmp_path, make_jsonl):
    """``--top 1`` shows the most frequent *listed* term, not nothing."""
    make_jsonl("a.jsonl", [{"text": t} for t in HIDDEN_DOCS])
    out = tmp_path / "out"
    run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(out), analyzers=["identities"],
                         languages=("all",)))
    report = build_report(str(out))
    # the first descriptor of each axis is a hidden one: the cut must come after skipping it
    assert [report["identities"][axis]["descriptors"][0]["term"] for axis in ("race_ethnicity", "sexual_orientation")] \
        == ["white", "straight"]
    table = identities_table(report, top=1)
    assert [row[1] for row in table.rows if row[1]] == ["asian", "gay"]


# -- an independent recount on examples/ -------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
AXES = ("religion", "gender_and_sex", "nationality", "race_ethnicity", "sexual_orientation")


def tokens_of(text: str) -> list[str]:
    """The documented tokenisation (docs/methodology.md), written out here rather than imported."""
    return re.findall(r"[^\W_]+", unicodedata.normalize("NFKC", text).casefold())


def holistic_bias_terms() -> dict[tuple[str, ...], str]:
    """Token sequence -> axis, straight from the HolisticBias source (not from our generated
    lexicon): every descriptor of the five axes, a term on both gender_and_sex and
    sexual_orientation under sexual_orientation only."""
    source = json.loads((ROOT / "lexicons/source/holistic_bias_v1.1_descriptors.json").read_text("utf-8"))
    axes_of: dict[tuple[str, ...], set[str]] = {}
    for axis in AXES:
        for items in source[axis].values():
            for item in items:
                axes_of.setdefault(tuple(tokens_of(item if isinstance(item, str) else item["descriptor"])),
                                   set()).add(axis)
    assert all(len(axes) == 1 or axes == {"gender_and_sex", "sexual_orientation"} for axes in axes_of.values())
    return {toks: ("sexual_orientation" if len(axes) > 1 else axes.pop()) for toks, axes in axes_of.items()}


def mentioned(terms: dict[tuple[str, ...], str], text: str) -> set[tuple[str, ...]]:
    """The terms whose token sequence occurs contiguously in the text (a sliding window)."""
    toks = tokens_of(text)
    return {t for t in terms for i in range(len(toks) - len(t) + 1) if tuple(toks[i:i + len(t)]) == t}


def recount(docs: list[str], terms: dict[tuple[str, ...], str]) -> Counter:
    counts: Counter = Counter()
    for text in docs:
        found = mentioned(terms, text)
        counts.update(f"axis/{a}" for a in {terms[t] for t in found})
        counts.update(f"term/{terms[t]}/{' '.join(t)}" for t in found)
    return counts


def report_counts(ids: dict) -> Counter:
    counts: Counter = Counter()
    for axis, sec in ids.items():
        if sec["documents"]:
            counts[f"axis/{axis}"] = sec["documents"]
        counts.update({f"term/{axis}/{d['term']}": d["documents"] for d in sec["descriptors"]})
    return counts


@pytest.fixture(scope="module")
def examples_texts():
    texts = []
    for path in sorted(EXAMPLES.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for line in f]
    return texts


@pytest.fixture(scope="module")
def examples_identities(tmp_path_factory):
    """The identities section of examples/ scanned with the built-in lexicon, and with the same
    lexicon less its hidden rows (what llama-audit counted before straight/white/black joined
    their axes)."""
    work = tmp_path_factory.mktemp("examples-identities")
    builtin = (ROOT / "lexicons/identities.tsv").read_text("utf-8").splitlines(keepends=True)
    without_hidden = work / "without_hidden.tsv"
    without_hidden.write_text("".join(line for line in builtin
                                      if line.split("\t")[1:2] not in (["Black"], ["white"], ["straight"])))
    sections = {}
    for name, options in (("builtin", {}), ("without_hidden", {"identities": {"lexicon": str(without_hidden)}})):
        out = work / name
        run_scan(ScanRequest(paths=[str(EXAMPLES)], out=str(out), analyzers=["identities"], languages=("all",),
                             options=options))
        report = build_report(str(out))
        sections[name] = report
    return sections


def test_axis_and_term_counts_equal_an_independent_recount_on_examples(examples_identities, examples_texts):
    report = examples_identities["builtin"]
    assert report["corpus"]["in_scope_documents"] == len(examples_texts) == 622
    terms = holistic_bias_terms()
    expected = recount(examples_texts, terms)
    assert report_counts(report["identities"]) == expected
    # not vacuous: the hidden terms occur, and some documents mention their axis through them alone
    assert all(expected[f"term/{axis}/{term}"] > 0 for term, axis in HIDDEN.items())
    without = recount(examples_texts, {t: a for t, a in terms.items() if " ".join(t) not in HIDDEN})
    assert expected["axis/race_ethnicity"] > without["axis/race_ethnicity"]
    assert expected["axis/sexual_orientation"] > without["axis/sexual_orientation"]


def test_counting_hidden_terms_changes_no_other_descriptor_count(examples_identities, examples_texts):
    """Only the axis counts (and so every descriptor share of those axes) move; the document
    count of every other term is the one the lexicon without straight/white/black gives."""
    new = report_counts(examples_identities["builtin"]["identities"])
    old = report_counts(examples_identities["without_hidden"]["identities"])
    hidden_keys = {f"term/{axis}/{term}" for term, axis in HIDDEN.items()}
    assert hidden_keys <= set(new) and not hidden_keys & set(old)
    terms_new = {k: v for k, v in new.items() if k.startswith("term/") and k not in hidden_keys}
    assert terms_new == {k: v for k, v in old.items() if k.startswith("term/")}
    # an axis grows by exactly the documents that mention it through hidden terms alone
    terms = holistic_bias_terms()
    for axis in ("race_ethnicity", "sexual_orientation"):
        alone = sum(1 for text in examples_texts
                    if (found := {" ".join(t) for t in mentioned(terms, text) if terms[t] == axis})
                    and found <= set(HIDDEN))
        assert new[f"axis/{axis}"] - old[f"axis/{axis}"] == alone > 0
    for axis in ("religion", "gender_and_sex", "nationality"):
        assert new[f"axis/{axis}"] == old[f"axis/{axis}"]
