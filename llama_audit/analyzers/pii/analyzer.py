"""``pii`` analyzer: typed PII spans per document and additive counts per type.

Columns (see docs/pii.md):

* ``pii_spans``: ``list<struct<type: string, start: int64, end: int64>>``, code-point offsets into
  the document text, sorted by start, overlaps resolved. Never the matched values.
* ``pii_count``: ``int32``, the number of spans that are PII, i.e. all spans except
  ``IP_ADDRESS_PRIVATE`` (private/reserved addresses are listed for redaction but not counted).

Counts from :meth:`PiiAnalyzer.fold`: ``documents``, ``documents_with_pii`` (``pii_count > 0``),
and for every span type T that occurred, ``matches/T`` and ``documents/T``
(T includes ``IP_ADDRESS_PRIVATE``).

PII outside the text (docs/pii.md, "Other fields and ids"): document ids go verbatim into every
output and are never rewritten (they join annotations to records), so each id is scanned too and
``documents_with_pii_in_id`` / ``id/documents/T`` count the documents whose id holds PII; the
scan warns with those counts (:meth:`PiiAnalyzer.scan_warnings`). With ``--pii-fields`` the string
values at further dotted paths are scanned into the extra column

* ``pii_field_spans``: ``list<struct<field: string, type: string, start: int64, end: int64>>``,
  code-point offsets into the string value at dotted path ``field`` of the record (what
  ``filter --redact pii`` rewrites), in the order of ``--pii-fields``, then by start,

counted as ``fields/documents_with_pii``, ``fields/matches/T``, ``fields/documents/T``,
``fields/documents_with_pii/PATH``, ``fields/not_text/PATH`` (a number, list, object or bool there:
not scanned) and ``fields/absent/PATH`` (missing or null). Without ``--pii-fields`` the column,
these keys and ``config()`` are exactly what they were before fields existed.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc

import dataclasses

from llama_audit.analyzers.base import Analyzer, AnalyzerOptions, BatchContext, ConfigError, Counts, DocBatch, option
from llama_audit.analyzers.pii.detector import NOT_PII, RULES_VERSION, PiiDetector, normalize_types
from llama_audit.analyzers.pii.report import (FIELDS_ABSENT, FIELDS_DOCUMENTS, FIELDS_DOCUMENTS_WITH_PII,
                                              FIELDS_MATCHES, FIELDS_NOT_TEXT, ID_DOCUMENTS, ID_DOCUMENTS_WITH_PII,
                                              PiiReport)

SPAN_STRUCT = pa.struct([("type", pa.string()), ("start", pa.int64()), ("end", pa.int64())])
SPANS_TYPE = pa.list_(SPAN_STRUCT)
FIELD_SPANS_COLUMN = "pii_field_spans"
FIELD_SPAN_STRUCT = pa.struct([("field", pa.string()), ("type", pa.string()), ("start", pa.int64()),
                               ("end", pa.int64())])
FIELD_SPANS_TYPE = pa.list_(FIELD_SPAN_STRUCT)


# Types not looked for in document ids: ids are mostly numbers (counters, hashes, UUIDs), where these
# two validators cannot tell an id from personal data (a 10-digit id is a valid US phone number;
# one in ten 16-digit ids passes Luhn with an issuer prefix), and they are the costly ones on digits.
NOT_LOOKED_FOR_IN_IDS = ("PHONE_NUMBER", "CREDIT_CARD")


class PiiDetectionError(RuntimeError):
    """A detector failed. The message names the shard and row, never any text."""


def _malformed_path(paths: Sequence[str]) -> str | None:
    """Why one of ``paths`` is not a dotted field path (an empty name between dots), or None."""
    for path in paths:
        if any(not part for part in path.split(".")):
            return f"takes dotted paths of record fields such as meta.author (an empty name in {path!r})"
    return None


@dataclasses.dataclass(frozen=True)
class PiiOptions(AnalyzerOptions):
    types: tuple[str, ...] | None = option(None, "Comma-separated PII types (default: all).", flag="--pii-types")
    region: str = option("US", "Default region for phone numbers without a leading +.", flag="--pii-region")
    fields: tuple[str, ...] = option(
        (), "Further record fields (dotted paths, e.g. meta.author) whose string values are scanned for PII "
        "into pii_field_spans (default: the text only; ids are always checked, never rewritten).",
        flag="--pii-fields", check=_malformed_path, metavar="FIELD,...")

    def validate(self) -> None:
        try:
            normalize_types(self.types)
        except ValueError as exc:
            raise ConfigError(f"--pii-types: {exc}") from None
        if (self.region or "US").upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ConfigError(f"--pii-region: unknown region {self.region!r}; "
                              "use a two-letter ISO 3166 code such as US, GB, DE")


class PiiAnalyzer(PiiReport, Analyzer):  # its report section: pii/report.py
    name = "pii"
    scoped = False  # every document, whatever its language
    density_counts = ("documents", "documents_with_pii", "PII")  # report --top-hosts: sites dense in personal data
    Options = PiiOptions

    def __init__(self, options=None):
        super().__init__(options)
        self.types = normalize_types(self.options.types)
        self.region = (self.options.region or "US").upper()
        self.field_paths: tuple[str, ...] = tuple(dict.fromkeys(self.options.fields or ()))
        self._detector: PiiDetector | None = None
        self._id_detector: PiiDetector | None = None
        # Counts annotate() computes from what is not in the columns (the ids; field values that
        # are absent or not text), for the fold() of the columns it returned: (their pii_spans, counts).
        self._side_counts: tuple[pa.Array, Counts] | None = None

    def __repr__(self) -> str:
        return f"PiiAnalyzer(types={self.types!r}, region={self.region!r})"

    @property
    def detector(self) -> PiiDetector:
        if self._detector is None:
            self._detector = PiiDetector(self.types, self.region)
        return self._detector

    @property
    def id_detector(self) -> PiiDetector | None:
        """The detector run over document ids: the selected types but :data:`NOT_LOOKED_FOR_IN_IDS`
        (None when nothing is left to look for)."""
        id_types = [t for t in self.types if t not in NOT_LOOKED_FOR_IN_IDS]
        if self._id_detector is None and id_types:
            self._id_detector = PiiDetector(id_types, self.region)
        return self._id_detector

    def setup(self) -> None:
        self.detector  # noqa: B018 - compile patterns once per worker
        self.id_detector  # noqa: B018

    def config(self) -> dict[str, Any]:
        config = {
            "types": list(self.types),
            "region": self.region,
            "rules_version": RULES_VERSION,
            "phonenumbers": phonenumbers.__version__,
        }
        if self.field_paths:  # only then: a default scan's configuration lock stays what it was
            config["fields"] = list(self.field_paths)
        return config

    def input_fields(self) -> tuple[str, ...]:
        """The ``--pii-fields`` paths: the reader projects their values into ``DocBatch.fields``."""
        return self.field_paths

    @classmethod
    def dolma_attributes(cls, columns: Mapping[str, pa.Array]) -> list[dict[str, list[list]]] | None:
        """``<TYPE>`` (``EMAIL_ADDRESS``, ...): the spans of that type, ``[[start, end, 1.0], ...]``
        in code-point offsets into the text (what dolma's ``span_replacement`` walks: Rust
        ``char_indices``), never the values; ``doc_count``: ``[[0, chars, pii_count]]``. Spans in
        other fields (``--pii-fields``) are not exported: dolma replaces spans in ``text`` only."""
        if "pii_spans" not in columns:
            return None
        rows = []
        for spans, count, n in zip(columns["pii_spans"].to_pylist(), columns["pii_count"].to_pylist(),
                                   columns["chars"].to_pylist()):
            attrs: dict[str, list[list]] = {}
            for s in spans or ():
                attrs.setdefault(s["type"], []).append([s["start"], s["end"], 1.0])
            attrs["doc_count"] = [[0, n, float(count or 0)]]
            rows.append(attrs)
        return rows

    def fields(self) -> list[pa.Field]:
        columns = [pa.field("pii_spans", SPANS_TYPE), pa.field("pii_count", pa.int32())]
        if self.field_paths:
            columns.append(pa.field(FIELD_SPANS_COLUMN, FIELD_SPANS_TYPE))
        return columns

    def annotate(self, batch: DocBatch, ctx: BatchContext) -> dict[str, pa.Array]:
        try:
            per_doc = self.detector.detect_batch(batch.texts)
            ids = self.id_detector
            side = fold_id_spans(ids.detect_sparse(batch.doc_ids).values()) if ids is not None else Counter()
            if self.field_paths:
                field_spans, field_side = self._detect_fields(batch)
                side.update(field_side)
        except Exception:
            # Re-raised without the original exception attached: its message or arguments
            # could quote document text.
            raise PiiDetectionError(
                f"PII detection failed in shard {batch.shard!r} (batch of {len(batch)} documents "
                f"starting at row {int(batch.rows[0]) if len(batch) else 0})"
            ) from None
        columns = spans_to_columns(per_doc)
        if self.field_paths:
            columns[FIELD_SPANS_COLUMN] = field_spans_to_column(field_spans)
        self._side_counts = (columns["pii_spans"], side)
        return columns

    def _detect_fields(self, batch: DocBatch) -> tuple[list[list[tuple[str, str, int, int]]], Counts]:
        """Spans in the string values at ``--pii-fields`` paths, per document, and the counts of
        values that were not scanned: absent or null, or not text (a number, list, object or bool:
        offsets into its JSON would locate nothing a redaction could rewrite)."""
        n = len(batch)
        per_doc: list[list[tuple[str, str, int, int]]] = [[] for _ in range(n)]
        side: Counts = Counter()
        for path in self.field_paths:
            values = batch.fields.get(path) or [None] * n
            rows = [i for i, v in enumerate(values) if type(v) is str]
            absent = sum(v is None for v in values)
            if absent:
                side[FIELDS_ABSENT + path] = absent
            if n - absent - len(rows):
                side[FIELDS_NOT_TEXT + path] = n - absent - len(rows)
            for k, spans in self.detector.detect_sparse([values[i] for i in rows]).items():
                per_doc[rows[k]].extend((path, t, a, b) for t, a, b in spans)
        return per_doc, side

    def fold(self, columns: Mapping[str, pa.Array], ctx: BatchContext) -> Counts:
        counts = fold_spans(columns["pii_spans"], columns["pii_count"])
        if FIELD_SPANS_COLUMN in columns:
            counts.update(fold_field_spans(columns[FIELD_SPANS_COLUMN]))
        side = self._side_counts
        if side is not None and side[0] is columns["pii_spans"]:  # the columns annotate() just returned
            counts.update(side[1])
            self._side_counts = None
        return counts


def spans_to_columns(per_doc: list[list[tuple[str, int, int]]]) -> dict[str, pa.Array]:
    lengths = np.fromiter((len(s) for s in per_doc), dtype=np.int64, count=len(per_doc))
    offsets = np.zeros(len(per_doc) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = [span for spans in per_doc for span in spans]
    types = pa.array([s[0] for s in flat], type=pa.string())
    starts = pa.array([s[1] for s in flat], type=pa.int64())
    ends = pa.array([s[2] for s in flat], type=pa.int64())
    values = pa.StructArray.from_arrays([types, starts, ends], fields=list(SPAN_STRUCT))
    spans = pa.ListArray.from_arrays(pa.array(offsets), values, type=SPANS_TYPE)
    counts = [sum(1 for s in spans_ if s[0] not in NOT_PII) for spans_ in per_doc]
    return {"pii_spans": spans, "pii_count": pa.array(counts, type=pa.int32())}


def fold_spans(spans: pa.Array, pii_count: pa.Array) -> Counts:
    """Additive counts for one batch of ``pii_spans`` / ``pii_count`` columns."""
    if isinstance(spans, pa.ChunkedArray):
        spans = spans.combine_chunks()
    if isinstance(pii_count, pa.ChunkedArray):
        pii_count = pii_count.combine_chunks()
    counts: Counts = Counter()
    counts["documents"] = len(spans)
    with_pii = int(pc.sum(pc.greater(pii_count.fill_null(0), 0)).as_py() or 0)
    if with_pii:
        counts["documents_with_pii"] = with_pii
    flat = pc.list_flatten(spans)
    if len(flat) == 0:
        return counts
    _count_types(spans, flat, counts, "matches/", "documents/")
    return counts


def _count_types(spans: pa.Array, flat: pa.Array, counts: Counts, matches_key: str,
                 documents_key: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Add per span type T ``matches_key + T`` (spans) and ``documents_key + T`` (documents with
    one) for a non-empty list<struct<type, ...>> column; returns (parent document per span, type
    names, type code per span) for further counts."""
    parents = pc.list_parent_indices(spans).to_numpy(zero_copy_only=False).astype(np.int64)
    types = pc.dictionary_encode(pc.struct_field(flat, "type"))
    names = types.dictionary.to_pylist()
    codes = types.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    matches = np.bincount(codes, minlength=len(names))
    documents = _documents_per_code(parents, codes, len(names))
    for k, name in enumerate(names):
        if matches[k]:
            counts[matches_key + name] = int(matches[k])
            counts[documents_key + name] = int(documents[k])
    return parents, names, codes


