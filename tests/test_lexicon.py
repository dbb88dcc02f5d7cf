import subprocess
import sys
from pathlib import Path

import pytest

from llama_audit.types import ConfigError
from llama_audit.lexicon import Lexicon, builtin_path
from llama_audit.text import TokenizedBatch

ROOT = Path(__file__).resolve().parent.parent


def matched_terms(lex, text):
    tb = TokenizedBatch([text])
    return [lex.entries[i].term for i in lex.match(tb, 0)]


def test_builtin_identity_lexicon_is_regenerated_by_its_script(tmp_path):
    out = tmp_path / "identities.tsv"
    subprocess.run([sys.executable, str(ROOT / "scripts/build_lexicons.py"),
                    str(ROOT / "lexicons/source/holistic_bias_v1.1_descriptors.json"), str(out)], check=True,
                   capture_output=True)
    assert out.read_text() == (ROOT / "lexicons/identities.tsv").read_text()


def test_builtin_identities_axes_hidden_terms_and_dedup():
    lex = Lexicon.load(builtin_path("identities.tsv"))
    assert lex.groups == ["religion", "gender_and_sex", "nationality", "race_ethnicity", "sexual_orientation"]
    axis = {e.term: e.group for e in lex.entries}
    # counted in their axis like the paper, left out of the top-N listing only (the data says which)
    assert {e.term: e.group for e in lex.entries if e.hidden_from_top} == {
        "black": "race_ethnicity", "white": "race_ethnicity", "straight": "sexual_orientation"}
    assert lex.hidden_from_top() == {"race_ethnicity": ["black", "white"], "sexual_orientation": ["straight"]}
    assert len(lex.entries) == 187
    for shared in ("lgbt", "lgbtq", "queer"):
        assert axis[shared] == "sexual_orientation"
    assert sum(1 for e in lex.entries if e.term == "lgbtq") == 1  # LGBTQ and LGBTQ+ are one term
    assert axis["african american"] == "race_ethnicity"


def test_matching_rules():
    lex = Lexicon.load(builtin_path("identities.tsv"))
    assert sorted(matched_terms(lex, "An African-American writer")) == ["african", "african american", "american"]
    assert "african american" in matched_terms(lex, "african american")
    assert "african american" not in matched_terms(lex, "African and American")  # not contiguous
    assert matched_terms(lex, "LGBTQ+ rights and LGBTQ people") == ["lgbtq"]
    # the paper's method counts every occurrence, colours included (hidden from the top-5 listing only)
    assert matched_terms(lex, "a white car, black cat, straight road") == ["black", "white", "straight"]
    assert matched_terms(lex, "CHRISTIAN") == ["christian"]
    assert matched_terms(lex, "christianity") == []  # whole tokens only


def test_pronoun_lexicon_allows_a_word_in_several_groups():
    lex = Lexicon.load(builtin_path("pronouns.tsv"), allow_multi_group=True)
    tb = TokenizedBatch(["She's here"])
    assert sorted({lex.entries[i].group for i in lex.match(tb, 0)}) == ["3rd", "she"]


@pytest.mark.parametrize("content,problem", [
    ("axis\tterm\nreligion\n", ":2: expected at least 2"),
    ("axis\tterm\nreligion\t---\n", ":2: term '---' has no word characters"),
    ("axis\tterm\nreligion\tpagan\nnationality\tPagan\n", ":3: term 'Pagan' is already under 'religion' (line 2)"),
    ("axis\tterm\n\t x\n", ":2: empty group"),
    ("# only comments\n", "has no terms"),
])
def test_user_lexicon_errors_name_file_line_and_problem(tmp_path, content, problem):
    path = tmp_path / "my.tsv"
    path.write_text(content)
    with pytest.raises(ConfigError) as exc:
        Lexicon.load(path)
    assert str(path) in str(exc.value) and problem in str(exc.value)


def test_listing_column_marks_terms_hidden_from_the_top(tmp_path):
    """A ``listing`` column (found by its header name) may say ``hidden_from_top``: the term is
    counted like any other and left out of the top-N tables. Other columns stay ignored."""
    path = tmp_path / "lex.tsv"
    path.write_text("axis\tterm\tnote\tlisting\nfood\tpizza\tx\nfood\tice cream\t\thidden_from_top\n"
                    "drink\ttea\t\t\n")
    lex = Lexicon.load(path)
    assert [(e.term, e.hidden_from_top) for e in lex.entries] == [("pizza", False), ("ice cream", True), ("tea", False)]
    assert lex.hidden_from_top() == {"food": ["ice cream"]}
    assert matched_terms(lex, "Ice-cream and pizza") == ["pizza", "ice cream"]
    plain = tmp_path / "plain.tsv"
    plain.write_text("axis\tterm\tlisting_notes\nfood\tpizza\thidden_from_top\n")  # not the listing column
    assert Lexicon.load(plain).hidden_from_top() == {}


