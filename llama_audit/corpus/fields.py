"""Field paths: where a record's text, id and other fields are, in nested JSON objects and in
Parquet/Arrow structs, so that corpora that keep the text at ``meta.text`` read without a
conversion step.

A path is a field name, or names joined by dots that walk into nested objects (JSON) or struct
columns (Parquet, Arrow). A top-level key (or column) whose own name is the whole path wins
over the walk: a corpus with a literal ``"meta.text"`` key reads as it did before paths existed.
Only the top level is checked for a literal dotted name; below it, every dot separates names.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..types import ConfigError
from .records import ReadSpec

#: separates the fallbacks of ``--text-field`` / ``--id-field`` (``text,content,raw_content``)
FIELD_LIST_SEPARATOR = ","
_LISTED = 8  # names shown when a column or struct field is missing
_NAME_CHARS = 40  # characters of one listed name (a name is schema, but may be long)


def _listing(names: Sequence[str]) -> str:
    """Up to _LISTED names, quoted with repr (control characters escaped), each cut to _NAME_CHARS."""
    shown = [repr(c if len(c) <= _NAME_CHARS else c[:_NAME_CHARS] + "~") for c in list(names)[:_LISTED]]
    return ", ".join(shown) + (", ..." if len(names) > _LISTED else "")


def field_list(value: str, option: str = "--text-field") -> tuple[str, ...]:
    """The field paths of a ``--text-field`` / ``--id-field`` value: one path, or fallbacks joined
    by :data:`FIELD_LIST_SEPARATOR` (``text,content,raw_content``: per record the first that holds a
    value is used, as datatrove's and dolma's readers are configured for RedPajama, Dolma and C4
    dumps that name the text differently). Spaces around names are dropped; an empty name or a
    name listed twice is a ConfigError naming ``option``."""
    parts = tuple(p.strip() for p in str(value).split(FIELD_LIST_SEPARATOR))
    if not all(parts):
        raise ConfigError(f"{option} {value!r}: an empty field name (list fallbacks as text,content,raw_content)")
    twice = sorted({p for p in parts if parts.count(p) > 1})
    if twice:
        raise ConfigError(f"{option} {value!r}: {twice[0]!r} is listed twice")
    return parts


def normal_field_list(value: str, option: str = "--text-field") -> str:
    """``value`` checked and written the one way the configuration records it (``text,content``)."""
    return FIELD_LIST_SEPARATOR.join(field_list(value, option))


def _fields_phrase(paths: str | Sequence[str]) -> str:
    """``field 'text'``, or ``any of the fields 'text', 'content'`` for fallbacks."""
    names = field_list(paths) if isinstance(paths, str) else tuple(paths)
    if len(names) == 1:
        return f"field {names[0]!r}"
    return "any of the fields " + ", ".join(map(repr, names))


def absent_everywhere(path: str | Sequence[str], names: Sequence[str], detail: str = "") -> str:
    """The one-line reason a shard fails when no record has the text field at ``path`` (or any of
    its fallbacks): names the top-level fields that do exist (names only, never values: values
    may hold personal data), so that a mistyped --text-field is found from the error alone."""
    more = f"; {detail}" if detail else ""
    return (f"no record has {_fields_phrase(path)} (fields seen: {_listing(names) or 'none'}{more}; "
            "is --text-field right?)")


def id_text(v: object) -> str:
    """The document id of a non-string id value: integers as digits, anything else as JSON."""
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    try:
        return orjson.dumps(v, default=str).decode()
    except (TypeError, orjson.JSONEncodeError):
        return str(v)


class FieldPath:
    """One dotted path into records (see the module docstring for the literal-key rule)."""

    __slots__ = ("path", "parts", "nested")

    def __init__(self, path: str):
        self.path = path
        self.parts = tuple(path.split("."))
        self.nested = len(self.parts) > 1

    def __repr__(self) -> str:
        return f"FieldPath({self.path!r})"

    # -- JSON objects -----------------------------------------------------------------------

    def get(self, obj: dict) -> Any:
        """The value at this path in a JSON object, or None where it is absent."""
        if not self.nested or self.path in obj:
            return obj.get(self.path)
        value: Any = obj
        for part in self.parts:
            if type(value) is not dict:
                return None
            value = value.get(part)
        return value

    def find(self, obj: dict) -> tuple[dict, str] | None:
        """The object that holds this path's value and the key in it, or None where absent: lets
        a caller tell a missing field from a null one, and write a new value in place."""
        if not self.nested or self.path in obj:
            return (obj, self.path) if self.path in obj else None
        holder: Any = obj
        for part in self.parts[:-1]:
            holder = holder.get(part)
            if type(holder) is not dict:
                return None
        last = self.parts[-1]
        return (holder, last) if last in holder else None

    # -- Arrow record batches / Parquet columns -----------------------------------------------

    def top_column(self, names: Sequence[str]) -> str | None:
        """The top-level column that holds this path, among ``names``, or None."""
        if self.path in names:
            return self.path
        if self.nested and self.parts[0] in names:
            return self.parts[0]
        return None

    def _resolve(self, schema: pa.Schema) -> tuple[str, tuple[int, ...]] | str:
        """(top-level column, struct child indices below it), or why the path is not in ``schema``."""
        names = schema.names
        if self.path in names:
            return self.path, ()
        if not self.nested or self.parts[0] not in names:
            return f"no column {self.path!r} (columns: {_listing(names)})"
        dtype = schema.field(self.parts[0]).type
        children: list[int] = []
        for depth, part in enumerate(self.parts[1:], start=1):
            parent = ".".join(self.parts[:depth])
            if not pa.types.is_struct(dtype):
                return f"no field {self.path!r} ({parent!r} is {dtype}, not a struct)"
            index = dtype.get_field_index(part)
            if index < 0:
                members = [dtype.field(k).name for k in range(dtype.num_fields)]
                return f"no field {self.path!r} (struct {parent!r} has fields: {_listing(members)})"
            children.append(index)
            dtype = dtype.field(index).type
        return self.parts[0], tuple(children)

    def absent_from(self, schema: pa.Schema) -> str | None:
        """The shard-level error when ``schema`` (a columnar file's, the same for all its rows)
        has no such path, or None when it has."""
        found = self._resolve(schema)
        if not isinstance(found, str):
            return None
        if self.path in schema.names or not self.nested or self.parts[0] not in schema.names:
            return absent_everywhere(self.path, schema.names)
        return absent_everywhere(self.path, schema.names, found)  # found: where below the top it stops

    def missing_in(self, schema: pa.Schema) -> str | None:
        """Why this path is not in ``schema`` (one line naming the path), or None when it is."""
        found = self._resolve(schema)
        return found if isinstance(found, str) else None

    def column(self, batch: pa.RecordBatch) -> pa.Array | None:
        """The values at this path (null where a parent struct is null), or None if the batch's
        schema has no such path."""
        found = self._resolve(batch.schema)
        if isinstance(found, str):
            return None
        top, children = found
        values = batch.column(top)
        for index in children:
            values = pc.struct_field(values, [index])
        return values

    def replace(self, batch: pa.RecordBatch, fn: Callable[[pa.Array], pa.Array]) -> pa.RecordBatch:
        """``batch`` with the values at this path replaced by ``fn(values)`` (same type), every
        other column and struct field untouched; the batch itself when the path is absent."""
        found = self._resolve(batch.schema)
        if isinstance(found, str):
            return batch
        top, children = found
        index = batch.schema.get_field_index(top)
        new = _replace_child(batch.column(index), children, fn)
        return batch.set_column(index, batch.schema.field(index), new)


def _replace_child(values: pa.Array, children: tuple[int, ...], fn: Callable[[pa.Array], pa.Array]) -> pa.Array:
    if not children:
        return fn(values)
    members = [values.field(k) for k in range(values.type.num_fields)]
    members[children[0]] = _replace_child(members[children[0]], children[1:], fn)
    mask = values.is_null() if values.null_count else None
    return pa.StructArray.from_arrays(members, fields=list(values.type), mask=mask)


class SpecPaths:
    """The field paths of a :class:`ReadSpec`, parsed once per shard. ``text`` and ``id`` are the
    first listed paths; ``texts`` and ``ids`` all of them, fallbacks after the first (see
    :func:`field_list`)."""

    __slots__ = ("text", "id", "texts", "ids", "fields")

    def __init__(self, spec: ReadSpec):
        self.texts = tuple(FieldPath(p) for p in field_list(spec.text_field, "--text-field"))
        self.ids = tuple(FieldPath(p) for p in field_list(spec.id_field, "--id-field"))
        self.text, self.id = self.texts[0], self.ids[0]
        self.fields = tuple(FieldPath(p) for p in spec.fields)

    @property
    def fallbacks(self) -> bool:
        """Whether the text field lists fallbacks (then which one each document used is counted)."""
        return len(self.texts) > 1

    def text_absent_from(self, schema: pa.Schema) -> str | None:
        """The shard-level error when no listed text path is in ``schema``, or None."""
        if not self.fallbacks:
            return self.text.absent_from(schema)
        if any(p.missing_in(schema) is None for p in self.texts):
            return None
        return absent_everywhere([p.path for p in self.texts], schema.names)

    def top_columns(self, names: Sequence[str]) -> list[str]:
        """The top-level columns to read for this spec (those present), each once, text first."""
        out: list[str] = []
        for path in (*self.texts, *self.ids, *self.fields):
            top = path.top_column(names)
            if top is not None and top not in out:
                out.append(top)
        return out
