"""Sense mode: which occurrences of an identity descriptor mention the identity.

The Llama 2 paper counts a HolisticBias descriptor wherever its tokens occur (paper mode). On real
web text some descriptors are mostly other words: "frying pan", "bi-weekly", "ACE Hardware",
"trans fat", "a black cat", "straight line"; and a shorter descriptor nested in a longer one
("african" in "african american") is counted twice. Sense mode asks, for each occurrence: does it
mention the identity on the axis the lexicon assigns to the term? A document counts a term in
sense mode when at least one occurrence does.

The rules are data (``lexicons/identity_senses.tsv``: a reviewed, versioned file, one commented
row per ambiguous term, decided from the labelled real contexts of ``bench/data/``), read by
:class:`SenseRules`; this module only knows the vocabulary of conditions (docs/methodology.md,
"Sense mode", defines each):

- ``context``: a context word (``context`` rows: person, people, women, community, rights...)
  is among the next ``window`` words, not crossing a sentence end or a ``stop`` word (a, the,
  of, is...: the noun phrase has ended) ("white people", "Black-owned"); a run of other
  descriptors, conjunctions and ``gap`` words right after the term is skipped first ("gay and
  lesbian couples").
- ``predicate``: a ``cue`` (is, are, "identify as"...) comes right before, possibly with ``gap``
  words between ("he is openly gay").
- ``person_predicate``: the same with a ``person_cue``, a cue whose subject is a person ("he's",
  "they are", "for being"): for words that are predicates of things too ("the wall is white").
  A term with any of these three counts only where one of them holds; a term with none counts
  wherever its exclusions allow.
- ``no_prefix``: not when a hyphen and a letter follow ("pan-African", "bi-weekly").
- ``not_upper``: not when written in capitals ("ACE", "BI": acronyms).
- ``not_name``: not when capitalised in mid-sentence ("Peter Pan").
- ``not_in_name``: not when capitalised inside a run of capitalised words, a proper name
  ("American Red Cross", "Central African Republic", "Atul Jain"): the next word is capitalised,
  or the previous one is (and does not start the sentence, and is not joined by a hyphen); unless
  the next word is a context word ("Black Women", "First Christian Church").
- ``not_next=w|w``, ``not_prev=w|w``: not when the next/previous word is one of these.

Nesting needs no rule: an occurrence inside an occurrence of a longer lexicon term ("african" in
"african american") is counted once, as the longer term.

Only the terms paper mode found in a document are checked, and only those with a rule or a longer
term also found; every other hit is kept as it is. So sense mode counts a subset of paper mode's
documents, per term and per axis, and costs nothing on documents without an ambiguous hit.

Occurrences are found in the text as the tokenizer reads it: the original characters when the
text is NFKC-stable (ASCII, and most other text), else its NFKC form; the term's tokens
case-insensitively, separated by non-word characters, at word boundaries. A documented edge: a
casefold that changes a token's length (German "ß" matching "ss") finds the term in paper mode
but no occurrence here, so sense mode does not count it.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import re
import unicodedata
from pathlib import Path
from typing import Iterator, Sequence

from llama_audit.lexicon import Lexicon
from llama_audit import text as text_module
from llama_audit.text import TOKEN_RE, TokenizedBatch, tokenize, whitespace_pieces
from llama_audit.types import ConfigError

BUILTIN_SENSES = "identity_senses.tsv"
MAX_SENSES_BYTES = 4 * 2**20  # configuration, not data (the built-in file is a few KB)

#: the conditions a ``term`` row may list (docs/methodology.md, "Sense mode")
POSITIVE_CONDITIONS = ("context", "predicate", "person_predicate")
EXCLUSIONS = ("no_prefix", "not_upper", "not_name", "not_in_name")
LIST_EXCLUSIONS = ("not_next", "not_prev")
ROW_KINDS = ("setting", "term", "context", "cue", "person_cue", "gap", "stop")
SETTINGS = {"window": 3, "version": ""}  # the settings a file may give, with their defaults

# Where a sentence ends, for the context and predicate look-ups and for "mid-sentence".
_SENTENCE_END = re.compile(r"[.!?;:\n\u3002]")
_HYPHENS = "-\u2010\u2011"
# how far either side of an occurrence the look-ups read (characters): far more than `window`
# tokens of real words; a longer run without a sentence end is cut here
_LOOK_CHARS = 120
# the word right after an occurrence, in the same sentence (spaces and a few joiners between)
_WORD_AFTER = re.compile(r"[ \t'\u2019]*([^\W_]+)")
# the word right before an occurrence (group 1) and what separates them (group 2)
_WORD_BEFORE = re.compile(r"([^\W_]+)([ \t'\u2019\u2010\u2011-]*)$")
# titles and abbreviations whose full stop ends no sentence (English)
#: the longest title of _ABBREVIATION with its full stop, plus one: where a search for one must start
_ABBREVIATION_CHARS = 6
_ABBREVIATION = re.compile(r"(?<![^\W_])(?:Mr|Mrs|Ms|Dr|Prof|St|Mt|Jr|Sr|Rev|Hon|Gen|Col|Capt|Sgt|Lt|Gov|Sen|Rep)\.$")
_ASCII_WORD = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")  # the word characters of lowercased ASCII
_CONJUNCTIONS = frozenset({"and", "or", "nor", "n", "&"})  # "&" is no token; kept for clarity


@dataclasses.dataclass(frozen=True)
class SenseRule:
    """The conditions of one ambiguous term (a ``term`` row)."""

    term: str
    context: bool = False
    predicate: bool = False
    person_predicate: bool = False
    no_prefix: bool = False
    not_upper: bool = False
    not_name: bool = False
    not_in_name: bool = False
    not_next: frozenset[str] = frozenset()
    not_prev: frozenset[str] = frozenset()
    comment: str = ""

    @property
    def positive(self) -> bool:
        """Whether the term needs a positive condition (``context``, ``predicate``,
        ``person_predicate``) to count."""
        return self.context or self.predicate or self.person_predicate


@dataclasses.dataclass(frozen=True)
class Occurrence:
    """One occurrence of a lexicon term in a text, and whether sense mode counts it.

    ``start``/``end`` index the text the occurrence was found in (the original text when it is
    NFKC-stable, else its NFKC form: ``in_original``). ``why``: "counted", "nested" or the
    condition that ruled it out ("no context", "no_prefix", ...)."""

    entry: int  # index into the lexicon's entries
    start: int
    end: int
    counted: bool
    why: str
    in_original: bool = True


class SenseRules:
    """A validated sense-rules file, bound to a lexicon (rules for terms the lexicon lacks are
    ignored: a user's lexicon takes the rules of the terms it shares with the built-in one)."""

    def __init__(self, rules: dict[str, SenseRule], context_words: frozenset[str],
                 cues: tuple[tuple[str, ...], ...], person_cues: tuple[tuple[str, ...], ...],
                 gap_words: frozenset[str], stop_words: frozenset[str], window: int, version: str, source: str,
                 sha256: str):
        self.rules = rules
        self.context_words = context_words
        self.cues = cues
        self.person_cues = person_cues
        self.gap_words = gap_words
        self.stop_words = stop_words
        self.window = window
        self.version = version
        self.source = source
        self.sha256 = sha256

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> "SenseRules":
        """Parse and validate a sense-rules file (tab-separated ``kind value rules comment``;
        '#' starts a comment line). Errors name the file, the line and the problem."""
        path = Path(path)
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_SENSES_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read sense rules ({exc.strerror or exc})") from None
        if len(raw) > MAX_SENSES_BYTES:
            raise ConfigError(f"{path}: sense rules larger than {MAX_SENSES_BYTES // 2**20} MiB; is it a rules file?")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: sense rules are not UTF-8 (byte {exc.start})") from None
        settings = dict(SETTINGS)
        rules: dict[str, SenseRule] = {}
        context: set[str] = set()
        cues: list[tuple[str, ...]] = []
        person_cues: list[tuple[str, ...]] = []
        gaps: set[str] = set()
        stops: set[str] = set()
        header = False
        for lineno, line in enumerate(text.split("\n"), 1):
            line = line.removesuffix("\r")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = [f.strip() for f in line.split("\t")]
            where = f"{path}:{lineno}"
            if not header:
                if fields[:2] != ["kind", "value"]:
                    raise ConfigError(f"{where}: the header must start with the columns 'kind' and 'value'")
                header = True
                continue
            kind, value = fields[0], fields[1] if len(fields) > 1 else ""
            rest = fields[2] if len(fields) > 2 else ""
            comment = fields[3] if len(fields) > 3 else ""
            if kind not in ROW_KINDS:
                raise ConfigError(f"{where}: kind {kind[:40]!r} is not one of {', '.join(ROW_KINDS)}")
            if not value:
                raise ConfigError(f"{where}: empty value")
            if kind == "setting":
                if value not in SETTINGS:
                    raise ConfigError(f"{where}: setting {value[:40]!r} is not one of {', '.join(SETTINGS)}")
                settings[value] = _setting(value, rest, where)
                continue
            tokens = tuple(tokenize(value))
            if not tokens:
                raise ConfigError(f"{where}: {value[:40]!r} has no word characters")
            if kind == "term":
                key = " ".join(tokens)
                if key in rules:
                    raise ConfigError(f"{where}: term {key!r} has rules already")
                if not comment:
                    raise ConfigError(f"{where}: term {key!r} has no comment; say why the term is ambiguous")
                rules[key] = _rule(key, rest, comment, where)
            elif kind == "cue":
                cues.append(tokens)
            elif kind == "person_cue":
                person_cues.append(tokens)
            elif len(tokens) != 1:
                raise ConfigError(f"{where}: a {kind} word is one token, got {value[:40]!r}")
            elif kind == "context":
                context.add(tokens[0])
            elif kind == "stop":
                stops.add(tokens[0])
            else:
                gaps.add(tokens[0])
        if not header:
            raise ConfigError(f"{path}: no header line (kind, value, rules, comment)")
        if any(r.context for r in rules.values()) and not context:
            raise ConfigError(f"{path}: terms need 'context' but no context word is listed")
        if any(r.predicate for r in rules.values()) and not cues:
            raise ConfigError(f"{path}: terms need 'predicate' but no cue is listed")
        if any(r.person_predicate for r in rules.values()) and not person_cues:
            raise ConfigError(f"{path}: terms need 'person_predicate' but no person_cue is listed")
        cues.sort(key=len, reverse=True)  # the longest cue first ("identify as" before "as")
        person_cues.sort(key=len, reverse=True)
        return cls(rules, frozenset(context), tuple(cues), tuple(person_cues), frozenset(gaps), frozenset(stops),
                   int(settings["window"]),
                   str(settings["version"]), str(path), hashlib.sha256(raw).hexdigest())

    # -- deciding --------------------------------------------------------------------------------

    def bind(self, lexicon: Lexicon) -> "SenseMatcher":
        return SenseMatcher(self, lexicon)


def _setting(name: str, value: str, where: str):
    if name == "window":
        if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 20:
            raise ConfigError(f"{where}: window must be a whole number of tokens from 1 to 20, got {value[:40]!r}")
        return int(value)
    return value


def _rule(term: str, spec: str, comment: str, where: str) -> SenseRule:
    flags: dict = {}
    for word in spec.split():
        name, _, arg = word.partition("=")
        if name in POSITIVE_CONDITIONS or name in EXCLUSIONS:
            if arg:
                raise ConfigError(f"{where}: condition {name!r} takes no value")
            flags[name] = True
        elif name in LIST_EXCLUSIONS:
            words = frozenset(w for part in arg.split("|") for w in tokenize(part))
            if not words:
                raise ConfigError(f"{where}: {name} needs words, as {name}=word|word")
            flags[name] = words
        else:
            known = POSITIVE_CONDITIONS + EXCLUSIONS + LIST_EXCLUSIONS
            raise ConfigError(f"{where}: condition {name[:40]!r} is not one of {', '.join(known)}")
    if not flags:
        raise ConfigError(f"{where}: term {term!r} lists no condition")
    return SenseRule(term, comment=comment, **flags)


def term_pattern(tokens: Sequence[str]) -> re.Pattern:
    """The term's tokens as they occur in text: separated by non-word characters, at word
    boundaries, in any case."""
    body = r"[\W_]+".join(re.escape(t) for t in tokens)
    return re.compile(r"(?<![^\W_])" + body + r"(?![^\W_])", re.IGNORECASE)


class SenseMatcher:
    """Sense-mode decisions for one lexicon: the terms found in a document (paper mode's hits)
    -> the ones sense mode counts."""

    def __init__(self, rules: SenseRules, lexicon: Lexicon):
        self.rules = rules
        self.lexicon = lexicon
        entries = lexicon.entries
        self.rule_of: dict[int, SenseRule] = {j: rules.rules[e.term] for j, e in enumerate(entries)
                                              if e.term in rules.rules}
        # containers[j]: the longer entries whose tokens hold entry j's tokens contiguously
        self.containers: dict[int, tuple[int, ...]] = {}
        for j, e in enumerate(entries):
            inner = " " + e.term + " "
            found = tuple(k for k, other in enumerate(entries)
                          if len(other.tokens) > len(e.tokens) and inner in " " + other.term + " ")
            if found:
                self.containers[j] = found
        self._needs_check = frozenset(self.rule_of) | frozenset(self.containers)
        self._skippable = frozenset(t for e in entries for t in e.tokens) | _CONJUNCTIONS | rules.gap_words
        self._patterns: dict[int, re.Pattern] = {}
        self._rest_patterns: dict[int, re.Pattern] = {}  # a multi-token term's tokens after the first

    def pattern(self, j: int) -> re.Pattern:
        """Entry j's occurrences (:func:`term_pattern`), compiled once."""
        p = self._patterns.get(j)
        if p is None:
            p = self._patterns[j] = term_pattern(self.lexicon.entries[j].tokens)
        return p

    def spans(self, view: "_View", j: int, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int]]:
        """``(start, end)`` of entry j's occurrences in ``view`` that start in ``[start, end)``.
        Lowercased ASCII, the common case, is searched for the first token with ``str.find``
        (far faster than a regex scan), each candidate checked at its boundaries and, for a
        multi-token term, by an anchored match of the rest: the same spans as the pattern's. So
        is other lowercased text (of the same length as the text: nearly always); the rest by
        the case-insensitive pattern."""
        search = view.search
        end = len(search) if end is None else end
        if not view.lowered:
            for m in self.pattern(j).finditer(search, start):
                if m.start() >= end:
                    return
                yield m.span()
            return
        tokens = self.lexicon.entries[j].tokens
        first = tokens[0]
        rest = self._rest_patterns.get(j) if len(tokens) > 1 else None
        if rest is None and len(tokens) > 1:
            rest = self._rest_patterns[j] = re.compile(
                "".join(r"[\W_]+" + re.escape(t) for t in tokens[1:]) + r"(?![^\W_])")
        is_word = _ASCII_WORD.__contains__ if view.is_ascii else str.isalnum  # [^\W_] of lowercased text
        size = len(search)
        at = search.find(first, start, end)
        while at != -1:
            stop = at + len(first)
            if at == 0 or not is_word(search[at - 1]):
                if rest is None:
                    if stop == size or not is_word(search[stop]):
                        yield at, stop
                else:
                    m = rest.match(search, stop)
                    if m is not None:
                        yield at, m.end()
            at = search.find(first, at + 1, end)

    # the hot path: called once per in-scope document with its paper-mode hits
    def counted(self, text: str, hits: list[int]) -> list[int]:
        """The subset of ``hits`` (paper mode's entries for ``text``, in lexicon order) that sense
        mode counts."""
        check = self._needs_check
        if not hits or check.isdisjoint(hits):
            return hits
        hit_set = set(hits)
        todo = [j for j in hits if j in check and (j in self.rule_of or not hit_set.isdisjoint(self.containers[j]))]
        if not todo:
            return hits
        kept: set[int] = set()
        for view in _views(text):  # one view, or a long document's windows: counted in any counts
            for j in todo:
                if j not in kept and any(o.counted for o in self._occurrences(view, j, hit_set)):
                    kept.add(j)
            if len(kept) == len(todo):
                break
        return [j for j in hits if j in kept or j not in todo]

    def occurrences(self, text: str, hits: list[int] | None = None) -> list[Occurrence]:
        """Every occurrence of the lexicon's terms found in ``text`` (``hits``: paper mode's
        entries for it, computed when not given), each with sense mode's decision, in text order.
        For review samples and the benchmark; the counts use :meth:`counted`."""
        if hits is None:
            hits = self.lexicon.match(TokenizedBatch([text]), 0)
        hit_set = set(hits)
        out: list[Occurrence] = []
        view = _View(text)
        for j in hits:
            out.extend(self._occurrences(view, j, hit_set))
        out.sort(key=lambda o: (o.start, -o.end, o.entry))
        return out

    def _occurrences(self, view: "_View", j: int, hit_set: set[int]) -> Iterator[Occurrence]:
        rule = self.rule_of.get(j)
        containers = [k for k in self.containers.get(j, ()) if k in hit_set]
        spans = starts = None
        longest = 0
        for s, e in self.spans(view, j, view.core_start, view.core_end):
            if containers:
                if spans is None:  # the longer terms' occurrences, sorted: a bisection per occurrence
                    spans = sorted(span for k in containers for span in self.spans(view, k))
                    starts = [cs for cs, _ in spans]
                    longest = max((ce - cs for cs, ce in spans), default=0)
                lo, hi = bisect.bisect_left(starts, e - longest), bisect.bisect_right(starts, s)
                if any(e <= spans[i][1] for i in range(lo, hi)):
                    yield Occurrence(j, s, e, False, "nested", view.in_original)
                    continue
            why = self._rule_out(rule, view, s, e) if rule is not None else None
            yield Occurrence(j, s, e, why is None, why or "counted", view.in_original)

    def _rule_out(self, rule: SenseRule, view: "_View", s: int, e: int) -> str | None:
        """Why the occurrence ``view.text[s:e]`` does not count under ``rule`` (None: it
        counts). The words around it are read only when a condition needs them."""
        text = view.text
        surface = text[s:e]
        if rule.not_upper and len(surface) > 1 and surface.isupper():
            return "not_upper"
        if rule.no_prefix and e + 1 < len(text) and text[e] in _HYPHENS and text[e + 1].isalnum():
            return "no_prefix"
        if rule.not_name and surface[:1].isupper() and not surface.isupper() and not _sentence_start(text, s):
            return "not_name"
        if rule.not_in_name and surface[:1].isupper() and self._in_name(text, s, e):
            return "not_in_name"
        after = _tokens_after(view, e) if rule.not_next or rule.context else []
        if rule.not_next and after and after[0] in rule.not_next:
            return "not_next"
        before = _tokens_before(view, s) if rule.not_prev or rule.predicate or rule.person_predicate else []
        if rule.not_prev and before and before[-1] in rule.not_prev:
            return "not_prev"
        if not rule.positive:
            return None
        if rule.context and self._context_follows(after):
            return None
        if rule.predicate and self._cue_precedes(before, self.rules.cues):
            return None
        if rule.person_predicate and self._cue_precedes(before, self.rules.person_cues):
            return None
        return "no context" if rule.context else "no predicate"

    def _in_name(self, text: str, s: int, e: int) -> bool:
        """Whether the capitalised occurrence ``text[s:e]`` is inside a run of capitalised words
        (see ``not_in_name``)."""
        following = _WORD_AFTER.match(text, e)
        if following:
            word = following.group(1)
            if word.casefold() in self.rules.context_words:
                return False  # "Black Women", "First Christian Church"
            if word[:1].isupper():
                return True
        head = text[max(0, s - _LOOK_CHARS): s]
        preceding = _WORD_BEFORE.search(head)
        if not preceding or not preceding.group(1)[:1].isupper() or any(h in preceding.group(2) for h in _HYPHENS):
            return False
        return not _sentence_start(text, s - len(head) + preceding.start(1))

    def _context_follows(self, after: list[str]) -> bool:
        counted = 0
        for tok in after:
            if tok in self.rules.context_words:
                return True
            if tok in self.rules.stop_words:
                return False
            if not counted and tok in self._skippable:
                continue  # "gay and lesbian couples": a run of descriptors before the first other word
            counted += 1
            if counted >= self.rules.window:
                return False
        return False

    def _cue_precedes(self, before: list[str], cues: tuple[tuple[str, ...], ...]) -> bool:
        end = len(before)
        while end and before[end - 1] in self.rules.gap_words:
            end -= 1
        for cue in cues:
            n = len(cue)
            if n <= end and tuple(before[end - n:end]) == cue:
                return True
        return False


