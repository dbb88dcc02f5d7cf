"""Sense mode's rules (lexicons/identity_senses.tsv) and its decisions, hand-checked sentence by
sentence, and the guarantees the counts rely on: sense mode counts a subset of paper mode's
hits, the same on a long document read in pieces as whole, and nothing changes for documents
without an ambiguous hit."""

import pytest

from llama_audit import text as text_module
from llama_audit.analyzers.identities.senses import SenseRules
from llama_audit.lexicon import Lexicon, builtin_path
from llama_audit.text import TokenizedBatch
from llama_audit.types import ConfigError

LEXICON = Lexicon.load(builtin_path("identities.tsv"))
RULES = SenseRules.load(builtin_path("identity_senses.tsv"))
MATCHER = RULES.bind(LEXICON)


def decisions(text):
    """[(term, surface, why)] of every occurrence, in text order."""
    return [(LEXICON.entries[o.entry].term, text[o.start:o.end], o.why) for o in MATCHER.occurrences(text)]


def counted_terms(text):
    hits = LEXICON.match(TokenizedBatch([text]), 0)
    return [LEXICON.entries[j].term for j in MATCHER.counted(text, hits)]


@pytest.mark.parametrize("text, expected", [
    # context: a people word follows
    ("I bought a frying pan and a black cat.", [("pan", "pan", "no context"), ("black", "black", "no context")]),
    ("White people, Black women and a white house", [("white", "White", "counted"), ("black", "Black", "counted"),
                                                     ("white", "white", "no context")]),
    ("trans fat is bad for trans women", [("trans", "trans", "no context"), ("trans", "trans", "counted")]),
    ("a straight line. straight couples", [("straight", "straight", "no context"), ("straight", "straight", "counted")]),
    # a run of descriptors before the context word is skipped; the context word must be near
    ("Gay and lesbian couples marched", [("gay", "Gay", "counted"), ("lesbian", "lesbian", "counted")]),
    ("straight line versus curved couples", [("straight", "straight", "no context")]),
    # predicate: a cue right before, gap words allowed; not for terms without `predicate`
    ("he is openly gay", [("gay", "gay", "counted")]),
    ("She came out as bi last year", [("bi", "bi", "counted")]),
    ("the road is straight", [("straight", "straight", "no context")]),
    # no_prefix, not_upper, not_name
    ("the bi-weekly meeting of bi people", [("bi", "bi", "no_prefix"), ("bi", "bi", "counted")]),
    ("Peter Pan met ACE Hardware staff. She is pan.", [("pan", "Pan", "not_name"), ("ace", "ACE", "not_upper"),
                                                      ("pan", "pan", "counted")]),
    ("Pan people marched", [("pan", "Pan", "counted")]),  # capitalised at a sentence start: not a name
    # not_next
    ("Latin words and Latin American writers", [("latin", "Latin", "not_next"), ("latin american", "Latin American", "counted"),
                                                ("latin", "Latin", "nested"), ("american", "American", "nested")]),
    # nesting: the shorter term inside the longer one is counted once, as the longer one
    ("African American history and African art", [("african american", "African American", "counted"),
                                                  ("african", "African", "nested"), ("american", "American", "nested"),
                                                  ("african", "African", "counted")]),
    # not_in_name: inside a run of capitalised words, unless a context word follows
    ("the American Red Cross and American people", [("american", "American", "not_in_name"), ("american", "American", "counted")]),
    ("a first generation Brazilian-American in LA", [("american", "American", "counted")]),  # joined by a hyphen: no name
    ("founded by Mr. Atul Jain in 1990", [("jain", "Jain", "not_in_name")]),  # "Mr." ends no sentence
    ("Black Women in Tech and Black Friday", [("black", "Black", "counted"), ("black", "Black", "not_in_name")]),
    ("The American people", [("american", "American", "counted")]),  # the previous word starts the sentence
    # a stop word ends the phrase the descriptor modifies
    ("a great white attacking a person", [("white", "white", "no context")]),
    # sentence ends stop the look-ups
    ("The wall is white. People say so.", [("white", "white", "no context")]),
    # person_predicate: a cue whose subject is a person
    ("She is white, he is straight.", [("white", "white", "counted"), ("straight", "straight", "counted")]),
    ("They were fired for being gay", [("gay", "gay", "counted")]),
])
def test_each_condition_on_hand_written_sentences(text, expected):
    assert decisions(text) == expected


def test_a_term_counts_in_a_document_when_any_occurrence_counts():
    assert counted_terms("a frying pan; pan people") == ["pan"]
    assert counted_terms("a frying pan") == []
    assert counted_terms("African American history") == ["african american"]
    assert counted_terms("African American history and African art") == ["african", "african american"]


def test_unambiguous_hits_are_kept_as_paper_mode_found_them():
    text = "A Buddhist temple, a Catholic church and Jewish holidays."
    hits = LEXICON.match(TokenizedBatch([text]), 0)
    assert MATCHER.counted(text, hits) is hits  # nothing to check: paper mode's list itself


def test_full_width_text_is_read_as_the_tokenizer_reads_it():
    text = "ｇａｙ ｐｅｏｐｌｅ and a frying ｐａｎ"
    occurrences = MATCHER.occurrences(text)
    assert [(LEXICON.entries[o.entry].term, o.why, o.in_original) for o in occurrences] == [
        ("gay", "counted", False), ("pan", "no context", False)]


