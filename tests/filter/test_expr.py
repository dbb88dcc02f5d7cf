"""Hostile and mistaken `--drop/--keep` expressions: each is a one-line ConfigError before any data
is read, never a traceback, and never a rule that silently drops everything or nothing."""

import pyarrow as pa
import pytest

from llama_audit.filter.expr import MAX_EXPRESSION_CHARS, MAX_EXPRESSION_DEPTH, Predicate
from llama_audit.types import ConfigError

SCHEMA = pa.schema([("lang", pa.string()), ("pii_count", pa.int32()), ("pronoun_groups", pa.list_(pa.string())),
                    ("flag", pa.bool_())])
LANGS = {"en", "fr", "de", "unknown"}


def compile_(text):
    return Predicate(text, SCHEMA, lambda c: LANGS if c == "lang" else None)


@pytest.mark.parametrize("text,msg", [
    ("not " * 1000 + "flag", f"nested more than {MAX_EXPRESSION_DEPTH} levels"),
    ("not " * 30000 + "flag", f"the limit is {MAX_EXPRESSION_CHARS:,}"),
    ("pii_count == " + "-" * 5000 + "1", "nested"),
    ("pii_count > 12345678901234567890123456", "does not fit in 64 bits"),
    ("pii_count in (1, 99999999999999999999999999)", "does not fit in 64 bits"),
    ("pii_count == -'a'", "'-' only goes before a number"),
    ("1", "is not a condition"),
    ("'lang == en'", "is a quoted string, not a condition"),
    ("pii_count", "is not a condition"),
    ("lang == 'en' and 1", "is not a condition"),
    ("not pii_count", "is not a condition"),
    ("lang == 'english'", "never has the value 'english'"),
    ("lang in ('en', 'eng')", "never has the value 'eng'"),
    ("'francais' != lang", "never has the value 'francais'"),
    ("lang in ('en', 2)", "all be strings or all numbers"),
])
def test_hostile_or_mistaken_expressions_are_one_line_errors(text, msg):
    with pytest.raises(ConfigError) as info:
        compile_(text)
    assert msg in str(info.value) and "\n" not in str(info.value)


def test_domain_error_suggests_close_labels():
    with pytest.raises(ConfigError, match="did you mean 'en'"):
        compile_("lang == 'enn'")


def test_valid_expressions_still_work():
    t = pa.table({"lang": ["en", "fr", None], "pii_count": pa.array([0, 2, 1], pa.int32()),
                  "pronoun_groups": [["she"], [], None], "flag": [True, False, None]})
    assert compile_("lang == 'en' or pii_count > 1").__call__(t).to_pylist() == [True, True, False]
    assert compile_("pii_count > -1 and not flag").__call__(t).to_pylist() == [False, True, False]
    assert compile_("flag").__call__(t).to_pylist() == [True, False, False]
    assert compile_("True").__call__(t).to_pylist() == [True, True, True]
    assert compile_("contains(pronoun_groups, 'she')").__call__(t).to_pylist() == [True, False, False]
    assert compile_("not " * 10 + "flag").__call__(t).to_pylist() == [True, False, False]
    # without a known domain, any string is accepted
    assert Predicate("lang == 'english'", SCHEMA)(t).to_pylist() == [False, False, False]
