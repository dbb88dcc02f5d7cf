"""The analyzer options contract: each analyzer declares a frozen ``Options`` dataclass; values are
parsed by the declared type, validated before any file is read (errors name the option as the user
types it), reachable from the command line as a declared flag or ``--option NAME.KEY=VALUE``, and
recorded in OUT's configuration. The core (job, scan, estimate, executors) knows analyzers only by
their declarations: the scope provider is found by capability, never by name."""

import dataclasses
import io
import json
import re
import tokenize
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from llama_audit.analyzers import registry
from llama_audit.analyzers.base import Analyzer
from llama_audit.analyzers.identities import IdentityAnalyzer, IdentityOptions
from llama_audit.analyzers.language import LanguageAnalyzer, LanguageOptions
from llama_audit.analyzers.options import AnalyzerOptions, build, option, parse_assignments, specs, to_config
from llama_audit.analyzers.pii import PiiAnalyzer
from llama_audit.analyzers.pii.analyzer import PiiOptions
from llama_audit.analyzers.pronouns import PronounAnalyzer, PronounOptions
from llama_audit.analyzers.toxicity import ToxicityAnalyzer
from llama_audit.analyzers.toxicity.analyzer import ToxicityOptions
from llama_audit.cli import command
from llama_audit.job import ScanRequest, check_languages, choose_analyzers, run_scan
from llama_audit.partials import from_table
from llama_audit.scan import Scope, analyze_batch
from llama_audit.types import ConfigError, DocBatch

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def invoke(*args, **kw):
    return runner.invoke(command(), [str(a) for a in args], **kw)


def known(name: str) -> bool:
    return name in registry.available_names()


# -- parsing by declared type ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class DemoOptions(AnalyzerOptions):
    count: int = option(3, "an integer", flag="--demo-count", check=lambda v: None if v >= 0 else "must be >= 0")
    ratio: float = option(0.5, "a number")
    on: bool = option(False, "a switch", flag="--demo-on/--no-demo-on")
    tags: tuple[str, ...] = option(("a",), "a list")
    limit: int | None = option(None, "an optional integer")
    name: str = option("x", "a text with choices", choices=("x", "y", "none"))
    anything: Any = option(True, "kept as given")


def demo(given):
    return build(DemoOptions, "demo", given)


@pytest.mark.parametrize("key,raw,expected", [
    ("count", "7", 7), ("count", " 12 ", 12), ("count", 7, 7),
    ("ratio", "0.25", 0.25), ("ratio", "1e-3", 0.001), ("ratio", 2, 2.0), ("ratio", 0.75, 0.75),
    ("on", "true", True), ("on", "YES", True), ("on", "1", True), ("on", "on", True),
    ("on", "off", False), ("on", "no", False), ("on", "0", False), ("on", False, False),
    ("tags", "a, b,,c ", ("a", "b", "c")), ("tags", ["x", "y"], ("x", "y")), ("tags", ("z",), ("z",)), ("tags", "", ()),
    ("limit", "none", None), ("limit", "NULL", None), ("limit", None, None), ("limit", "5", 5), ("limit", 6, 6),
    ("name", "y", "y"), ("name", "none", "none"),  # "none" is only None for an optional option
    ("anything", "false", False), ("anything", "text", "text"), ("anything", {"k": 1}, {"k": 1}),
])
def test_values_are_parsed_by_the_declared_type(key, raw, expected):
    value = getattr(demo({key: raw}), key)
    assert value == expected and type(value) is type(expected)


def test_unset_options_keep_their_defaults():
    assert demo({}) == demo(None) == DemoOptions()
    assert demo({"count": "4"}) == DemoOptions(count=4)


