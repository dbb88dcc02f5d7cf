"""Typed options owned by analyzers.

Each analyzer declares its options as a frozen dataclass derived from :class:`AnalyzerOptions`,
one :func:`option` per field (default, help, optional command-line flag, choices, check). The core
never knows them: the command line exposes a declared ``flag`` as ``scan --FLAG`` and every option
as ``--option NAME.KEY=VALUE``; values are parsed by the field's type, validated before any file
is read, and what changes the output is recorded in the OUT's configuration lock by
:meth:`~llama_audit.analyzers.base.Analyzer.config`.

Supported field types: ``str``, ``int``, ``float``, ``bool``, ``tuple[str, ...]`` (a
comma-separated list on the command line), ``X | None`` of those (``none`` on the command line),
and ``Any`` (kept as given; from the command line a string).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Callable, Iterator, Mapping

from llama_audit.types import ConfigError

Check = Callable[[Any], "str | None"]  # value -> why it is wrong, or None

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def option(default: Any, help: str, *, flag: str | None = None, choices: tuple | None = None,
           check: Check | None = None, metavar: str | None = None) -> Any:
    """Declare one analyzer option (a dataclass field).

    ``flag``: the command-line flag of this option in ``scan``/``report`` (``--lid-threshold``;
    for a bool, ``--x/--no-x``); without one the option is reached as ``--option NAME.KEY=VALUE``.
    ``choices``: the allowed values. ``check``: returns why a value is wrong, or None."""
    meta = {"help": help, "flag": flag, "choices": choices, "check": check, "metavar": metavar}
    if isinstance(default, (list, dict, set)):
        raise TypeError("option defaults must be immutable (use a tuple)")
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class AnalyzerOptions:
    """Base of every analyzer's options dataclass (and of report-time options). No fields."""

    def validate(self) -> None:
        """Checks across fields; raise ConfigError. Per-field checks are declared with option()."""


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    """One declared option, as the command line and ``llama-audit analyzers NAME`` show it."""

    analyzer: str
    key: str
    type: Any  # the resolved annotation
    default: Any
    help: str
    flag: str | None
    choices: tuple | None
    check: Check | None
    metavar: str | None

    @property
    def qualified(self) -> str:
        return f"{self.analyzer}.{self.key}"

    @property
    def spelled(self) -> str:
        """How a user names this option in an error message."""
        if self.flag:
            return self.flag.split("/")[0]
        return f"--option {self.qualified}"

    @property
    def metavar_text(self) -> str:
        """The value's placeholder in --help."""
        if self.metavar:
            return self.metavar
        if self.choices:
            return "|".join(map(str, self.choices)).upper()
        base, _ = _unwrap(self.type)
        return {str: "TEXT", int: "INTEGER", float: "NUMBER"}.get(base, "LIST" if _is_str_tuple(base) else "VALUE")

    @property
    def type_name(self) -> str:
        base, optional = _unwrap(self.type)
        name = {str: "text", int: "integer", float: "number", bool: "true|false"}.get(base)
        if name is None:
            name = "list" if _is_str_tuple(base) else "value"
        if self.choices:
            name = "|".join(map(str, self.choices))
        return name + (" or none" if optional else "")


def specs(cls: type[AnalyzerOptions], analyzer: str) -> list[OptionSpec]:
    hints = typing.get_type_hints(cls)
    return [OptionSpec(analyzer, f.name, hints[f.name], f.default, f.metadata.get("help", ""),
                       f.metadata.get("flag"), f.metadata.get("choices"), f.metadata.get("check"),
                       f.metadata.get("metavar"))
            for f in dataclasses.fields(cls)]


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _is_str_tuple(tp: Any) -> bool:
    return typing.get_origin(tp) is tuple


def parse_value(spec: OptionSpec, raw: Any) -> Any:
    """A value given as text (command line) or as a Python value (API), converted to the type."""
    base, optional = _unwrap(spec.type)
    if raw is None or (isinstance(raw, str) and optional and raw.strip().lower() in ("none", "null")):
        if optional or spec.default is None:
            return None
        raise ConfigError(f"{spec.spelled}: a value is required")
    if base is Any:  # kept as given; text that spells a bool becomes one when the default is a bool
        if isinstance(raw, str) and isinstance(spec.default, bool) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        return raw
    if not isinstance(raw, str):
        if base is float and isinstance(raw, int) and not isinstance(raw, bool):
            return float(raw)
        if _is_str_tuple(base):
            if isinstance(raw, (list, tuple)):
                return tuple(str(v) for v in raw)
            raise ConfigError(f"{spec.spelled}: expected {spec.type_name}, got {raw!r}")
        if isinstance(raw, base) and not (base is int and isinstance(raw, bool)):
            return raw
        raise ConfigError(f"{spec.spelled}: expected {spec.type_name}, got {raw!r}")
    text = raw.strip()
    try:
        if base is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError
        if base is int:
            return int(text)
        if base is float:
            return float(text)
        if _is_str_tuple(base):
            return tuple(v.strip() for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{spec.spelled}: expected {spec.type_name}, got {raw!r}") from None
    return raw


def check_value(spec: OptionSpec, value: Any) -> None:
    if value is None:
        return
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(f"{spec.spelled} takes {', '.join(map(str, spec.choices))} (got {value!r})")
    if spec.check is not None:
        why = spec.check(value)
        if why:
            raise ConfigError(f"{spec.spelled} {why} (got {value!r})")


def build(cls: type[AnalyzerOptions], analyzer: str, given: Mapping[str, Any] | None) -> AnalyzerOptions:
    """An options instance from ``{key: value}`` (values as text or typed); unknown keys, bad
    values and failed checks are ConfigErrors naming the option as the user spells it."""
    given = dict(given or {})
    declared = {s.key: s for s in specs(cls, analyzer)}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        known = ", ".join(declared) or "none"
        raise ConfigError(f"analyzer {analyzer!r} has no option {', '.join(unknown)} (its options: {known})")
    values = {}
    for key, raw in given.items():
        values[key] = parse_value(declared[key], raw)
    instance = cls(**values)
    for key, spec in declared.items():
        check_value(spec, getattr(instance, key))
    instance.validate()
    return instance


def parse_assignments(assignments: Iterator[str] | list[str], known: Callable[[str], bool]) -> dict[str, dict[str, str]]:
    """``["toxicity.device=cpu", ...]`` -> ``{"toxicity": {"device": "cpu"}}``. ``known(name)``
    says whether an analyzer of that name exists (a typo is an error, not a silent no-op)."""
    out: dict[str, dict[str, str]] = {}
    for text in assignments:
        name_key, sep, value = text.partition("=")
        name, dot, key = name_key.strip().partition(".")
        if not sep or not dot or not name or not key:
            raise ConfigError(f"--option takes NAME.KEY=VALUE (got {text!r})")
        if not known(name):
            raise ConfigError(f"--option {text!r}: no analyzer named {name!r}")
        out.setdefault(name, {})[key.strip()] = value
    return out


def to_config(options: AnalyzerOptions) -> dict[str, Any]:
    """The options as JSON-able values (tuples as lists), for a configuration record."""
    out = {}
    for f in dataclasses.fields(options):
        v = getattr(options, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out
