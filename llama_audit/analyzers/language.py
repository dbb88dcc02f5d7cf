"""Language identification (Llama 2 Table 10): fastText lid.176 on the whole document.

Newlines are replaced by spaces (fastText predicts one line at a time); the top-1 label is kept
when its probability reaches the threshold, else the document is ``unknown``. Empty and
whitespace-only documents are ``unknown`` with a null score.

Engines: ``FastLid`` (numpy re-implementation of fastText prediction with a per-word cache; same
labels, probabilities within ~1e-5, several times faster, see fastlid.py) runs by default; the
fastText C++ binding is the reference and the fallback for models FastLid does not handle.
"""

from __future__ import annotations

import os
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import dataclasses

from llama_audit.analyzers.base import Analyzer, AnalyzerOptions, BatchContext, option
from llama_audit.hashing import file_sha256
from llama_audit.report.section import (DisplayTable, FigurePanel, FigureSeries, FigureSpec, ReportContext, pct,
                                         pct_cell, wilson_ci95)
from llama_audit.types import AnalyzerUnavailable, DocBatch

EMBEDDED_MODEL = "lid.176.ftz"
EMBEDDED_SHA256 = "8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83"
UNKNOWN = "unknown"
FASTTEXT_LABEL_PREFIX = "__label__"
DOCUMENTS_PREFIX = "documents/"  # documents/<lang>: documents labelled lang
CHARS_PREFIX = "chars/"  # chars/<lang>: their characters
PAPER_TABLE = "table10_languages_pct_docs"  # the paper's Table 10 in the reference numbers
FIGURE_LANGUAGES = 20  # languages drawn in the report's figure besides unknown (the tables and CSV have all)


def embedded_model_path() -> Path:
    return Path(str(resources.files("llama_audit") / "models" / EMBEDDED_MODEL))


def model_sha256(path: Path) -> str:
    return file_sha256(path)


@dataclasses.dataclass(frozen=True)
class LanguageOptions(AnalyzerOptions):
    model: str | None = option(None, "Path to a fastText model (e.g. lid.176.bin); default: embedded lid.176.ftz.",
                               flag="--lid-model", metavar="PATH")
    threshold: float = option(0.5, "fastText probability below which a document is 'unknown'.",
                              flag="--lid-threshold",
                              check=lambda v: None if 0.0 <= v <= 1.0 else "must be between 0 and 1")
    engine: str = option("auto", "auto (fast numpy fastText, exact labels) | fastlid | fasttext (the C++ binding).",
                         flag="--lid-engine", choices=("auto", "fastlid", "fasttext"))


@dataclasses.dataclass(frozen=True)
class LanguageReportOptions(AnalyzerOptions):
    min_pct: float = option(0.005, "Smallest language share shown (Table 10), in percent.", flag="--min-pct",
                            check=lambda v: None if v >= 0 else "must be >= 0")