@pytest.mark.parametrize("key,raw,message", [
    ("count", "3.5", "--demo-count: expected integer, got '3.5'"),
    ("count", True, "--demo-count: expected integer, got True"),  # a bool is not an integer
    ("count", "none", "--demo-count: expected integer, got 'none'"),
    ("count", None, "--demo-count: a value is required"),
    ("count", "-1", "--demo-count must be >= 0 (got -1)"),
    ("ratio", "half", "--option demo.ratio: expected number, got 'half'"),
    ("ratio", "1.0.0", "--option demo.ratio: expected number, got '1.0.0'"),
    ("on", "maybe", "--demo-on: expected true|false, got 'maybe'"),
    ("on", 1, "--demo-on: expected true|false, got 1"),
    ("tags", 5, "--option demo.tags: expected list, got 5"),
    ("limit", "x", "--option demo.limit: expected integer or none, got 'x'"),
    ("name", "z", "--option demo.name takes x, y, none (got 'z')"),
])
def test_bad_values_are_config_errors_naming_the_option(key, raw, message):
    with pytest.raises(ConfigError) as exc:
        demo({key: raw})
    assert str(exc.value) == message


def test_built_in_options_parse_command_line_text():
    assert LanguageAnalyzer.options_from({"threshold": "0.3", "engine": "fastlid"}) == \
        LanguageOptions(threshold=0.3, engine="fastlid")
    assert PiiAnalyzer.options_from({"types": "EMAIL_ADDRESS, US_SSN"}).types == ("EMAIL_ADDRESS", "US_SSN")
    tox = ToxicityAnalyzer.options_from({"batch_tokens": "128", "threads": "none", "overlap": "true", "seed": "7",
                                         "self_test": "false", "sample": "0.1", "precision": "bf16"})
    assert (tox.batch_tokens, tox.threads, tox.overlap, tox.seed, tox.self_test, tox.sample, tox.precision) == \
        (128, None, True, 7, False, 0.1, "bf16")
    assert ToxicityAnalyzer.options_from({"batch_tokens": "none"}).batch_tokens is None
    # the API form of the self-test: a mapping, kept as given (and validated)
    assert ToxicityAnalyzer.options_from({"self_test": {"margin": -1.0}}).self_test == {"margin": -1.0}


def test_unknown_option_key_lists_the_known_ones():
    with pytest.raises(ConfigError) as exc:
        LanguageAnalyzer.options_from({"lid_threshold": 0.3})  # the old flat ScanOptions name
    assert str(exc.value) == "analyzer 'language' has no option lid_threshold (its options: model, threshold, engine)"
    with pytest.raises(ConfigError) as exc:
        ToxicityAnalyzer({"toxicity_sample": 0.1})
    assert str(exc.value) == ("analyzer 'toxicity' has no option toxicity_sample (its options: model, revision, "
                              "tokenizer, sample, batch_tokens, self_test, device, seed, label_index, precision, "
                              "forward, cache_lines, threads, overlap)")
    with pytest.raises(ConfigError) as exc:
        demo({"zeta": 1, "alpha": 2, "count": 1})
    assert str(exc.value) == ("analyzer 'demo' has no option alpha, zeta "
                              "(its options: count, ratio, on, tags, limit, name, anything)")
    with pytest.raises(ConfigError) as exc:
        build(AnalyzerOptions, "plain", {"x": 1})
    assert str(exc.value) == "analyzer 'plain' has no option x (its options: none)"


@pytest.mark.parametrize("cls,given,message", [
    (LanguageAnalyzer, {"threshold": 2}, "--lid-threshold must be between 0 and 1 (got 2.0)"),
    (LanguageAnalyzer, {"threshold": "-0.1"}, "--lid-threshold must be between 0 and 1 (got -0.1)"),
    (LanguageAnalyzer, {"threshold": "abc"}, "--lid-threshold: expected number, got 'abc'"),
    (LanguageAnalyzer, {"engine": "cld3"}, "--lid-engine takes auto, fastlid, fasttext (got 'cld3')"),
    (ToxicityAnalyzer, {"sample": 1.5}, "--toxicity-sample must be in (0, 1] (got 1.5)"),
    (ToxicityAnalyzer, {"sample": "0"}, "--toxicity-sample must be in (0, 1] (got 0.0)"),
    (ToxicityAnalyzer, {"batch_tokens": 63}, "--toxicity-batch-tokens must be >= 64 (got 63)"),
    (ToxicityAnalyzer, {"cache_lines": -1}, "--option toxicity.cache_lines must be >= 0 (got -1)"),  # no flag
    (ToxicityAnalyzer, {"threads": "0"}, "--option toxicity.threads must be >= 1 (got 0)"),
    (ToxicityAnalyzer, {"precision": "fp8"}, "--option toxicity.precision takes auto, fp32, bf16, fp16 (got 'fp8')"),
    (ToxicityAnalyzer, {"forward": "onnx"}, "--option toxicity.forward takes auto, packed, transformers (got 'onnx')"),
])
def test_a_failed_check_names_the_flag_the_user_types(cls, given, message):
    with pytest.raises(ConfigError) as exc:
        cls(given)
    assert str(exc.value) == message
    with pytest.raises(ConfigError):
        cls.options_from(given)


