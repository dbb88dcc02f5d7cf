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


def to_docs(rb: pa.RecordBatch, row0: int, rel: str, paths: SpecPaths, batch_docs: int, batch_bytes: int,
            where: str) -> tuple[list[DocBatch], list[BadRecord]]:
    """One record batch (rows ``row0``...) -> bounded DocBatches + bad records. ``where`` names the
    place (record batch, row group) in details."""
    n = rb.num_rows
    bad: list[BadRecord] = []
    if n == 0:
        return [], bad
    tf = paths.text.path
    col = paths.text.column(rb)
    if col is None:
        detail = f"{where}: {paths.text.missing_in(rb.schema)}"
        return [], [BadRecord(row0 + k, "missing_text", detail) for k in range(n)]
    col = _decoded(col)
    idc = paths.id.column(rb)
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
    if col.null_count:
        keep = col.is_valid().to_numpy(zero_copy_only=False)
        for r in rows[~keep].tolist():
            bad.append(BadRecord(r, "missing_text", f"{where}, row {r}: {tf!r} is null"))
        idx = np.flatnonzero(keep)
        col, rows = col.take(idx), rows[idx]
        idc = idc.take(idx) if idc is not None else None
        extra = [(name, c.take(idx) if c is not None else None) for name, c in extra]
    texts, ok = _texts(col, rows, bad)
    ids = _ids(idc) if idc is not None else None
    values = {name: c.to_pylist() if c is not None else [None] * len(col) for name, c in extra}
    if not ok.all():
        idx = np.flatnonzero(ok)
        col, rows = col.take(idx), rows[idx]
        picked = idx.tolist()
        ids = [ids[k] for k in picked] if ids is not None else None
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
                                {name: v[start:end] for name, v in values.items()}))
        start = end
    return batches, bad


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
                  text: FieldPath, field_redactions: Mapping[str, Redactions] | None = None) -> pa.RecordBatch:
    """The rows of one record batch that ``keep`` keeps, texts at ``text`` redacted (and the
    string values at the paths of ``field_redactions``), schema unchanged."""
    n = rb.num_rows
    for path, per_row in [(text, redactions)] + [(FieldPath(p), r) for p, r in sorted((field_redactions or {}).items())]:
        if any(row0 <= r < row0 + n for r in per_row):
            rb = path.replace(rb, lambda values, per_row=per_row: _redact_values(values, row0, per_row))
    mask = np.zeros(n, dtype=bool)
    upto = min(len(keep), row0 + n)
    if upto > row0:
        mask[:upto - row0] = keep[row0:upto]
    return rb.filter(pa.array(mask, pa.bool_()))