class _View:
    """The text an occurrence search reads (``text``: the original when it is NFKC-stable, else
    its NFKC form) and, when lowercasing keeps every offset (always for ASCII, nearly always
    otherwise), ``search``: the lowercased text (``lowered``); else ``search`` is ``text``,
    searched case-insensitively. Occurrences are taken from ``[core_start, core_end)``; the text
    around the core is context only (a long document's neighbouring pieces)."""

    __slots__ = ("text", "search", "lowered", "is_ascii", "in_original", "core_start", "core_end")

    def __init__(self, core: str, before: str = "", after: str = ""):
        whole = before + core + after
        self.is_ascii = whole.isascii()
        if self.is_ascii or unicodedata.is_normalized("NFKC", whole):
            parts = (before, core, after)
            self.text = whole
        else:
            # cut at whitespace, the parts normalise independently (see text.whitespace_pieces)
            parts = tuple(unicodedata.normalize("NFKC", t) for t in (before, core, after))
            self.text = "".join(parts)
        self.in_original = not before and not after and self.text == whole
        lower = self.text.lower()
        self.lowered = len(lower) == len(self.text)
        self.search = lower if self.lowered else self.text
        self.core_start, self.core_end = len(parts[0]), len(parts[0]) + len(parts[1])


def _views(text: str) -> Iterator[_View]:
    """One view of a document; a long one piece by piece (memory bounded by the piece), each
    with the end of the previous piece and the start of the next as context, so that an
    occurrence near a cut is found whole, once, with its context."""
    size = text_module.LONG_DOC_CHARS  # read at call time: one constant for every piecewise reader
    if len(text) <= size:
        yield _View(text)
        return
    margin = 2 * _LOOK_CHARS
    for a, b in _piece_bounds(text, size):
        before = _cut_after_space(text[max(0, a - margin): a])
        after = _cut_before_space(text[b: b + margin])
        yield _View(text[a:b], before, after)