@pytest.mark.parametrize("given,start", [
    ({"types": "EMAIL"}, "--pii-types:"),
    ({"types": ()}, "--pii-types:"),
    ({"region": "Atlantis"}, "--pii-region: unknown region 'Atlantis'"),
])
def test_cross_field_validation_names_the_flag(given, start):
    with pytest.raises(ConfigError) as exc:
        PiiAnalyzer(given)
    assert str(exc.value).startswith(start)


def test_an_analyzer_takes_typed_options_a_dict_or_nothing():
    typed = LanguageAnalyzer.options_from({"threshold": "0.3"})
    assert isinstance(typed, LanguageOptions) and typed.threshold == 0.3
    assert LanguageAnalyzer(typed).options is typed
    assert LanguageAnalyzer({"threshold": 0.3}).options == typed
    assert LanguageAnalyzer().options == LanguageOptions() == LanguageAnalyzer.options_from(None)
    assert PiiAnalyzer().options == PiiOptions() and ToxicityAnalyzer().options == ToxicityOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        typed.threshold = 0.9
    with pytest.raises(TypeError, match="immutable"):
        option([], "a mutable default")
    # an analyzer's recorded config is JSON (tuples as lists)
    assert to_config(PiiAnalyzer.options_from({"types": "EMAIL_ADDRESS,US_SSN"})) == \
        {"types": ["EMAIL_ADDRESS", "US_SSN"], "region": "US", "fields": []}
    assert PiiAnalyzer({"types": "email_address"}).config()["types"] == ["EMAIL_ADDRESS"]


# Every analyzer flag of the old command line (and the old ScanOptions / extra fields behind it):
# the analyzer that owns it now, its key, and the unchanged default.
OLD_FLAGS = [
    ("--lid-threshold", "language", "threshold", 0.5),
    ("--lid-model", "language", "model", None),
    ("--lid-engine", "language", "engine", "auto"),
    ("--lexicon", "identities", "lexicon", None),
    ("--pronoun-lexicon", "pronouns", "lexicon", None),
    ("--pii-types", "pii", "types", None),
    ("--pii-region", "pii", "region", "US"),
    ("--toxicity-model", "toxicity", "model", "tomh/toxigen_hatebert"),
    ("--toxicity-revision", "toxicity", "revision", None),
    ("--toxicity-tokenizer", "toxicity", "tokenizer", "bert-base-uncased"),
    ("--toxicity-sample", "toxicity", "sample", 1.0),
    ("--toxicity-batch-tokens", "toxicity", "batch_tokens", None),
    ("--toxicity-self-test", "toxicity", "self_test", True),
    ("--device", "toxicity", "device", "auto"),
    ("--seed", "toxicity", "seed", 0),
]
OLD_EXTRAS = [  # ScanOptions.extra["toxicity_*"]: now plain options without a flag
    ("toxicity", "label_index", 1), ("toxicity", "precision", "auto"), ("toxicity", "forward", "auto"),
    ("toxicity", "cache_lines", 500_000), ("toxicity", "threads", None), ("toxicity", "overlap", None),
]
OLD_REPORT_FLAGS = [("--top", "identities", "top", 5), ("--min-pct", "language", "min_pct", 0.005)]