def test_listing_column_refuses_unknown_values(tmp_path):
    path = tmp_path / "lex.tsv"
    path.write_text("axis\tterm\tlisting\nfood\tpizza\thidden\n")
    with pytest.raises(ConfigError) as exc:
        Lexicon.load(path)
    assert f"{path}:2: listing 'hidden'" in str(exc.value) and "hidden_from_top" in str(exc.value)


def test_user_lexicon_in_another_language(tmp_path):
    path = tmp_path / "de.tsv"
    path.write_text("achse\tbegriff\nreligion\tchristlich\nreligion\tMuslimisch\n")
    lex = Lexicon.load(path)
    assert matched_terms(lex, "Eine muslimische und christliche Familie") == []
    assert matched_terms(lex, "MUSLIMISCH, christlich") == ["christlich", "muslimisch"]


def test_not_utf8_lexicon(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_bytes(b"axis\tterm\nreligion\t\xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        Lexicon.load(path)


def _write_lexicon(path, rows) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        f.write("group\tterm\n")
        f.writelines(f"{g}\t{t}\n" for g, t in rows)
    return path


def _best_load_seconds(path, runs: int = 3) -> float:
    import time

    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        Lexicon.load(path)
        best = min(best, time.perf_counter() - t0)
    return best


def test_load_time_does_not_grow_with_the_number_of_groups(tmp_path):
    """200k groups took over a minute (a list membership test per line). Loading n groups of one
    term each costs about what n terms in one group cost. (A ratio, measured side by side, so the
    speed of the machine does not matter.)"""
    n = 10_000
    many = _write_lexicon(tmp_path / "many.tsv", ((f"g{i}", f"term{i}") for i in range(n)))
    one = _write_lexicon(tmp_path / "one.tsv", (("g", f"term{i}") for i in range(n)))
    assert len(Lexicon.load(many).groups) == n
    assert _best_load_seconds(many) < 4 * _best_load_seconds(one)


def test_a_huge_or_endless_file_is_refused_after_the_size_limit(tmp_path):
    import llama_audit.lexicon as lexicon

    big = tmp_path / "big.tsv"
    with open(big, "wb") as f:
        f.truncate(lexicon.MAX_LEXICON_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(ConfigError, match=r"big.tsv: lexicon is larger than 64 MiB"):
        Lexicon.load(big)
    if Path("/dev/zero").exists():  # endless: ran until MemoryError
        with pytest.raises(ConfigError, match=r"/dev/zero: lexicon is larger than 64 MiB"):
            Lexicon.load("/dev/zero")


@pytest.mark.parametrize("limit,value,rows,problem", [
    ("MAX_GROUPS", 2, [("a", "x"), ("b", "y"), ("c", "z")], ":4: more than 2 groups"),
    ("MAX_TERMS_PER_GROUP", 2, [("a", "x"), ("a", "y"), ("a", "z")], ":4: group 'a' has more than 2 terms"),
    ("MAX_TERM_CHARS", 10, [("a", "x" * 11)], ":2: term of 11 characters (at most 10)"),
    ("MAX_GROUP_CHARS", 10, [("g" * 11, "x")], ":2: group name of 11 characters (at most 10)"),
], ids=["groups", "terms-per-group", "term-length", "group-length"])
def test_lexicon_size_limits_are_one_line_errors_naming_the_line(tmp_path, monkeypatch, limit, value, rows, problem):
    import llama_audit.lexicon as lexicon

    assert getattr(lexicon, limit) > value  # the real limit is larger; lowered here to test it cheaply
    monkeypatch.setattr(lexicon, limit, value)
    path = _write_lexicon(tmp_path / "lex.tsv", rows)
    with pytest.raises(ConfigError) as exc:
        Lexicon.load(path)
    assert f"{path}{problem}" in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("group,term,problem", [
    ("\x1b[31mred", "x", ":3: group has the control character U+001B"),
    ("ok", "x\x07y", ":3: term has the control character U+0007"),
    ("left\u202eright", "x", ":3: group has the control character U+202E"),
    ("a\x0bb", "x", ":3: group has the control character U+000B"),
    ("axis/sub", "x", ":3: group name contains '/'"),
], ids=["ansi-escape", "bell", "bidi-override", "vertical-tab", "slash"])
def test_control_characters_in_groups_and_terms_are_refused(tmp_path, group, term, problem):
    """Group names reach the terminal, markdown and HTML reports: an escape sequence there would be
    obeyed (or hidden), so a lexicon that holds one is refused, naming the line."""
    path = tmp_path / "lex.tsv"
    path.write_text(f"group\tterm\nfine\tword\n{group}\t{term}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        Lexicon.load(path)
    message = str(exc.value)
    assert f"{path}{problem}" in message
    assert not any(ord(c) < 32 or 0x7f <= ord(c) <= 0x9f or c == "\u202e" for c in message)


def test_windows_line_endings_still_load(tmp_path):
    path = tmp_path / "crlf.tsv"
    path.write_bytes(b"group\tterm\r\nreligion\tpagan\r\n")
    lex = Lexicon.load(path)
    assert lex.groups == ["religion"] and [e.term for e in lex.entries] == ["pagan"]