def field_spans_to_column(per_doc: list[list[tuple[str, str, int, int]]]) -> pa.Array:
    """The ``pii_field_spans`` column from ``(field, type, start, end)`` spans per document."""
    offsets = np.zeros(len(per_doc) + 1, dtype=np.int32)
    np.cumsum(np.fromiter((len(s) for s in per_doc), dtype=np.int64, count=len(per_doc)), out=offsets[1:])
    flat = [span for spans in per_doc for span in spans]
    members = [pa.array([s[k] for s in flat], type=f.type) for k, f in enumerate(FIELD_SPAN_STRUCT)]
    values = pa.StructArray.from_arrays(members, fields=list(FIELD_SPAN_STRUCT))
    return pa.ListArray.from_arrays(pa.array(offsets), values, type=FIELD_SPANS_TYPE)


def _documents_per_code(parents: np.ndarray, codes: np.ndarray, n_codes: int) -> np.ndarray:
    """How many distinct documents (``parents``) hold each code."""
    return np.bincount(np.unique(parents * n_codes + codes) % n_codes, minlength=n_codes)


def fold_field_spans(spans: pa.Array) -> Counts:
    """Additive counts of one batch's ``pii_field_spans``: per type (``fields/matches/T``,
    ``fields/documents/T``), documents with personal data in any field, and per field."""
    if isinstance(spans, pa.ChunkedArray):
        spans = spans.combine_chunks()
    counts: Counts = Counter()
    flat = pc.list_flatten(spans)
    if len(flat) == 0:
        return counts
    parents, type_names, type_codes = _count_types(spans, flat, counts, FIELDS_MATCHES, FIELDS_DOCUMENTS)
    personal = np.array([name not in NOT_PII for name in type_names], dtype=bool)[type_codes]
    if personal.any():
        counts[FIELDS_DOCUMENTS_WITH_PII] = int(np.unique(parents[personal]).size)
        fields = pc.dictionary_encode(pc.struct_field(flat, "field"))
        field_names = fields.dictionary.to_pylist()
        field_codes = fields.indices.to_numpy(zero_copy_only=False).astype(np.int64)[personal]
        per_field = _documents_per_code(parents[personal], field_codes, len(field_names))
        for k, name in enumerate(field_names):
            if per_field[k]:
                counts[FIELDS_DOCUMENTS_WITH_PII + "/" + name] = int(per_field[k])
    return counts


def fold_id_spans(per_id: Iterable[list[tuple[str, int, int]]]) -> Counts:
    """Counts of the documents whose id holds personal data, in all and per type (never the ids:
    they are not rewritten, so the scan can only say how many there are)."""
    counts: Counts = Counter()
    for spans in per_id:
        personal = {t for t, _, _ in spans if t not in NOT_PII}
        if personal:
            counts[ID_DOCUMENTS_WITH_PII] += 1
            for t in personal:
                counts[ID_DOCUMENTS + t] += 1
    return counts