def test_every_old_analyzer_flag_keeps_its_name_and_default():
    for flag, name, key, default in OLD_FLAGS:
        spec = {s.key: s for s in specs(registry.load_class(name).Options, name)}[key]
        assert spec.flag.split("/")[0] == flag and spec.default == default, flag
    for name, key, default in OLD_EXTRAS:
        spec = {s.key: s for s in specs(registry.load_class(name).Options, name)}[key]
        assert spec.flag is None and spec.default == default, key
    for flag, name, key, default in OLD_REPORT_FLAGS:
        spec = {s.key: s for s in specs(registry.load_class(name).ReportOptions, name)}[key]
        assert spec.flag == flag and spec.default == default, flag


# -- --option NAME.KEY=VALUE -----------------------------------------------------------------------

def test_option_assignments_are_grouped_by_analyzer():
    got = parse_assignments(["language.threshold=0.9", "toxicity.device=cpu", "language.engine=fastlid",
                             "pii.types=EMAIL_ADDRESS,US_SSN", "toxicity.model=/models/a=b", "toxicity.revision="],
                            known)
    assert got == {"language": {"threshold": "0.9", "engine": "fastlid"},
                   "pii": {"types": "EMAIL_ADDRESS,US_SSN"},
                   "toxicity": {"device": "cpu", "model": "/models/a=b", "revision": ""}}
    assert parse_assignments([], known) == {}
    assert parse_assignments(["language.threshold=0.1", "language.threshold=0.2"], known) == \
        {"language": {"threshold": "0.2"}}  # the last one wins


@pytest.mark.parametrize("text", ["foo", "language", "language.threshold", "language=0.9", ".threshold=1",
                                  "language.=1", "=1"])
def test_option_without_name_key_value_is_an_error(text):
    with pytest.raises(ConfigError) as exc:
        parse_assignments([text], known)
    assert str(exc.value) == f"--option takes NAME.KEY=VALUE (got {text!r})"


def test_option_for_an_unknown_analyzer_is_an_error():
    with pytest.raises(ConfigError) as exc:
        parse_assignments(["language.threshold=0.9", "nope.x=1"], known)
    assert str(exc.value) == "--option 'nope.x=1': no analyzer named 'nope'"


def test_registry_types_options_per_analyzer():
    typed = registry.typed_options(["language", "pii"], {"language": {"threshold": "0.7"}})
    assert typed == {"language": LanguageOptions(threshold=0.7), "pii": PiiOptions()}
    mine = LanguageOptions(engine="fasttext")
    assert registry.typed_options(["language"], {"language": mine})["language"] is mine
    built = registry.build_analyzers(["language", "pii"], {"language": {"threshold": "0.7"}, "pii": {"region": "gb"}})
    assert [type(a) for a in built] == [LanguageAnalyzer, PiiAnalyzer]
    assert built[0].options.threshold == 0.7 and built[1].region == "GB"
    with pytest.raises(ConfigError, match="--lid-threshold must be between 0 and 1"):
        registry.build_analyzers(["language"], {"language": {"threshold": "7"}})


def test_choose_analyzers_returns_names_skipped_and_typed_options():
    warnings = []
    choice = choose_analyzers(["pronouns"], ("en",), {"language": {"threshold": "0.6"}}, warnings.append)
    assert choice.names == ["language", "pronouns"]
    assert choice.skipped == {} and warnings == []
    assert choice.options == {"language": LanguageOptions(threshold=0.6), "pronouns": PronounOptions()}
    choice = choose_analyzers(["pronouns", "language"], ("en",), {}, warnings.append)
    assert choice.names == ["language", "pronouns"]  # the scope provider runs first
    choice = choose_analyzers(["pronouns"], ("all",), {"language": {"threshold": "0.6"}}, warnings.append)
    assert choice.names == ["pronouns"] and set(choice.options) == {"pronouns"}
    assert warnings == ["options given for analyzers that do not run are ignored: language"]
    with pytest.raises(ConfigError, match="--lid-threshold must be between 0 and 1"):
        choose_analyzers(["pronouns"], ("en",), {"language": {"threshold": "2"}}, warnings.append)
    with pytest.raises(ConfigError, match="has no option lexicons"):
        choose_analyzers(["identities"], ("all",), {"identities": {"lexicons": "x.tsv"}}, warnings.append)


