"""``pii`` analyzer: typed PII spans per document and additive counts per type.

Columns (see docs/pii.md):

* ``pii_spans``: ``list<struct<type: string, start: int64, end: int64>>``, code-point offsets into
  the document text, sorted by start, overlaps resolved. Never the matched values.
* ``pii_count``: ``int32``, the number of spans that are PII, i.e. all spans except
  ``IP_ADDRESS_PRIVATE`` (private/reserved addresses are listed for redaction but not counted).

Counts from :meth:`PiiAnalyzer.fold`: ``documents``, ``documents_with_pii`` (``pii_count > 0``),
and for every span type T that occurred, ``matches/T`` and ``documents/T``
(T includes ``IP_ADDRESS_PRIVATE``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc

import dataclasses

from llama_audit.analyzers.base import Analyzer, AnalyzerOptions, BatchContext, ConfigError, Counts, DocBatch, option
from llama_audit.analyzers.pii.detector import NOT_PII, RULES_VERSION, PiiDetector, normalize_types
from llama_audit.analyzers.pii.report import PiiReport

SPAN_STRUCT = pa.struct([("type", pa.string()), ("start", pa.int64()), ("end", pa.int64())])
SPANS_TYPE = pa.list_(SPAN_STRUCT)


class PiiDetectionError(RuntimeError):
    """A detector failed. The message names the shard and row, never any text."""


@dataclasses.dataclass(frozen=True)
class PiiOptions(AnalyzerOptions):
    types: tuple[str, ...] | None = option(None, "Comma-separated PII types (default: all).", flag="--pii-types")
    region: str = option("US", "Default region for phone numbers without a leading +.", flag="--pii-region")

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
    Options = PiiOptions

    def __init__(self, options=None):
        super().__init__(options)
        self.types = normalize_types(self.options.types)
        self.region = (self.options.region or "US").upper()
        self._detector: PiiDetector | None = None

    def __repr__(self) -> str:
        return f"PiiAnalyzer(types={self.types!r}, region={self.region!r})"

    @property
    def detector(self) -> PiiDetector:
        if self._detector is None:
            self._detector = PiiDetector(self.types, self.region)
        return self._detector

    def setup(self) -> None:
        self.detector  # noqa: B018 - compile patterns once per worker

    def config(self) -> dict[str, Any]:
        return {
            "types": list(self.types),
            "region": self.region,
            "rules_version": RULES_VERSION,
            "phonenumbers": phonenumbers.__version__,
        }

    def fields(self) -> list[pa.Field]:
        return [pa.field("pii_spans", SPANS_TYPE), pa.field("pii_count", pa.int32())]

    def annotate(self, batch: DocBatch, ctx: BatchContext) -> dict[str, pa.Array]:
        try:
            per_doc = self.detector.detect_batch(batch.texts)
        except Exception:
            # Re-raised without the original exception attached: its message or arguments
            # could quote document text.
            raise PiiDetectionError(
                f"PII detection failed in shard {batch.shard!r} (batch of {len(batch)} documents "
                f"starting at row {int(batch.rows[0]) if len(batch) else 0})"
            ) from None
        return spans_to_columns(per_doc)

    def fold(self, columns: Mapping[str, pa.Array], ctx: BatchContext) -> Counts:
        return fold_spans(columns["pii_spans"], columns["pii_count"])


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
    parents = pc.list_parent_indices(spans).to_numpy(zero_copy_only=False).astype(np.int64)
    encoded = pc.dictionary_encode(pc.struct_field(flat, "type"))
    names = encoded.dictionary.to_pylist()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    matches = np.bincount(codes, minlength=len(names))
    doc_type = np.unique(parents * len(names) + codes)
    documents = np.bincount(doc_type % len(names), minlength=len(names))
    for k, name in enumerate(names):
        if matches[k]:
            counts[f"matches/{name}"] = int(matches[k])
            counts[f"documents/{name}"] = int(documents[k])
    return counts
