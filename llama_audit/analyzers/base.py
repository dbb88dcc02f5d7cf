"""The analyzer contract: what every analyzer (built-in or third-party) provides.

An analyzer sees a whole :class:`DocBatch` at a time (so GPU analyzers can batch), returns
Arrow columns aligned with the batch, and folds those columns into additive integer counts.
Because partials are plain counts, a corpus summary is the sum of its shards' partials, in any
order, on any number of machines.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections import Counter
from typing import Any, ClassVar, Iterable, Mapping

import numpy as np
import pyarrow as pa

from llama_audit.analyzers.options import AnalyzerOptions, build, option, to_config  # noqa: F401 - for analyzers
from llama_audit.report.section import (DisplayTable, FigurePanel, FigureSeries, FigureSpec,  # noqa: F401 - for plugins
                                         ReportContext, section_counts)
from llama_audit.review_samples import ReviewSample, stable_order  # noqa: F401 - for plugins
from llama_audit.types import AnalyzerUnavailable, ConfigError, Counts, DocBatch  # noqa: F401 - re-exported for plugins

@dataclasses.dataclass
class BatchContext:
    """What an analyzer may read besides the texts.

    ``in_scope``: the language gate (True = document is in the selected languages).
    ``columns``: annotation columns produced earlier in this batch by the analyzers it requires.
    """

    in_scope: np.ndarray  # bool, len == len(batch)
    columns: dict[str, pa.Array]


@dataclasses.dataclass(frozen=True)
class Resources:
    """What one analyzer wants from the machine. The core schedules by this declaration (batch
    sizes, GPUs per worker or Ray task), never by an analyzer's name."""

    cpus: float = 1.0  # cores one instance keeps busy
    gpus: float = 0.0  # GPUs one instance uses when it runs here (0: none, or none available)
    batch_docs: int = 1024  # documents per batch it works best with
    batch_bytes: int = 4 << 20  # text bytes per batch it works best with
    memory_per_batch: int = 0  # working memory per batch beyond the batch itself (bytes, estimate)