# -- the scope provider, by capability -------------------------------------------------------------

class FakeLid(Analyzer):
    """A scope provider under another name and column: 'en' when a document has the word 'the'."""

    name = "fakelid"
    scope_column = "fake_lang"

    def scope_labels(self):
        return {"en", "xx"}

    def fields(self):
        return [pa.field("fake_lang", pa.string())]

    def annotate(self, batch, ctx):
        labels = ["en" if re.search(r"\bthe\b", t, re.I) else "xx" for t in batch.texts]
        return {"fake_lang": pa.array(labels, pa.string())}

    def fold(self, columns, ctx):
        return Counter(columns["fake_lang"].to_pylist())


DOCS = [{"id": "1", "text": "She read the book."}, {"id": "2", "text": "Elle lit un livre."},
        {"id": "3", "text": "He saw the sea."}, {"id": "4", "text": "Er sah das Meer."}]


def in_scope_documents(out: Path) -> int:
    return from_table(pq.read_table(out / "summary" / "counts.parquet"))["corpus"]["in_scope_documents"]


def test_a_scoped_analyzer_pulls_in_the_language_analyzer(tmp_path, make_jsonl):
    make_jsonl("a.jsonl", DOCS)
    out = tmp_path / "out"
    res = run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(out), analyzers=["pronouns"],
                               languages=("en",)))
    assert res.exit_code == 0
    config = json.loads((out / "manifest.json").read_text())["config"]
    assert list(config["analyzers"]) == ["language", "pronouns"] and config["languages"] == ["en"]
    columns = pq.read_table(next((out / "annotations").iterdir())).column_names
    assert columns.index("lang") < columns.index("pronoun_groups")
    assert in_scope_documents(out) == 2


def test_the_scope_provider_is_found_by_capability_not_by_name(tmp_path, make_jsonl, monkeypatch):
    others = {k: v for k, v in registry.BUILTINS.items() if k != "language"}
    monkeypatch.setattr(registry, "BUILTINS", {**others, "fakelid": f"{__name__}:FakeLid"})
    assert choose_analyzers(["pronouns"], ("en",), {}, lambda m: None).names == ["fakelid", "pronouns"]
    assert choose_analyzers(["pronouns", "fakelid"], ("en",), {}, lambda m: None).names == ["fakelid", "pronouns"]
    assert choose_analyzers(["pronouns"], ("all",), {}, lambda m: None).names == ["pronouns"]
    with pytest.raises(ConfigError, match="'fr' not among the fakelid model's 2 labels"):
        check_languages([FakeLid()], Scope(("fr",), "fake_lang"))
    make_jsonl("a.jsonl", DOCS)
    out = tmp_path / "out"
    res = run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(out), analyzers=["pronouns"],
                               languages=("en",)))
    assert res.exit_code == 0 and res.documents == 4
    assert list(json.loads((out / "manifest.json").read_text())["config"]["analyzers"]) == ["fakelid", "pronouns"]
    table = pq.read_table(next((out / "annotations").iterdir()))
    assert table["fake_lang"].to_pylist() == ["en", "xx", "en", "xx"]
    assert in_scope_documents(out) == 2  # the gate compared --languages with the provider's own column
    # no analyzer provides the scope: a language scope is an error that says what to do
    monkeypatch.setattr(registry, "BUILTINS", others)
    with pytest.raises(ConfigError, match="needs an analyzer that provides the language scope.*--languages all"):
        choose_analyzers(["pronouns"], ("en",), {}, lambda m: None)
    assert choose_analyzers(["pronouns"], ("all",), {}, lambda m: None).names == ["pronouns"]


