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


def test_builtin_identities_axes_exclusions_and_dedup():
    lex = Lexicon.load(builtin_path("identities.tsv"))
    assert lex.groups == ["religion", "gender_and_sex", "nationality", "race_ethnicity", "sexual_orientation"]
    axis = {e.term: e.group for e in lex.entries}
    for excluded in ("white", "black", "straight"):
        assert excluded not in axis
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
    assert matched_terms(lex, "a white car, black cat, straight road") == []
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
