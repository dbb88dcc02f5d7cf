"""The ``toxicity`` analyzer: HateBERT-ToxiGen line scores averaged per document (Llama 2, Fig. 13).

Importing this module is cheap: torch and transformers are imported by :meth:`setup` only.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pyarrow as pa

from llama_audit.analyzers.base import (Analyzer, AnalyzerUnavailable, BatchContext, ConfigError, Counts,
                                        DocBatch, ScanOptions)
from llama_audit.analyzers.toxicity import model as _model
from llama_audit.analyzers.toxicity.lines import split_documents, segment_stats
from llama_audit.analyzers.toxicity.sampling import sample_mask
from llama_audit.analyzers.toxicity.selftest import run_self_test, self_test_spec
from llama_audit.analyzers.toxicity.summary import fold_scores

FIELDS = (
    pa.field("toxicity_mean", pa.float32()),  # mean of line scores; null when unscored
    pa.field("toxicity_lines", pa.int32()),  # lines scored; null when unscored
    pa.field("toxicity_max", pa.float32()),  # highest line score
    pa.field("toxicity_frac_ge_0_5", pa.float32()),  # share of lines scoring >= 0.5
)
MAX_LENGTH = 512
LINE_RULE = ("split on \\n; lines stripped of whitespace and invisible format characters; "
             "lines with a character other than whitespace, U+FFFD and categories C* scored")


class ToxicityAnalyzer(Analyzer):
    """Options: ``toxicity_model``, ``toxicity_revision``, ``toxicity_tokenizer``, ``toxicity_sample``,
    ``toxicity_batch_tokens``, ``device``, ``seed``; and in ``extra``: ``toxicity_self_test``
    (True | False | {"toxic", "benign", "margin"}), ``toxicity_label_index`` (1),
    ``toxicity_precision`` (auto | fp32 | bf16 | fp16), ``toxicity_forward`` (auto | packed |
    transformers), ``toxicity_cache_lines`` (500000),
    ``toxicity_threads`` (CPU threads)."""

    name = "toxicity"
    requires = ()
    scoped = True

    def __init__(self, options: ScanOptions):
        super().__init__(options)
        rate = float(options.toxicity_sample)
        if not 0.0 <= rate <= 1.0:
            raise ConfigError(f"--toxicity-sample {rate}: expected a fraction between 0 and 1")
        bt = options.toxicity_batch_tokens
        if bt is not None and (isinstance(bt, bool) or not isinstance(bt, int) or bt < 1):
            raise ConfigError(f"--toxicity-batch-tokens {bt!r}: expected a positive number of tokens")
        self_test_spec(options.extra.get("toxicity_self_test", True))  # validate early
        self._engine = None
        self._closed = False
        self._self_test: dict | None = None
        self._sha: dict | None = None

    # -- availability and configuration -------------------------------------------------------

    @classmethod
    def unavailable_reason(cls, options: ScanOptions) -> str | None:
        missing = _model.missing_extras()
        if missing:
            return f"toxicity needs {', '.join(missing)} (not installed); install with: {_model.EXTRA_FIX}"
        try:
            cls._locate(options)
        except AnalyzerUnavailable as exc:
            return str(exc)
        return None

    @staticmethod
    def _locate(options: ScanOptions) -> tuple[_model.Located, _model.Located]:
        m = _model.locate(options.toxicity_model, options.toxicity_revision, kind="model", option="--toxicity-model")
        t = _model.locate(options.toxicity_tokenizer, None, kind="tokenizer", option="--toxicity-tokenizer")
        return m, t

    @property
    def label_index(self) -> int:
        return int(self.options.extra.get("toxicity_label_index", 1))

    def config(self) -> dict[str, Any]:
        o = self.options
        try:
            m, t = self._locate(o)
        except AnalyzerUnavailable:
            m = t = None
        if self._sha is None and m is not None and t is not None:
            self._sha = {"model": _model.files_sha256(m, "model"),
                         "tokenizer": _model.files_sha256(t, "tokenizer")}
        # whether the self-test runs; its result is in stats() (the manifest's run record)
        self_test = "off" if self_test_spec(o.extra.get("toxicity_self_test", True)) is None else "on"
        return {
            "model": o.toxicity_model,
            "revision": o.toxicity_revision,
            "model_commit": m.revision if m else None,
            "tokenizer": o.toxicity_tokenizer,
            "tokenizer_commit": t.revision if t else None,
            "sha256": self._sha,
            "label_index": self.label_index,
            "max_length": MAX_LENGTH,
            "lines": LINE_RULE,
            "sample_rate": float(o.toxicity_sample),
            "seed": int(o.seed),
            "precision": str(o.extra.get("toxicity_precision", "auto")),
            "batch_tokens": o.toxicity_batch_tokens,
            "forward": str(o.extra.get("toxicity_forward", "auto")),
            "self_test": self_test,
        }

    # -- lifecycle ------------------------------------------------------------------------------

    def setup(self) -> None:
        self._closed = False
        if self._engine is not None:
            return
        _model.require_extras()
        m, t = self._locate(self.options)
        from llama_audit.analyzers.toxicity.engine import ToxicityEngine

        model = _model.load_model(m)
        tok = _model.load_tokenizer(t)
        _model.check_pair(model, tok, m.spec, t.spec)
        x = self.options.extra
        engine = ToxicityEngine(
            model, tok, device=self.options.device, label_index=self.label_index,
            max_length=_model.max_length(model, tok, MAX_LENGTH),
            batch_tokens=self.options.toxicity_batch_tokens,
            cache_lines=int(x.get("toxicity_cache_lines", 500_000)),
            precision=str(x.get("toxicity_precision", "auto")),
            threads=x.get("toxicity_threads"),
            forward=str(x.get("toxicity_forward", "auto")))
        try:
            self._self_test = run_self_test(engine.score, x.get("toxicity_self_test", True),
                                            model=m.spec, label_index=self.label_index)
        except Exception:
            engine.close()
            raise
        engine.cache.clear()
        engine.reset_stats()
        self._engine = engine

    def overlaps(self) -> bool:
        """On a GPU, score batch i while the CPU reads and analyzes batch i+1 (extra
        ``toxicity_overlap``: None = on a GPU only, True/False to force)."""
        forced = self.options.extra.get("toxicity_overlap")
        if forced is not None:
            return bool(forced)
        return self._engine is not None and self._engine.cuda

    def start_shard(self, key: str) -> None:
        """A fresh duplicate-line cache per shard: a cached score comes from whichever batch first
        held the line, and batched float arithmetic differs in the last bits from batch to batch."""
        if self._engine is not None:
            self._engine.cache.clear()

    def close(self) -> None:
        self._closed = True
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def stats(self) -> dict[str, Any]:
        """Engine statistics for the manifest (lines, tokens, padding waste, cache hit rate...)."""
        d = self._engine.stats() if self._engine is not None else {}
        d["self_test"] = self._self_test
        return d

    # -- per batch -----------------------------------------------------------------------------

    def fields(self) -> list[pa.Field]:
        return list(FIELDS)

    def annotate(self, batch: DocBatch, ctx: BatchContext) -> dict[str, pa.Array]:
        n = len(batch)
        in_scope = np.ones(n, dtype=bool) if ctx.in_scope is None else np.asarray(ctx.in_scope, dtype=bool)
        selected = in_scope & sample_mask(batch.doc_ids, self.options.seed, self.options.toxicity_sample)
        idx = np.flatnonzero(selected)
        mean = np.full(n, np.nan)
        mx = np.full(n, np.nan)
        frac = np.full(n, np.nan)
        count = np.zeros(n, dtype=np.int64)
        if len(idx):
            lines, counts = split_documents(batch.texts[i] for i in idx)
            if lines:
                engine = self._engine
                if engine is None:
                    if self._closed:  # e.g. a batch still in the background after Ctrl-C: no reload
                        raise RuntimeError("toxicity analyzer is closed")
                    self.setup()
                    engine = self._engine
                scores = engine.score(lines)
                mean[idx], mx[idx], frac[idx] = segment_stats(scores, counts)
                count[idx] = counts
        null = np.isnan(mean)
        return {
            "toxicity_mean": pa.array(mean.astype(np.float32), mask=null, type=pa.float32()),
            "toxicity_lines": pa.array(count.astype(np.int32), mask=null, type=pa.int32()),
            "toxicity_max": pa.array(mx.astype(np.float32), mask=null, type=pa.float32()),
            "toxicity_frac_ge_0_5": pa.array(frac.astype(np.float32), mask=null, type=pa.float32()),
        }

    def fold(self, columns: Mapping[str, pa.Array], ctx: BatchContext) -> Counts:
        def arr(name: str, dtype) -> np.ndarray:
            col = columns[name]
            if isinstance(col, pa.ChunkedArray):
                col = col.combine_chunks()
            return np.asarray(col.to_numpy(zero_copy_only=False), dtype=dtype)

        return fold_scores(arr("toxicity_mean", np.float64), arr("toxicity_lines", np.float64),
                           arr("toxicity_frac_ge_0_5", np.float64))