def test_scope_gate_and_analyze_batch_take_the_scope():
    labels = pa.array(["en", "fr", None, "unknown", "en"], pa.string())
    assert Scope(("en",), "lang").gate(labels, 5).tolist() == [True, False, False, False, True]
    assert Scope(("en", "fr"), "lang").gate(labels, 5).tolist() == [True, True, False, False, True]
    assert Scope(("all",), None).everything and Scope(("all",), None).gate(None, 3).tolist() == [True] * 3
    assert Scope(("en",), None).gate(None, 2).tolist() == [False, False]  # no provider: nothing in scope
    texts = ["She wrote a long letter to her mother about the garden.", "Elle a écrit une longue lettre à sa mère.", ""]
    batch = DocBatch("s.jsonl", np.arange(3, dtype=np.int64), ["a", "b", "c"], texts)
    analyzers = [LanguageAnalyzer(), PronounAnalyzer()]
    counts = {}
    table = analyze_batch(batch, analyzers, Scope(("en",), LanguageAnalyzer.scope_column), counts)
    assert table["lang"].to_pylist() == ["en", "fr", "unknown"]
    assert counts["corpus"]["in_scope_documents"] == 1 and counts["corpus"]["documents"] == 3
    groups = table["pronoun_groups"].to_pylist()
    assert "she" in groups[0] and groups[1:] == [None, None]  # out of scope: not analysed (null)
    everything = {}
    analyze_batch(batch, analyzers, Scope(("all",), "lang"), everything)
    assert everything["corpus"]["in_scope_documents"] == 3


# -- the core names no built-in analyzer -----------------------------------------------------------

BUILTIN_NAMES = {"language", "pronouns", "identities", "pii", "toxicity", "identity_toxicity"}
#: built-ins that run only when named (`llama-audit eval`): never in scan's flags or help, named by no core file either
OPT_IN_NAMES = {"toxigen", "bold_sentiment", "truthfulqa"}
ALLOWED_PHRASES = re.compile(r"language\s+scope|document\s+language", re.I)  # the gate (--languages) and a document's language, not an analyzer
CORE = ["llama_audit/job.py", "llama_audit/scan.py", "llama_audit/estimate.py", "llama_audit/executors",
        "llama_audit/report", "llama_audit/review_samples.py", "llama_audit/store.py", "llama_audit/manifest.py",
        "llama_audit/groups.py", "llama_audit/export", "llama_audit/integrations"]  # not notebook.py: its API names the built-in tables on purpose


def builtin_words() -> set[str]:
    """The built-in analyzers' names, their annotation columns and scope columns."""
    words = set(BUILTIN_NAMES | OPT_IN_NAMES)
    for name in BUILTIN_NAMES | OPT_IN_NAMES:
        cls = registry.load_class(name)
        words.update(f.name for f in cls().fields())
        if cls.scope_column:
            words.add(cls.scope_column)
    return words


def core_files() -> list[Path]:
    files = []
    for rel in CORE:
        p = ROOT / rel
        files.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p])
    return files


def _literal_body(token: str) -> str:
    """A string token without its prefix and quotes (``f"a {b}"`` -> ``a {b}``)."""
    m = re.match(r"^[A-Za-z]*(\"\"\"|\'\'\'|\"|\')(.*)\1$", token, re.S)
    return m.group(2) if m else token


def builtin_mentions(source: str, words: set[str]) -> list[tuple[int, str]]:
    """(line, token) of every identifier or string literal (docstrings included) that names a
    built-in analyzer or one of its columns; comments are not looked at."""
    parts = {w for w in words if "_" not in w}  # e.g. lang in lang_score, toxicity in toxicity_threads
    texts: list[tuple[int, str]] = []  # (line, identifier or string); adjacent literals joined ("a " "b")
    joinable = False
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        kind = tokenize.tok_name[tok.type]
        if kind in ("STRING", "FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END"):
            body = _literal_body(tok.string) if kind == "STRING" else tok.string
            if joinable:
                texts[-1] = (texts[-1][0], texts[-1][1] + body)
            else:
                texts.append((tok.start[0], body))
            joinable = True
        elif kind in ("NL", "COMMENT"):  # between implicitly concatenated literals
            continue
        else:
            joinable = False
            if kind == "NAME":
                texts.append((tok.start[0], tok.string))
    hits = []
    for line, text in texts:
        for word in re.findall(r"[A-Za-z0-9_]+", ALLOWED_PHRASES.sub(" ", text)):
            w = word.lower()
            if w in words or any(p in parts for p in w.split("_")):
                hits.append((line, word))
    return hits