class Analyzer(ABC):
    """One pluggable unit of the audit.

    Subclasses set ``name`` (the ``--analyzers`` name), ``requires`` (names of analyzers whose
    columns they read, run first), ``scoped`` (True: only in-scope documents are analysed;
    out-of-scope rows get nulls/empties and are not counted) and, when they take options,
    ``Options`` (a frozen dataclass of :func:`~llama_audit.analyzers.options.option` fields).

    Capabilities the core reads instead of names: ``scope_column`` (this analyzer provides the
    language scope gate: the annotation column compared with ``--languages``, and
    :meth:`scope_labels`), :meth:`resources`, :meth:`overlaps`, :meth:`input_fields`,
    :meth:`worker_options`, :meth:`stats`.
    """

    name: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()
    #: report sections this one shows when their analyzers ran (in ``ReportContext.required``, built
    #: first), without making them run as ``requires`` would (ToxiGen's Table 11 row shows TruthfulQA)
    reads_sections: ClassVar[tuple[str, ...]] = ()
    scoped: ClassVar[bool] = False
    Options: ClassVar[type[AnalyzerOptions]] = AnalyzerOptions
    #: report-time options (chosen when rendering, e.g. how many rows a table shows)
    ReportOptions: ClassVar[type[AnalyzerOptions]] = AnalyzerOptions
    #: set by the analyzer that provides the language scope gate: its column of labels
    scope_column: ClassVar[str | None] = None

    def __init__(self, options: AnalyzerOptions | Mapping[str, Any] | None = None):
        if options is None or isinstance(options, Mapping):
            options = self.options_from(options)
        self.options = options

    @classmethod
    def options_from(cls, given: Mapping[str, Any] | None = None) -> AnalyzerOptions:
        """Typed, validated options from ``{key: value}`` (text or typed values)."""
        return build(cls.Options, cls.name, given)

    @classmethod
    def unavailable_reason(cls, options: AnalyzerOptions) -> str | None:
        """Why this analyzer cannot run here (missing extra or model), or None. Must be cheap.
        A reason skips the analyzer in the default set (with a warning). Raise ConfigError instead
        when the options name something that cannot be used (a model path the user gave): naming
        it asks for the analyzer, so that is an error even in the default set."""
        return None

    @classmethod
    def worker_options(cls, options: AnalyzerOptions, index: int, workers: int) -> AnalyzerOptions:
        """The options of local worker process ``index`` of ``workers``: how N copies of this
        analyzer share one machine (a GPU each, a share of the cores). Default: unchanged."""
        return options

    def resources(self) -> Resources:
        """What this instance wants from the machine (asked after ``__init__``, before setup)."""
        return Resources()

    def input_fields(self) -> tuple[str, ...]:
        """Record field paths (``meta.source``) this analyzer reads from ``DocBatch.fields``."""
        return ()

    def scope_labels(self) -> set[str]:
        """For the scope provider: every label its ``scope_column`` can hold (to check
        ``--languages`` before reading). May load the model."""
        raise NotImplementedError(f"analyzer {self.name!r} provides no scope gate")

    def setup(self) -> None:
        """Load models etc. Called once per worker process before the first batch."""

    def overlaps(self) -> bool:
        """True: ``annotate`` may run in a background thread after the other analyzers, while the
        scan reads and analyzes the next batch (a GPU model). Asked after ``setup()``."""
        return False

    # -- two stages (optional): CPU work and accelerator work in different processes --------------
    # A GPU model's batch is CPU work (splitting, tokenising) then device work (the forward). A
    # cluster pipeline (``scan --executor ray``, llama_audit/executors/ray_data.py) runs the first
    # in CPU tasks and the second in a pool of GPU actors, so the GPU never waits for the CPU (the
    # split NeMo Curator makes between its tokenizer and model stages). An analyzer that sets
    # ``staged`` promises, for every shard's batches in order:
    # ``annotate(b, ctx) == finish(b, ctx, infer(prepare(b, ctx)))``, with ``prepare`` and
    # ``finish`` called in the same process in batch order (per-shard state, e.g. a duplicate-line
    # cache, lives there) and ``infer`` in any process, in any order (it holds the model only).

    #: True: :meth:`prepare`, :meth:`infer` and :meth:`finish` are implemented (see above)
    staged: ClassVar[bool] = False

    def setup_prepare(self) -> None:
        """Load what :meth:`prepare` and :meth:`finish` need (a tokenizer), never the model."""

    def prepare(self, batch: DocBatch, ctx: BatchContext) -> Any:
        """CPU stage: a picklable payload for :meth:`infer`."""
        raise NotImplementedError(f"analyzer {self.name!r} is not staged")

    def infer(self, payload: Any) -> Any:
        """Accelerator stage (after :meth:`setup`): the payload with the model's outputs."""
        raise NotImplementedError(f"analyzer {self.name!r} is not staged")

    def finish(self, batch: DocBatch, ctx: BatchContext, payload: Any) -> dict[str, pa.Array]:
        """CPU stage: the columns :meth:`annotate` returns, from the inferred payload."""
        raise NotImplementedError(f"analyzer {self.name!r} is not staged")

    def start_shard(self, key: str) -> None:
        """Called before each shard's first batch. State carried from shard to shard (caches) is
        reset here, so that a shard's output depends on the shard alone: on a rerun, a resume, or
        whichever worker scans it."""

    def config(self) -> dict[str, Any]:
        """Everything that changes this analyzer's output (recorded in the manifest and hashed).
        Default: its options."""
        return to_config(self.options)

    @abstractmethod
    def fields(self) -> list[pa.Field]:
        """The annotation columns this analyzer adds, in order."""

    @abstractmethod
    def annotate(self, batch: DocBatch, ctx: BatchContext) -> dict[str, pa.Array]:
        """Vectorised over the batch: one value per document for each field. Columns returned
        beyond :meth:`fields` reach :meth:`fold` and later analyzers' ``ctx.columns`` but are not
        written (e.g. counts of a second counting mode)."""

    @abstractmethod
    def fold(self, columns: Mapping[str, pa.Array], ctx: BatchContext) -> Counts:
        """Additive counts for this batch, computed from this analyzer's own columns."""

    def stats(self) -> dict[str, Any]:
        """Counters of this process's work (engine statistics) for the manifest's run record."""
        return {}

    # -- review samples (optional) ------------------------------------------------------------------
    # A few documents per counted group, kept so that a reviewer can read what was counted
    # (llama_audit/review_samples.py). The core keeps, per group, the ``limit`` candidates with the
    # smallest order key, per shard (OUT/samples/) and across shards (summary/samples.parquet),
    # and hands them to report_section as ``ctx.samples``.

    def review_sampling(self) -> Mapping[str, Any] | None:
        """None (the default): this analyzer keeps no review samples. Otherwise what it keeps them
        with, recorded in the scan's configuration (``config["review_samples"][name]``): ``limit``
        (samples kept per group, > 0) and whatever else changes the samples (e.g. the rules that
        mask personal data in them)."""
        return None

    def review_samples(self, batch: DocBatch, columns: Mapping[str, pa.Array],
                       ctx: BatchContext) -> Iterable[ReviewSample]:
        """Candidate samples of one batch, from the batch and this analyzer's own ``columns``
        (called after :meth:`fold`, only when :meth:`review_sampling` is not None). A payload
        references the document (shard, row) and must hold no personal data; make it a callable
        when it costs work: it is built only for candidates that are kept."""
        return ()

    # -- hand-off to cleaning pipelines (optional) -----------------------------------------------

    @classmethod
    def dolma_attributes(cls, columns: Mapping[str, pa.Array]) -> list[dict[str, list[list]]] | None:
        """This analyzer's dolma attributes (``llama-audit export dolma``, docs/outputs.md), one
        dict per annotation row: attribute name -> spans ``[[start, end, score], ...]`` in code-point
        offsets into the text, a document-level value as ``[[0, chars, value]]``. ``columns`` holds
        the shard's annotation columns (every analyzer's, plus ``doc_id``, ``row``, ``chars``). Names
        are made ``<export name>__<analyzer name>__<attribute>`` by the export, after dolma's
        tagger convention (allenai/dolma ``python/dolma/core/runtime.py``). None (the default): no
        attributes. Never put text from the document in a value: spans and scores only."""
        return None

    def close(self) -> None:
        """Release resources (GPU workers, threads)."""

    # -- report -----------------------------------------------------------------------------------
    # Each analyzer owns its section of ``llama-audit report``: the JSON from its merged counts, the
    # tables of the human formats (terminal, markdown, html) and the rows of the long CSV. The
    # report runs from the summary counts without instantiating analyzers (no model is loaded), so
    # these are class methods; what they see besides the counts is a ReportContext (its recorded
    # config, the corpus section, its ``ReportOptions`` instance, the paper's numbers).
    # The defaults show a plugin's counts as they are, in every format, with no extra code.

    #: ``(documents, flagged documents, what is flagged)``: two of this analyzer's count keys and a
    #: label, by which ``report --top-hosts`` ranks the groups of a scan (the density of flagged
    #: documents per host: the sites a cleaning job drops whole, as the Llama 2 paper did). None: it ranks nothing.
    density_counts: ClassVar[tuple[str, str, str] | None] = None
    #: the key of this analyzer's section in the report JSON (None: its ``name``)
    report_key: ClassVar[str | None] = None
    #: the position of its section in the human formats, smallest first (built-ins: 10 to 50)
    report_order: ClassVar[int] = 1000

    @classmethod
    def report_json_key(cls) -> str:
        return cls.report_key or cls.name

    @classmethod
    def report_section(cls, counts: Counter, ctx: ReportContext) -> dict:
        """This analyzer's section of the report JSON, from its merged counts.
        Default: ``{"counts": {key: value, ...}}``, sorted by key."""
        return {"counts": dict(sorted(counts.items()))}

    @classmethod
    def report_tables(cls, section: dict, ctx: ReportContext) -> list[DisplayTable]:
        """The tables the human formats draw from the section. Default: one (count, value) table
        titled with the analyzer's name."""
        rows = [[key, value] for key, value in section_counts(section).items()]
        return [DisplayTable(cls.report_json_key(), cls.name, ["count", "value"], rows)]

    @classmethod
    def report_csv(cls, section: dict, ctx: ReportContext) -> list[list]:
        """Rows of the long CSV (``table, group, label, documents, pct, matches``). Default: one row
        per count, its value in the ``documents`` column (the CSV's count column)."""
        return [[cls.report_json_key(), "", key, value, "", ""] for key, value in section_counts(section).items()]

    @classmethod
    def report_figures(cls, section: dict, ctx: ReportContext) -> list[FigureSpec]:
        """The figures of this section, as plain data (:class:`FigureSpec`: histogram or bars,
        series, intervals, reference markers, log axis, caption); the report draws them with
        matplotlib when it is installed (written as SVG and PNG, shown in HTML under this section's
        tables). ``ctx.paper`` holds the paper's numbers unless ``--no-paper``. Default: none."""
        return []

    @classmethod
    def scan_warnings(cls, counts: Counter) -> list[str]:
        """One-line warnings about the scanned data from this analyzer's counts merged over the
        OUT's done shards (e.g. how many document ids hold personal data), printed once at the end
        of a scan. Counts and names only, never a value from the data. Default: none."""
        return []