class LanguageAnalyzer(Analyzer):
    name = "language"
    Options = LanguageOptions
    scope_column = "lang"  # the language gate: --languages is compared with this column

    def __init__(self, options=None):
        super().__init__(options)
        self.model_path = Path(self.options.model) if self.options.model else embedded_model_path()
        self._model = None
        self._fast = None

    @classmethod
    def unavailable_reason(cls, options: LanguageOptions) -> str | None:
        path = Path(options.model) if options.model else embedded_model_path()
        if not path.is_file():
            return f"language model {path} not found (give --lid-model PATH to a fastText lid.176.bin/.ftz)"
        return None

    def config(self) -> dict:
        return {
            "model": self.model_path.name if not self.options.model else str(self.model_path),
            "model_sha256": model_sha256(self.model_path),
            "threshold": self.options.threshold,
            "engine": self.options.engine,
        }

    def setup(self) -> None:
        if self._model is not None or self._fast is not None:
            return
        if self.options.model is None and model_sha256(self.model_path) != EMBEDDED_SHA256:
            raise AnalyzerUnavailable(f"embedded {EMBEDDED_MODEL} is corrupt (sha256 mismatch); reinstall llama-audit")
        if self.options.engine in ("auto", "fastlid"):
            from llama_audit.analyzers.fastlid import FastLid

            try:
                self._fast = FastLid(self.model_path)
                return
            except ValueError as exc:
                if self.options.engine == "fastlid":
                    raise AnalyzerUnavailable(f"--lid-engine fastlid cannot load {self.model_path}: {exc}") from None
        try:
            import fasttext  # fasttext-numpy2 provides this module
        except ImportError:  # pragma: no cover - a core dependency
            raise AnalyzerUnavailable("fastText binding missing: pip install fasttext-numpy2") from None
        try:
            self._model = fasttext.load_model(os.fspath(self.model_path))
        except ValueError as exc:
            raise AnalyzerUnavailable(f"cannot load fastText model {self.model_path}: {exc}") from None

    def fields(self) -> list[pa.Field]:
        return [pa.field("lang", pa.string()), pa.field("lang_score", pa.float32())]

    @classmethod
    def dolma_attributes(cls, columns: Mapping[str, pa.Array]) -> list[dict[str, list[list]]] | None:
        """``<lang>``: ``[[0, chars, lang_score]]`` under the document's label (``unknown``
        included), so ``.attributes.X__language__en != null`` holds exactly where ``lang == 'en'``;
        score 0.0 where ours is null (an empty document)."""
        if "lang" not in columns:
            return None
        return [{lang: [[0, n, 0.0 if score is None else score]]}
                for lang, score, n in zip(columns["lang"].to_pylist(), columns["lang_score"].to_pylist(),
                                          columns["chars"].to_pylist())]

    def predict(self, texts: list[str]) -> tuple[list[str], np.ndarray]:
        """Labels (thresholded) and top-1 probabilities (NaN for empty documents)."""
        self.setup()
        n = len(texts)
        labels = [UNKNOWN] * n
        scores = np.full(n, np.nan, dtype=np.float32)
        idx = [i for i, t in enumerate(texts) if t and not t.isspace()]
        if not idx:
            return labels, scores
        # fastText reads one line; its own tokenizer already treats \r \t \v \f as spaces.
        # FastLid replaces the newlines itself, a bounded piece at a time (a 200 MB document is
        # never copied whole); the binding gets the replaced lines.
        threshold = self.options.threshold
        if self._fast is not None:
            fast_labels, fast_probs = self._fast.predict([texts[i] for i in idx], newlines_as_spaces=True)
            probs = np.minimum(fast_probs, 1.0)
            scores[idx] = probs
            for j, i in enumerate(idx):
                if fast_labels[j] and probs[j] >= threshold:
                    labels[i] = fast_labels[j]
            return labels, scores
        lines = [texts[i].replace("\n", " ") for i in idx]
        pred_labels, pred_probs = self._model.predict(lines, k=1, threshold=0.0)
        for j, i in enumerate(idx):
            if not pred_labels[j]:
                continue
            p = float(pred_probs[j][0])
            scores[i] = min(p, 1.0)  # fastText can return 1.00001
            if p >= threshold:
                labels[i] = pred_labels[j][0].removeprefix(FASTTEXT_LABEL_PREFIX)
        return labels, scores

    def scope_labels(self) -> set[str]:
        """Language codes the model can output (without ``__label__``)."""
        self.setup()
        labels = self._fast.labels if self._fast is not None else self._model.get_labels()
        return {lab.removeprefix(FASTTEXT_LABEL_PREFIX) for lab in labels}

    def stats(self) -> dict:
        if self._fast is None and self._model is None:
            return {}
        return self._fast.stats() if self._fast is not None else {"engine": "fasttext"}

    def annotate(self, batch: DocBatch, ctx: BatchContext) -> dict[str, pa.Array]:
        labels, scores = self.predict(batch.texts)
        return {
            "lang": pa.array(labels, pa.string()),
            "lang_score": pa.array(scores, pa.float32(), from_pandas=True),  # NaN -> null
        }

    def fold(self, columns: Mapping[str, pa.Array], ctx: BatchContext) -> Counter:
        out: Counter = Counter()
        lang = columns["lang"]
        vc = pc.value_counts(lang)
        for value, n in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()):
            out[DOCUMENTS_PREFIX + value] = n
        chars = ctx.columns.get("chars")
        if chars is not None:
            table = pa.table({"lang": lang, "chars": chars}).group_by("lang").aggregate([("chars", "sum")])
            for value, n in zip(table["lang"].to_pylist(), table["chars_sum"].to_pylist()):
                out[CHARS_PREFIX + value] = n
        return out

    # -- report (Table 10) ------------------------------------------------------------------------

    ReportOptions = LanguageReportOptions
    report_key = "languages"
    report_order = 30

    @classmethod
    def report_section(cls, counts: Counter, ctx: ReportContext) -> dict:
        """Table 10: every label (``unknown`` included), most documents first, as a share of all
        documents (the paper's Table 10 is of the whole corpus, not of the in-scope part), with its
        95% Wilson interval (``ci95``); with ``--paper``, the paper's share beside it (``paper_pct``)
        on the rows of the languages Table 10 lists."""
        total_docs = ctx.corpus["documents"]
        paper = ctx.paper_table(PAPER_TABLE)
        rows = sorted(((key.removeprefix(DOCUMENTS_PREFIX), v) for key, v in counts.items()
                       if key.startswith(DOCUMENTS_PREFIX)), key=lambda lv: (-lv[1], lv[0]))
        return {"threshold": ctx.config.get("threshold", LanguageOptions().threshold), "documents": total_docs,
                "rows": [{"lang": lang, "documents": v, "pct": pct(v, total_docs),
                          "ci95": wilson_ci95(v, total_docs), **ctx.paper_json(paper.get(lang)),
                          "chars": counts.get(CHARS_PREFIX + lang, 0)}
                         for lang, v in rows]}

    @classmethod
    def report_tables(cls, section: dict, ctx: ReportContext) -> list[DisplayTable]:
        """The languages at or above ``--min-pct`` percent of documents, like the paper's caption
        (the CSV has them all)."""
        min_pct = ctx.options.min_pct
        paper = ctx.paper_table(PAPER_TABLE)
        shown = [r for r in section["rows"] if r["pct"] >= min_pct]
        rows = [[r["lang"], pct_cell(r["pct"], r["ci95"]), r["documents"]] + ctx.paper_cells(paper.get(r["lang"]))
                for r in shown]
        return [DisplayTable(cls.report_json_key(), f"Table 10: languages (>= {min_pct}% of documents)",
                             ["language", "% (95% CI)", "documents"] + ctx.paper_heading(), rows,
                             f"fastText lid.176, threshold {section['threshold']}: below it a document is 'unknown'",
                             text_columns=("language",), row_documents=[r["documents"] for r in shown])]

    @classmethod
    def report_csv(cls, section: dict, ctx: ReportContext) -> list[list]:
        key = cls.report_json_key()
        paper = ctx.paper_table(PAPER_TABLE)
        return [[key, "", r["lang"], r["documents"], r["pct"], ""] + r["ci95"]
                + ctx.paper_csv_cells(paper.get(r["lang"])) for r in section["rows"]]

    @classmethod
    def report_figures(cls, section: dict, ctx: ReportContext) -> list[FigureSpec]:
        """Table 10 as bars on a log axis (English beside languages at 0.01%): the
        :data:`FIGURE_LANGUAGES` languages with most documents and ``unknown`` (however few: it is
        what the identifier could not tell), with their 95% intervals and the paper's shares as
        markers (unless ``--no-paper``)."""
        rows = [r for r in section["rows"] if r["lang"] != UNKNOWN][:FIGURE_LANGUAGES]
        rows += [r for r in section["rows"] if r["lang"] == UNKNOWN]
        if not rows:
            return []
        paper = ctx.paper_table(PAPER_TABLE)
        series = [FigureSeries("this corpus (95% CI)", tuple(r["pct"] for r in rows),
                               tuple(tuple(r["ci95"]) if r.get("ci95") else None for r in rows))]
        if ctx.paper is not None:
            series.append(FigureSeries("Llama 2 (Table 10)", tuple(paper.get(r["lang"]) for r in rows), style="markers"))
        others = len(section["rows"]) - len(rows)
        caption = (f"{section['documents']:,} documents; fastText lid.176 at threshold {section['threshold']} "
                   f"(below it: unknown)" + (f"; {others:,} more languages in the tables and CSV" if others else ""))
        panel = FigurePanel(tuple(series), categories=tuple(r["lang"] for r in rows), log_y=True,
                            y_label="% of documents (log)")
        return [FigureSpec(cls.report_json_key(), cls.report_json_key(), "bars",
                           "Languages (as Llama 2 Table 10)", caption, (panel,))]