@pytest.mark.parametrize("snippet,found", [
    ('names = ["toxicity"]\n', ["toxicity"]),
    ("x = 'language'\n", ["language"]),
    ('col = columns["lang"]\n', ["lang"]),
    ("v = batch.lang\n", ["lang"]),
    ("v = opts.toxicity_threads\n", ["toxicity_threads"]),
    ("if pii: pass\n", ["pii"]),
    ('msg = f"{n} pronoun_groups"\n', ["pronoun_groups"]),
    ('def f():\n    """Runs the identities analyzer."""\n', ["identities"]),
    ('# the language analyzer\nx = 1  # toxicity\n', []),
    ('def f():\n    """The language scope gate."""\n    return "--languages all"\n', []),
    ('raise E(f"{x} needs the language "\n        "scope; pass --languages all")\n', []),  # one phrase, two literals
    ('x = ("the language "  # why\n     "analyzer")\n', ["language"]),
    ('x = ["the language ", "scope"]\n', ["language"]),  # two strings, not one phrase
    ("languages = scope.languages\n", []),
])
def test_builtin_mention_check_catches_literals_names_and_columns(snippet, found):
    assert [w for _, w in builtin_mentions(snippet, builtin_words())] == found


def test_the_core_contains_no_builtin_analyzer_name():
    words = builtin_words()
    assert {"lang", "lang_score", "pronoun_groups", "pii_spans", "toxicity_mean"} <= words
    files = core_files()
    assert len(files) >= 8  # job, scan, estimate and the executors package
    found = {str(p.relative_to(ROOT)): hits for p in files if (hits := builtin_mentions(p.read_text(), words))}
    assert found == {}


# -- through the command line -----------------------------------------------------------------------

def scan_args(tmp_path, out, *args):
    return ["scan", tmp_path / "corpus", "--out", out, "--quiet", "--analyzers", "language", "--languages", "all",
            *args]


def language_config(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())["config"]["analyzers"]["language"]


def test_option_and_flag_change_the_recorded_configuration(tmp_path, make_jsonl):
    make_jsonl("a.jsonl", DOCS)
    runs = {"default": [], "option": ["--option", "language.threshold=0.9"], "flag": ["--lid-threshold", "0.7"],
            "both": ["--lid-threshold", "0.7", "--option", "language.threshold=0.8"]}
    for name, extra in runs.items():
        res = invoke(*scan_args(tmp_path, tmp_path / name, *extra))
        assert res.exit_code == 0, (name, res.output)
    assert language_config(tmp_path / "default")["threshold"] == 0.5
    assert language_config(tmp_path / "option")["threshold"] == 0.9
    assert language_config(tmp_path / "flag")["threshold"] == 0.7
    assert language_config(tmp_path / "both")["threshold"] == 0.8  # --option wins over the flag
    # another value is another configuration: the OUT refuses it
    res = invoke(*scan_args(tmp_path, tmp_path / "option", "--option", "language.threshold=0.3"))
    assert res.exit_code == 2 and "different configuration" in res.stderr


def test_bad_flag_value_is_one_line_before_out_is_written(tmp_path, make_jsonl):
    make_jsonl("a.jsonl", DOCS)
    out = tmp_path / "o"
    res = invoke(*scan_args(tmp_path, out, "--lid-threshold", "2"))
    assert res.exit_code == 2
    assert res.stderr == "error: --lid-threshold must be between 0 and 1 (got 2.0)\n" and res.stdout == ""
    assert not out.exists()
    res = invoke("scan", tmp_path / "corpus", "--out", out, "--lid-threshold", "2")  # the default analyzers
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert [line for line in res.stderr.splitlines() if not line.startswith("warning:")] == \
        ["error: --lid-threshold must be between 0 and 1 (got 2.0)"]
    assert not out.exists()