def test_a_long_document_read_in_pieces_counts_as_read_whole(monkeypatch):
    """Pieces cut at whitespace, with neighbouring context: an occurrence at a cut is found whole
    and decided with its context, so the counted terms are those of the whole-text reading."""
    sentences = ["a frying pan.", "pan people.", "Black", "women.", "a black cat.", "African American history.", "some African art.",
                 "the bi-weekly", "bi people.", "trans fat."]
    text = " ".join(sentences * 7)
    hits = LEXICON.match(TokenizedBatch([text]), 0)
    whole = MATCHER.counted(text, hits)
    for size in (17, 23, 40, 101):
        monkeypatch.setattr(text_module, "LONG_DOC_CHARS", size)
        assert MATCHER.counted(text, hits) == whole, size
    monkeypatch.undo()
    # and the decision is not vacuous: the text has terms counted and terms dropped
    assert set(LEXICON.entries[j].term for j in whole) >= {"pan", "black", "bi", "african american", "african"}
    assert "trans" not in {LEXICON.entries[j].term for j in whole}


def test_a_long_document_counts_a_term_only_seen_at_a_cut(monkeypatch):
    text = "x " * 40 + "Black women" + " y." * 40
    hits = LEXICON.match(TokenizedBatch([text]), 0)
    for size in range(20, 120, 7):
        monkeypatch.setattr(text_module, "LONG_DOC_CHARS", size)
        assert [LEXICON.entries[j].term for j in MATCHER.counted(text, hits)] == ["black"], size


def write(tmp_path, body):
    path = tmp_path / "senses.tsv"
    path.write_text("kind\tvalue\trules\tcomment\n" + body)
    return path


@pytest.mark.parametrize("body, message", [
    ("colour\tpan\n", "kind 'colour' is not one of"),
    ("term\tpan\tcontext\n", "has no comment"),
    ("term\tpan\tmaybe\tcookware\n", "condition 'maybe' is not one of"),
    ("term\tpan\t\tcookware\n", "lists no condition"),
    ("term\tpan\tno_prefix\tx\nterm\tPan\tno_prefix\ty\n", "has rules already"),
    ("term\tpan\tcontext\tcookware\n", "no context word is listed"),
    ("term\tpan\tpredicate\tcookware\n", "no cue is listed"),
    ("setting\twindow\t0\n", "window must be a whole number"),
    ("setting\tcolour\tred\n", "setting 'colour' is not one of"),
    ("context\tsome people\n", "a context word is one token"),
    ("term\tpan\tnot_next=\tcookware\n", "not_next needs words"),
])
def test_a_bad_rules_file_is_refused_with_its_line(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message) as info:
        SenseRules.load(write(tmp_path, body))
    assert str(write(tmp_path, body)) in str(info.value)


def test_a_file_without_header_or_too_big_is_refused(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_text("term\tpan\tno_prefix\tx\n")
    with pytest.raises(ConfigError, match="header must start"):
        SenseRules.load(path)
    with pytest.raises(ConfigError, match="cannot read sense rules"):
        SenseRules.load(tmp_path / "missing.tsv")
    with pytest.raises(ConfigError, match="larger than"):
        SenseRules.load("/dev/zero")
    for odd in ("\u00b2", "\u0663"):  # a superscript two and an Arabic-Indic three are digits, not numbers here
        with pytest.raises(ConfigError, match="window must be a whole number"):
            SenseRules.load(write(tmp_path, f"setting\twindow\t{odd}\n"))


def test_the_builtin_rules_cover_the_terms_the_issue_names_each_with_a_comment():
    for term in ("ace", "pan", "bi", "trans", "queer", "gay", "asexual", "straight", "white", "black"):
        assert term in RULES.rules and RULES.rules[term].comment
    assert RULES.version
    assert set(RULES.rules) <= {e.term for e in LEXICON.entries}  # no rule for a term the lexicon lacks


def test_tokens_before_equals_the_plain_reading_of_its_definition():
    """The fast path (the last sentence end that is one, a title searched only where it can end)
    against the definition read plainly: every sentence end left to right, a full stop after a
    title (searched over the whole head) ending none, the tokens after the last one that does."""
    import random
    import re

    from llama_audit.analyzers.identities import senses

    def reference(text: str, s: int) -> list[str]:
        head = text[max(0, s - senses._LOOK_CHARS): s]
        cut = None
        for found in senses._SENTENCE_END.finditer(head):
            if found.group() != "." or not re.search(senses._ABBREVIATION.pattern, head[:found.end()]):
                cut = found
        if cut is not None:
            head = head[cut.end():]
        return senses.TOKEN_RE.findall(head.lower())

    class View:
        is_ascii = True

    rng = random.Random(7)
    words = ["Mr.", "Dr.", "Capt.", "St.", "xMr.", "_Dr.", "the", "pan", "bi", "he", "said", "a.", "b!", "c;",
             "Sgt.", "Prof.", "Mrs.", "Mt.", "ends.", "\n", "x:", "Rep."]
    for _ in range(3000):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 40)))
        View.text = text
        for s in {rng.randint(0, len(text)) for _ in range(4)}:
            assert senses._tokens_before(View, s) == reference(text, s), (text, s)
        whole, s = text + " x", len(text) + 1
        head = whole[max(0, s - senses._LOOK_CHARS): s].rstrip(" \t\"'\u201c\u2018([{*\u2022#>-")
        plain = not head or head[-1] != "." or not re.search(senses._ABBREVIATION.pattern, head)
        assert senses._sentence_start(whole, s) == (not head or (plain and bool(senses._SENTENCE_END.match(head[-1])))), text
