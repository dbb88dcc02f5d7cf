"""What Parquet and Arrow shards share: Arrow record batches -> bounded DocBatches + bad records,
and the keep / redact step of rewriting one record batch."""

from __future__ import annotations

from typing import Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..types import DocBatch
from .base import Redactions
from .fields import FieldPath, SpecPaths, id_text
from .records import BadRecord, Item


def _is_stringy(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _decoded(col: pa.Array) -> pa.Array:
    return col.dictionary_decode() if pa.types.is_dictionary(col.type) else col


def _ids(col: pa.Array) -> list:
    col = _decoded(col)
    t = col.type
    if _is_stringy(t):
        return col.to_pylist()
    if pa.types.is_integer(t):
        return pc.cast(col, pa.string()).to_pylist()
    return [None if v is None else (v if type(v) is str else id_text(v)) for v in col.to_pylist()]


def _texts(col: pa.Array, rows: np.ndarray, bad: list[BadRecord]) -> tuple[list, np.ndarray]:
    """Python strings of a string array; rows whose bytes are not valid UTF-8 become bad records."""
    try:
        return col.to_pylist(), np.ones(len(col), dtype=bool)
    except UnicodeDecodeError:
        pass
    texts: list = []
    ok = np.ones(len(col), dtype=bool)
    for k in range(len(col)):
        try:
            texts.append(col[k].as_py())
        except UnicodeDecodeError as u:
            ok[k] = False
            bad.append(BadRecord(int(rows[k]), "invalid_utf8", f"row {int(rows[k])}: invalid UTF-8 at byte {u.start}"))
    return texts, ok


def _fallback_texts(rb: pa.RecordBatch, texts: tuple[FieldPath, ...]) -> tuple[pa.Array | None, np.ndarray, np.ndarray]:
    """--text-field fallbacks over one record batch: (per row the value of the first listed path
    that holds a string, null where none does, or None when no listed path is in the schema;
    per row the index of that path in ``texts``, -1 for none; per row the index of the
    first path holding a value that is no string, -1 for none: why a row without text is bad)."""
    n = rb.num_rows
    used = np.full(n, -1, dtype=np.int64)
    odd = np.full(n, -1, dtype=np.int64)
    strings: list[pa.Array] = []
    present = False
    for k, path in enumerate(texts):
        col = path.column(rb)
        if col is None:
            continue
        present = True
        col = _decoded(col)
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        if _is_stringy(col.type):
            used[(used < 0) & valid] = k
            strings.append(col)
        else:
            odd[(odd < 0) & valid] = k
    if not present:
        return None, used, odd
    if not strings:
        return pa.nulls(n, pa.string()), used, odd
    if len(strings) == 1:
        return strings[0], used, odd
    return pc.coalesce(*(c.cast(pa.large_string()) for c in strings)), used, odd


def _id_values(rb: pa.RecordBatch, paths: SpecPaths) -> list | None:
    """Per row the id at the first listed id path that holds one (None where none), or None when
    no listed path is in the schema."""
    lists = [_ids(c) for p in paths.ids if (c := p.column(rb)) is not None]
    if len(lists) <= 1:
        return lists[0] if lists else None
    return [next((v for v in values if v is not None), None) for values in zip(*lists)]


def to_docs(rb: pa.RecordBatch, row0: int, rel: str, paths: SpecPaths, batch_docs: int, batch_bytes: int,
            where: str) -> tuple[list[DocBatch], list[BadRecord]]:
    """One record batch (rows ``row0``...) -> bounded DocBatches + bad records. ``where`` names the
    place (record batch, row group) in details."""
    n = rb.num_rows
    bad: list[BadRecord] = []
    if n == 0:
        return [], bad
    tf = paths.text.path
    used: np.ndarray | None = None  # with fallbacks: per row, the index of the text path read
    if paths.fallbacks:
        col, used, odd = _fallback_texts(rb, paths.texts)
        listed = ", ".join(repr(p.path) for p in paths.texts)
        if col is None:
            detail = f"{where}: none of the fields {listed} is in the schema"
            return [], [BadRecord(row0 + k, "missing_text", detail) for k in range(n)]
    else:
        col = paths.text.column(rb)
        if col is None:
            detail = f"{where}: {paths.text.missing_in(rb.schema)}"
            return [], [BadRecord(row0 + k, "missing_text", detail) for k in range(n)]
        col = _decoded(col)
    extra = [(p.path, p.column(rb)) for p in paths.fields]
    rows = np.arange(row0, row0 + n, dtype=np.int64)
    if not _is_stringy(col.type):
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        for k, r in enumerate(rows.tolist()):
            if valid[k]:
                bad.append(BadRecord(r, "non_string_text", f"{where}, row {r}: column {tf!r} is {col.type}, not a string"))
            else:
                bad.append(BadRecord(r, "missing_text", f"{where}, row {r}: {tf!r} is null"))
        return [], bad
    ids_all = _id_values(rb, paths)
    if col.null_count:
        keep = col.is_valid().to_numpy(zero_copy_only=False)
        for k in np.flatnonzero(~keep).tolist():
            r = int(rows[k])
            if used is None:
                bad.append(BadRecord(r, "missing_text", f"{where}, row {r}: {tf!r} is null"))
            elif odd[k] >= 0:
                path = paths.texts[odd[k]]
                bad.append(BadRecord(r, "non_string_text", f"{where}, row {r}: column {path.path!r} is "
                                                            f"{path.column(rb).type}, not a string"))
            else:
                bad.append(BadRecord(r, "missing_text", f"{where}, row {r}: {listed} are null or missing"))
        idx = np.flatnonzero(keep)
        col, rows = col.take(idx), rows[idx]
        ids_all = [ids_all[k] for k in idx.tolist()] if ids_all is not None else None
        used = used[idx] if used is not None else None
        extra = [(name, c.take(idx) if c is not None else None) for name, c in extra]
    texts, ok = _texts(col, rows, bad)
    ids = ids_all
    values = {name: c.to_pylist() if c is not None else [None] * len(col) for name, c in extra}
    if not ok.all():
        idx = np.flatnonzero(ok)
        col, rows = col.take(idx), rows[idx]
        picked = idx.tolist()
        ids = [ids[k] for k in picked] if ids is not None else None
        used = used[idx] if used is not None else None
        values = {name: [v[k] for k in picked] for name, v in values.items()}
    if ids is None:
        ids = [f"{rel}:{r}" for r in rows.tolist()]
    elif None in ids:
        ids = [f"{rel}:{r}" if v is None else v for v, r in zip(ids, rows.tolist())]
    m = len(texts)
    batches: list[DocBatch] = []
    if m == 0:
        return batches, bad
    cum = np.cumsum(pc.binary_length(col).to_numpy(zero_copy_only=False).astype(np.int64))
    start = 0
    while start < m:
        base = int(cum[start - 1]) if start else 0
        end = int(np.searchsorted(cum, base + batch_bytes, side="right"))
        end = min(max(end, start + 1), start + batch_docs, m)
        batches.append(DocBatch(rel, rows[start:end], ids[start:end], texts[start:end],
                                {name: v[start:end] for name, v in values.items()},
                                text_fields=_used(used[start:end], paths) if used is not None else {}))
        start = end
    return batches, bad


def _used(used: np.ndarray, paths: SpecPaths) -> dict[str, int]:
    """How many documents took their text from each listed path (paths that gave none left out)."""
    counts = np.bincount(used, minlength=len(paths.texts))
    return {p.path: int(c) for p, c in zip(paths.texts, counts.tolist()) if c}


def items(batches: list[DocBatch], bad: list[BadRecord], pos: int) -> Iterator[Item]:
    """The items of one converted record batch (at least one, to carry bad records and progress)."""
    if not batches:
        yield None, bad, pos
        return
    for k, b in enumerate(batches):
        yield b, (bad if k == 0 else []), pos


def bad_range(start: int, stop: int, reason: str, detail: str, chunk: int) -> Iterator[list[BadRecord]]:
    """Bad records for rows start..stop-1, in lists of at most ``chunk``."""
    for lo in range(start, stop, chunk):
        yield [BadRecord(r, reason, detail) for r in range(lo, min(stop, lo + chunk))]


def records_of(rb: pa.RecordBatch, row0: int) -> Iterator[tuple[int, dict]]:
    """(row, the row as a dict) for one record batch."""
    for k, record in enumerate(rb.to_pylist()):
        yield row0 + k, record


def _redact_values(values: pa.Array, row0: int, redactions: Redactions) -> pa.Array:
    rows = [r for r in redactions if row0 <= r < row0 + len(values)]
    if not rows:
        return values
    texts = values.to_pylist()
    for r in rows:
        if type(texts[r - row0]) is str:
            texts[r - row0] = redactions[r](texts[r - row0])
    return pa.array(texts, values.type)


def rewrite_batch(rb: pa.RecordBatch, row0: int, keep: np.ndarray, redactions: Redactions,
                  text: FieldPath | tuple[FieldPath, ...],
                  field_redactions: Mapping[str, Redactions] | None = None) -> pa.RecordBatch:
    """The rows of one record batch that ``keep`` keeps, texts at ``text`` redacted (and the
    string values at the paths of ``field_redactions``), schema unchanged. ``text`` may list
    --text-field fallbacks: each row's text is redacted where the scan read it (the first listed
    path that holds a string)."""
    n = rb.num_rows
    texts = text if isinstance(text, tuple) else (text,)
    todo = [(texts[0], redactions)]
    if len(texts) > 1 and any(row0 <= r < row0 + n for r in redactions):
        used = _fallback_texts(rb, texts)[1]
        todo = [(path, {r: fn for r, fn in redactions.items() if row0 <= r < row0 + n and used[r - row0] == k})
                for k, path in enumerate(texts)]
    for path, per_row in todo + [(FieldPath(p), r) for p, r in sorted((field_redactions or {}).items())]:
        if any(row0 <= r < row0 + n for r in per_row):
            rb = path.replace(rb, lambda values, per_row=per_row: _redact_values(values, row0, per_row))
    mask = np.zeros(n, dtype=bool)
    upto = min(len(keep), row0 + n)
    if upto > row0:
        mask[:upto - row0] = keep[row0:upto]
    return rb.filter(pa.array(mask, pa.bool_()))