@pytest.mark.parametrize("assignment,message", [
    ("foo", "error: --option takes NAME.KEY=VALUE (got 'foo')"),
    ("language=0.9", "error: --option takes NAME.KEY=VALUE (got 'language=0.9')"),
    ("nope.x=1", "error: --option 'nope.x=1': no analyzer named 'nope'"),
    ("language.nope=1", "error: analyzer 'language' has no option nope (its options: model, threshold, engine)"),
    # toxicity is in the default set: its options are checked even when it is skipped (no model here)
    ("toxicity.precision=fp8", "error: --option toxicity.precision takes auto, fp32, bf16, fp16 (got 'fp8')"),
])
def test_bad_option_is_one_line_before_out_is_written(tmp_path, make_jsonl, assignment, message):
    make_jsonl("a.jsonl", DOCS)
    out = tmp_path / "o"
    res = invoke("scan", tmp_path / "corpus", "--out", out, "--quiet", "--option", assignment)
    assert res.exit_code == 2, res.output
    assert res.stderr.splitlines() == [message] and res.stdout == ""
    assert not out.exists()


def test_option_with_a_value_of_the_wrong_type_is_an_error(tmp_path, make_jsonl):
    make_jsonl("a.jsonl", DOCS)
    res = invoke(*scan_args(tmp_path, tmp_path / "o", "--option", "language.threshold=abc"))
    assert res.exit_code == 2 and "--lid-threshold: expected number, got 'abc" in res.stderr
    assert len(res.stderr.splitlines()) == 1 and not (tmp_path / "o").exists()


def test_analyzers_name_prints_its_options():
    res = invoke("analyzers", "toxicity")
    assert res.exit_code == 0, res.output
    assert "--toxicity-model" in res.stdout and "toxicity.precision" in res.stdout
    assert "--toxicity-model | --option toxicity.model=VALUE" in res.stdout
    assert "--option toxicity.precision=VALUE  (auto|fp32|bf16|fp16; default 'auto')" in res.stdout
    for spec in specs(ToxicityOptions, "toxicity"):  # every option, flag or not
        assert f"--option toxicity.{spec.key}=VALUE" in res.stdout, spec.key
    assert "scoped: yes" in res.stdout
    res = invoke("analyzers", "language")
    assert res.exit_code == 0
    assert "--lid-threshold | --option language.threshold=VALUE" in res.stdout
    assert "provides the language scope (column 'lang')" in res.stdout
    assert "--min-pct | --option language.min_pct=VALUE" in res.stdout  # a report option
    res = invoke("analyzers", "identities")
    assert "--top | --option identities.top=VALUE" in res.stdout
    res = invoke("analyzers", "nope")
    assert res.exit_code == 2 and "unknown analyzer 'nope'" in res.stderr
    res = invoke("analyzers")
    assert res.exit_code == 0
    listed = res.stdout.splitlines()
    assert [line.split()[0] for line in listed] == list(registry.available_names(opt_in=True))
    assert {line.split()[0] for line in listed if "not in the default scan" in line} == set(registry.OPT_IN)


def test_scan_and_report_help_list_the_analyzers_options():
    res = invoke("scan", "--help", env={"COLUMNS": "200"})
    assert res.exit_code == 0
    assert "--lid-threshold" in res.stdout
    lines = [line.strip() for line in res.stdout.splitlines()]
    assert any(line.startswith("--option toxicity.precision=VALUE") for line in lines)
    for flag, *_ in OLD_FLAGS:
        assert flag in res.stdout, flag
    assert "--no-toxicity-self-test" in res.stdout
    for name in BUILTIN_NAMES:  # every option without a flag of its own is listed
        for spec in specs(registry.load_class(name).Options, name):
            if not spec.flag:
                assert any(line.startswith(f"--option {name}.{spec.key}=VALUE") for line in lines), spec.qualified
    res = invoke("report", "--help", env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "--top" in res.stdout and "--min-pct" in res.stdout
    assert "--lid-threshold" not in res.stdout  # scan options are not report options
