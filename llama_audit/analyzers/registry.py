"""Analyzer registry: built-ins and third-party analyzers registered through entry points.

Third parties declare, in their ``pyproject.toml``::

    [project.entry-points."llama_audit.analyzers"]
    my_analyzer = "my_package.module:MyAnalyzer"

Built-ins are listed here the same way (``module:Class`` strings), so importing the registry
imports no heavy dependency; a class is imported only when its analyzer is used.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from typing import Any, Mapping, Sequence

from llama_audit.analyzers.base import Analyzer
from llama_audit.analyzers.options import AnalyzerOptions, build
from llama_audit.types import ConfigError

ENTRY_POINT_GROUP = "llama_audit.analyzers"

BUILTINS: dict[str, str] = {
    "language": "llama_audit.analyzers.language:LanguageAnalyzer",
    "pronouns": "llama_audit.analyzers.pronouns:PronounAnalyzer",
    "identities": "llama_audit.analyzers.identities:IdentityAnalyzer",
    "pii": "llama_audit.analyzers.pii:PiiAnalyzer",
    "toxicity": "llama_audit.analyzers.toxicity:ToxicityAnalyzer",
    "identity_toxicity": "llama_audit.analyzers.identity_toxicity:IdentityToxicityAnalyzer",
    # opt-in (OPT_IN): the safety benchmarks of a model's generations, run by `llama-audit eval`
    "toxigen": "llama_audit.analyzers.toxigen:ToxiGenAnalyzer",
    "bold_sentiment": "llama_audit.analyzers.bold_sentiment:BoldSentimentAnalyzer",
    "truthfulqa": "llama_audit.analyzers.truthfulqa:TruthfulQAAnalyzer",
}
#: built-ins that run only when named (``eval``, ``scan --analyzers NAME``), never in the default
#: set: they score a model's generations, not a pretraining corpus
OPT_IN: frozenset[str] = frozenset({"toxigen", "bold_sentiment", "truthfulqa"})


def available_names(opt_in: bool = False) -> dict[str, str]:
    """All analyzer names -> ``module:Class`` targets (built-ins first, then entry points); the
    :data:`OPT_IN` built-ins only with ``opt_in`` (what loads a class by name, and the report,
    which draws any section an OUT holds), so that the default scan set, its flags and its help
    never include them."""
    names = {name: target for name, target in BUILTINS.items() if opt_in or name not in OPT_IN}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        names.setdefault(ep.name, ep.value)
    return names


def unknown_analyzer(name: str, names: Sequence[str]) -> str:
    """The error for a name that is no analyzer: the closest known name first (a typo or a
    singular, ``pronoun`` for ``pronouns``), then all of them."""
    import difflib

    close = difflib.get_close_matches(name.lower(), list(names), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown analyzer {name!r}{hint} (known: {', '.join(names)})"


def load_class(name: str) -> type[Analyzer]:
    names = available_names(opt_in=True)
    if name not in names:
        raise ConfigError(unknown_analyzer(name, names))
    module_name, _, attr = names[name].partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:  # a broken plugin is reported, never a traceback
        raise ConfigError(f"analyzer {name!r} ({names[name]}) cannot be loaded: {type(exc).__name__}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Analyzer)):
        raise ConfigError(f"analyzer {name!r} ({names[name]}) is not an Analyzer subclass")
    if getattr(cls, "name", None) != name:
        raise ConfigError(f"analyzer {names[name]} has name {getattr(cls, 'name', None)!r}, registered as {name!r}")
    return cls


def resolve_order(selected: list[str]) -> list[type[Analyzer]]:
    """Classes for ``selected`` plus their requirements, dependencies first (stable order)."""
    ordered: list[type[Analyzer]] = []
    seen: dict[str, str] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if seen.get(name) == "done":
            return
        if name in chain:
            raise ConfigError(f"analyzer dependency cycle: {' -> '.join(chain + (name,))}")
        cls = load_class(name)
        for dep in cls.requires:
            visit(dep, chain + (name,))
        seen[name] = "done"
        ordered.append(cls)

    for name in selected:
        visit(name, ())
    return ordered


def typed_options(names: Sequence[str], given: Mapping[str, Any] | None) -> dict[str, AnalyzerOptions]:
    """Typed, validated options for each analyzer of ``names`` from ``{name: {key: value}}`` (or
    already typed instances). Done before any file is read: a bad value is a one-line error."""
    given = given or {}
    out = {}
    for name in names:
        value = given.get(name)
        out[name] = value if isinstance(value, AnalyzerOptions) else load_class(name).options_from(value)
    return out


def build_analyzers(names: Sequence[str], options: Mapping[str, Any] | None = None) -> list[Analyzer]:
    """Instances of ``names`` and of what they require, in order (dependencies first, otherwise
    the order of ``names``), each with its options (typed instances or ``{key: value}``)."""
    classes = resolve_order(list(names))
    typed = typed_options([cls.name for cls in classes], options)
    return [cls(typed[cls.name]) for cls in classes]


def typed_report_options(given: Mapping[str, Mapping[str, Any]] | None) -> dict[str, AnalyzerOptions]:
    """Typed report options for the analyzers named in ``given`` (the others use their defaults)."""
    out = {}
    for name, values in (given or {}).items():
        cls = load_class(name)
        out[name] = build(getattr(cls, "ReportOptions", AnalyzerOptions), name, values)
    return out