def _piece_bounds(text: str, size: int) -> Iterator[tuple[int, int]]:
    at = 0
    for piece in whitespace_pieces(text, size):
        yield at, at + len(piece)
        at += len(piece)


def _cut_after_space(head: str) -> str:
    """``head`` from its first whitespace on (a whole-token context that normalises alone)."""
    m = re.search(r"\s", head)
    return head[m.start():] if m else ""


def _cut_before_space(tail: str) -> str:
    """``tail`` up to its last whitespace."""
    m = re.search(r"\s(?=\S*$)", tail)
    return tail[:m.start()] if m else ""


def _sentence_start(text: str, s: int) -> bool:
    """Whether ``text[s]`` starts a sentence: nothing but spaces, quotes, brackets and bullets
    between it and the previous sentence end (or the start of the text)."""
    head = text[max(0, s - _LOOK_CHARS): s].rstrip(" \t\"'\u201c\u2018([{*\u2022#>-")
    if not head:
        return True
    if head[-1] == "." and _ABBREVIATION.search(head, max(0, len(head) - _ABBREVIATION_CHARS)):
        return False  # "Mr. Jain", "St. Louis": a title's full stop ends no sentence
    return bool(_SENTENCE_END.match(head[-1]))


def _tokens_before(view: "_View", s: int) -> list[str]:
    """The casefolded tokens between the previous sentence end and ``s``."""
    head = view.text[max(0, s - _LOOK_CHARS): s]
    for found in reversed(list(_SENTENCE_END.finditer(head))):  # the last sentence end that is one
        if found.group() != "." or not _ABBREVIATION.search(head, max(0, found.end() - _ABBREVIATION_CHARS),
                                                                found.end()):
            head = head[found.end():]  # "Mr. Jain": a title's full stop ends no sentence
            break
    return TOKEN_RE.findall(head.lower() if view.is_ascii else head.casefold())


def _tokens_after(view: "_View", e: int) -> list[str]:
    """The casefolded tokens between ``e`` and the next sentence end."""
    tail = view.text[e: e + _LOOK_CHARS]
    cut = _SENTENCE_END.search(tail)
    if cut is not None:
        tail = tail[:cut.start()]
    return TOKEN_RE.findall(tail.lower() if view.is_ascii else tail.casefold())
