"""The labelled identity contexts of bench/data (issue 10 item 5) are well formed.

The benchmark of identity modes trusts this file: each context's span must be the occurrence the
tool's paper mode finds (the span tokenises to the lexicon term's tokens), under the axis the
lexicon gives the term, with a boolean label and one of the written-down reasons
(bench/data/README.md, "identity_contexts.jsonl"). The same holds for the second set, built from
crowd-written and Wikipedia sentences (bench/data/README.md, "identity_contexts_crowd.jsonl").
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from llama_audit.lexicon import Lexicon, builtin_path
from llama_audit.text import tokenize

BENCH_DATA = Path(__file__).resolve().parent.parent / "bench" / "data"
#: each labelled set and the prefix of its ids (ctx-0001..., crowd-0001...)
CONTEXT_SETS = {"identity_contexts.jsonl": "ctx", "identity_contexts_crowd.jsonl": "crowd"}
REASONS_TRUE = {"identity", "slur_at_people"}
REASONS_FALSE = {"other_sense", "name", "prefix", "nested", "insult_about_thing"}
REASONS_EITHER = {"unclear"}
FIELDS = {"id", "term", "axis", "text", "start", "end", "label", "reason", "note", "source", "split"}


def split_of(ctx_id: str) -> str:
    """The split the README promises: a hash of the id, so that nobody picks the held-out half."""
    return "dev" if int(hashlib.sha256(ctx_id.encode()).hexdigest(), 16) % 2 == 0 else "test"


@pytest.mark.parametrize("name", sorted(CONTEXT_SETS))
def test_identity_contexts_are_well_formed(name):
    axis_of = {e.term: e.group for e in Lexicon.load(builtin_path("identities.tsv")).entries}
    ids: set[str] = set()
    splits: set[str] = set()
    labels: set[bool] = set()
    lines = (BENCH_DATA / name).read_text(encoding="utf-8").splitlines()
    id_shape = re.compile(re.escape(CONTEXT_SETS[name]) + r"-\d{4}")
    assert lines, "no contexts"
    for n, line in enumerate(lines, 1):
        row = json.loads(line)
        where = f"line {n} ({row.get('id')})"
        assert set(row) == FIELDS, where
        assert id_shape.fullmatch(row["id"]), f"{where}: id"
        assert row["id"] not in ids, f"{where}: duplicate id"
        ids.add(row["id"])
        assert row["term"] in axis_of, f"{where}: {row['term']!r} is no lexicon term"
        assert row["axis"] == axis_of[row["term"]], where
        text, start, end = row["text"], row["start"], row["end"]
        assert isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text), where
        assert tokenize(text[start:end]) == row["term"].split(), f"{where}: span {text[start:end]!r}"
        # the span is a whole occurrence: no word character glued to either side
        assert tokenize(text[max(0, start - 1):end + 1]) == row["term"].split(), f"{where}: span cuts a word"
        assert isinstance(row["label"], bool), where
        labels.add(row["label"])
        reason = row["reason"]
        assert reason in REASONS_TRUE | REASONS_FALSE | REASONS_EITHER, f"{where}: reason {reason!r}"
        if reason in REASONS_TRUE:
            assert row["label"] is True, where
        if reason in REASONS_FALSE:
            assert row["label"] is False, where
        assert isinstance(row["note"], str) and row["note"].strip(), f"{where}: empty note"
        assert row["source"].strip(), where
        assert row["split"] == split_of(row["id"]), where
        splits.add(row["split"])
    assert splits == {"dev", "test"}
    assert labels == {True, False}
