"""The ``toxicity`` analyzer: HateBERT-ToxiGen line scores averaged per document (Llama 2, Fig. 13).

Importing this module is cheap: torch and transformers are imported by :meth:`setup` only.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

import numpy as np
import pyarrow as pa

from llama_audit.analyzers.base import (Analyzer, AnalyzerOptions, AnalyzerUnavailable, BatchContext, ConfigError,
                                        Counts, DocBatch, Resources, option)
from llama_audit.analyzers.toxicity import model as _model
from llama_audit.analyzers.toxicity.lines import split_documents, segment_stats
from llama_audit.analyzers.toxicity.report import ToxicityReport
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


@dataclasses.dataclass(frozen=True)
class ToxicityOptions(AnalyzerOptions):
    model: str = option(_model.DEFAULT_MODEL, "Toxicity model: hub id or local directory (one that cannot be found "
                        "is an error; the default missing skips toxicity).", flag="--toxicity-model")
    revision: str | None = option(None, "Hub revision of the toxicity model.", flag="--toxicity-revision")
    tokenizer: str = option(_model.DEFAULT_TOKENIZER, "Tokenizer: hub id or local directory.", flag="--toxicity-tokenizer")
    sample: float = option(1.0, "Fraction of in-scope documents scored (paper: 0.1), deterministic per id.",
                           flag="--toxicity-sample", check=lambda v: None if 0.0 < v <= 1.0 else "must be in (0, 1]")
    batch_tokens: int | None = option(
        None, "Padded tokens per model batch, >= 64 (default: 2048 on CPU, from free memory on GPU).",
        flag="--toxicity-batch-tokens", check=lambda v: None if v >= 64 else "must be >= 64")
    self_test: Any = option(True, "Check before scanning that toxic sentences outscore benign ones "
                            "(API: also a mapping {toxic, benign, margin}).",
                            flag="--toxicity-self-test/--no-toxicity-self-test")
    device: str = option("auto", "auto | cpu | cuda | cuda:N (toxicity).", flag="--device")
    seed: int = option(0, "Seed of the deterministic toxicity sample.", flag="--seed")
    label_index: int = option(1, "Index of the toxic label in the model's output.")
    precision: str = option("auto", "Model precision.", choices=("auto", "fp32", "bf16", "fp16"))
    forward: str = option("auto", "auto (packed BERT/RoBERTa forward, probed) | packed | transformers.",
                          choices=("auto", "packed", "transformers"))
    cache_lines: int = option(500_000, "Duplicate lines remembered per shard (0: no cache).",
                              check=lambda v: None if v >= 0 else "must be >= 0")
    threads: int | None = option(None, "CPU threads of torch (default: torch's).",
                                 check=lambda v: None if v >= 1 else "must be >= 1")
    overlap: bool | None = option(None, "Score batch i in the background while batch i+1 is read "
                                  "(default: on a GPU only).")

    def validate(self) -> None:
        self_test_spec(self.self_test)


def _named_flags(options: ToxicityOptions) -> list[str]:
    """The model-choosing flags given a value other than their default: naming a model asks for it."""
    named = []
    if options.model != _model.DEFAULT_MODEL:
        named.append("--toxicity-model")
    if options.revision is not None:
        named.append("--toxicity-revision")
    if options.tokenizer != _model.DEFAULT_TOKENIZER:
        named.append("--toxicity-tokenizer")
    return named


class ToxicityAnalyzer(ToxicityReport, Analyzer):  # its report section (Figure 13): toxicity/report.py
    name = "toxicity"
    requires = ()
    scoped = True
    Options = ToxicityOptions

    def __init__(self, options=None):
        super().__init__(options)
        self._engine = None
        self._closed = False
        self._self_test: dict | None = None
        self._sha: dict | None = None
        self._line_tokenizer = None  # staged: the CPU stage's tokenizer (setup_prepare)
        self._prepare_cache = None  # staged: the duplicate-line cache replayed on keys (prepare)...
        self._finish_cache = None  # ...and with the scores (finish)

    # -- availability and configuration -------------------------------------------------------

    @classmethod
    def unavailable_reason(cls, options: ToxicityOptions) -> str | None:
        """Why toxicity cannot run here (a reason to skip it in the default analyzer set), or None.

        A model, tokenizer or revision the user named (``--toxicity-model`` etc., any value other
        than the default) is a request for toxicity: when it cannot be found, or the extra it needs
        is not installed, that is a :class:`ConfigError` (exit 2 before any shard is read), never a
        warning that ends in a scan without toxicity."""
        named = _named_flags(options)
        missing = _model.missing_extras()
        if missing:
            reason = f"toxicity needs {', '.join(missing)} (not installed); install with: {_model.EXTRA_FIX}"
            if named:
                raise ConfigError(f"{' and '.join(named)} given, but {reason}")
            return reason
        try:
            if "--toxicity-tokenizer" in named:  # what the user named is checked first
                _model.locate(options.tokenizer, None, kind="tokenizer", option="--toxicity-tokenizer")
            cls._locate(options)
        except AnalyzerUnavailable as exc:
            if named:
                raise ConfigError(str(exc)) from None
            return str(exc)
        return None

    @staticmethod
    def _locate(options: ToxicityOptions) -> tuple[_model.Located, _model.Located]:
        m = _model.locate(options.model, options.revision, kind="model", option="--toxicity-model")
        t = _model.locate(options.tokenizer, None, kind="tokenizer", option="--toxicity-tokenizer")
        return m, t

    @classmethod
    def worker_options(cls, options: ToxicityOptions, index: int, workers: int) -> ToxicityOptions:
        """In one process the engine drives every visible GPU itself, or every core. N pool workers
        doing that would load N x #GPUs model replicas, or run N x #cores torch threads. So with
        GPUs (``--device auto|cuda``) worker k takes GPU ``k mod #GPUs``; on the CPU each worker
        gets ``#cores / N`` torch threads (unless ``OMP_NUM_THREADS`` or ``threads`` says)."""
        spec = (options.device or "auto").strip().lower()
        n_gpu = _model.cuda_device_count() if spec != "cpu" else 0
        if n_gpu and spec in ("auto", "cuda"):
            return dataclasses.replace(options, device=f"cuda:{index % n_gpu}")
        if n_gpu == 0 and options.threads is None and "OMP_NUM_THREADS" not in os.environ:
            return dataclasses.replace(options, threads=max(1, len(os.sched_getaffinity(0)) // max(1, workers)))
        return options

    def resources(self) -> Resources:
        """The model wants many lines per call (a large batch fills a GPU and the duplicate-line
        cache), and a GPU when one is here and ``--device`` allows it."""
        spec = (self.options.device or "auto").strip().lower()
        gpus = 1.0 if spec != "cpu" and _model.cuda_device_count() else 0.0
        return Resources(cpus=1.0, gpus=gpus, batch_docs=8192, batch_bytes=32 << 20)

    @property
    def label_index(self) -> int:
        return self.options.label_index

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
        self_test = "off" if self_test_spec(o.self_test) is None else "on"
        return {
            "model": o.model,
            "revision": o.revision,
            "model_commit": m.revision if m else None,
            "tokenizer": o.tokenizer,
            "tokenizer_commit": t.revision if t else None,
            "sha256": self._sha,
            "label_index": self.label_index,
            "max_length": MAX_LENGTH,
            "lines": LINE_RULE,
            "sample_rate": float(o.sample),
            "seed": int(o.seed),
            "precision": o.precision,
            "batch_tokens": o.batch_tokens,
            "forward": o.forward,
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
        o = self.options
        engine = ToxicityEngine(
            model, tok, device=o.device, label_index=self.label_index,
            max_length=_model.max_length(model, tok, MAX_LENGTH),
            batch_tokens=o.batch_tokens, cache_lines=o.cache_lines, precision=o.precision,
            threads=o.threads, forward=o.forward)
        try:
            self._self_test = run_self_test(engine.score, o.self_test,
                                            model=m.spec, label_index=self.label_index)
        except Exception:
            engine.close()
            raise
        engine.cache.clear()
        engine.reset_stats()
        self._engine = engine

    def overlaps(self) -> bool:
        """On a GPU, score batch i while the CPU reads and analyzes batch i+1 (option ``overlap``:
        None = on a GPU only, True/False to force)."""
        if self.options.overlap is not None:
            return self.options.overlap
        return self._engine is not None and self._engine.cuda

    def start_shard(self, key: str) -> None:
        """A fresh duplicate-line cache per shard: a cached score comes from whichever batch first
        held the line, and batched float arithmetic differs in the last bits from batch to batch."""
        if self._engine is not None:
            self._engine.cache.clear()
        for cache in (self._prepare_cache, self._finish_cache):
            if cache is not None:
                cache.clear()

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

    @classmethod
    def dolma_attributes(cls, columns: Mapping[str, pa.Array]) -> list[dict[str, list[list]]] | None:
        """``mean``, ``max``, ``frac_ge_0_5``, ``lines``: ``[[0, chars, value]]`` (the float32 value
        exactly, as a double, so a dolma threshold decides as ``filter`` does); nothing where the
        document was not scored."""
        if "toxicity_mean" not in columns:
            return None
        names = [f.name for f in FIELDS]
        values = [columns[name].to_pylist() for name in names]
        rows = []
        for i, n in enumerate(columns["chars"].to_pylist()):
            rows.append({name.removeprefix("toxicity_"): [[0, n, float(v[i])]]
                         for name, v in zip(names, values) if v[i] is not None})
        return rows

    def _selected(self, batch: DocBatch, ctx: BatchContext) -> np.ndarray:
        n = len(batch)
        in_scope = np.ones(n, dtype=bool) if ctx.in_scope is None else np.asarray(ctx.in_scope, dtype=bool)
        return np.flatnonzero(in_scope & sample_mask(batch.doc_ids, self.options.seed, self.options.sample))

    def annotate(self, batch: DocBatch, ctx: BatchContext) -> dict[str, pa.Array]:
        idx = self._selected(batch, ctx)
        scores = counts = None
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
        return _columns(len(batch), idx, scores, counts)

    # -- the same in two stages (Analyzer.staged): lines + tokens on a CPU, forward on the device -----
    # prepare() replays the engine's duplicate-line cache on line keys (which lines score() would
    # send to the model, in which order) and tokenizes those lines in the engine's chunks;
    # infer() runs the engine's windows and batches on them (score_tokenized); finish() replays the
    # cache with the scores. Same lines, same chunks, same windows, same batches: the same bits.

    staged = True

    def setup_prepare(self) -> None:
        if self._line_tokenizer is not None:
            return
        _model.require_extras()
        m, t = self._locate(self.options)
        from transformers import AutoConfig

        from llama_audit.analyzers.toxicity.tokens import LineTokenizer

        tok = _model.load_tokenizer(t)
        config = AutoConfig.from_pretrained(str(m.path), local_files_only=True, trust_remote_code=False)
        self._line_tokenizer = LineTokenizer(tok, _model.max_length(_ConfigOnly(config), tok, MAX_LENGTH))

    def _stage_caches(self):
        if self._prepare_cache is None:
            from llama_audit.analyzers.toxicity.tokens import LineCache

            self._prepare_cache = LineCache(self.options.cache_lines)
            self._finish_cache = LineCache(self.options.cache_lines)
        return self._prepare_cache, self._finish_cache

    def prepare(self, batch: DocBatch, ctx: BatchContext) -> dict[str, Any]:
        from llama_audit.analyzers.toxicity.tokens import line_key

        idx = self._selected(batch, ctx)
        lines, counts = split_documents(batch.texts[i] for i in idx) if len(idx) else ([], None)
        payload: dict[str, Any] = {"idx": idx, "counts": counts, "lines": len(lines), "keys": None, "slot": None,
                                   "unique": len(lines), "chunks": [], "scores": None}
        if not lines:
            return payload
        self.setup_prepare()
        uniq = lines
        if self.options.cache_lines > 0:  # engine.score's cache walk, on keys only
            cache, _ = self._stage_caches()
            keys = [line_key(line) for line in lines]
            slot = np.full(len(lines), -1, dtype=np.int64)
            first: dict[bytes, int] = {}
            uniq = []
            for i, k in enumerate(keys):
                if cache.get(k) is not None:
                    continue
                j = first.get(k)
                if j is None:
                    j = first[k] = len(uniq)
                    uniq.append(lines[i])
                slot[i] = j
            cache.put_many(list(first), np.zeros(len(first), dtype=np.float32))
            payload.update(keys=np.array(keys, dtype="S16"), slot=slot, unique=len(uniq))
        payload["chunks"] = self._line_tokenizer.chunks(uniq)
        return payload

    def infer(self, payload: dict[str, Any]) -> dict[str, Any]:
        out = dict(payload, chunks=[])
        if payload["unique"]:
            if self._engine is None:
                self.setup()
            out["scores"] = self._engine.score_tokenized(payload["chunks"], payload["unique"])
        return out

    def finish(self, batch: DocBatch, ctx: BatchContext, payload: dict[str, Any]) -> dict[str, pa.Array]:
        n_lines = payload["lines"]
        unique = payload["scores"] if payload["scores"] is not None else np.empty(0, dtype=np.float32)
        scores = None
        if n_lines:
            if payload["keys"] is None:
                scores = unique
            else:
                _, cache = self._stage_caches()
                keys = [bytes(k) for k in payload["keys"]]
                slot = payload["slot"]
                scores = np.empty(n_lines, dtype=np.float32)
                first: dict[bytes, None] = {}
                for i, k in enumerate(keys):
                    v = cache.get(k)
                    if v is not None:
                        scores[i] = v
                    else:
                        first.setdefault(k)
                todo = slot >= 0
                scores[todo] = unique[slot[todo]]
                cache.put_many(list(first), unique)
        return _columns(len(batch), payload["idx"], scores, payload["counts"])

    def fold(self, columns: Mapping[str, pa.Array], ctx: BatchContext) -> Counts:
        def arr(name: str, dtype) -> np.ndarray:
            col = columns[name]
            if isinstance(col, pa.ChunkedArray):
                col = col.combine_chunks()
            return np.asarray(col.to_numpy(zero_copy_only=False), dtype=dtype)

        return fold_scores(arr("toxicity_mean", np.float64), arr("toxicity_lines", np.float64),
                           arr("toxicity_frac_ge_0_5", np.float64))


@dataclasses.dataclass
class _ConfigOnly:
    """A model's config where :func:`model.max_length` reads it, without loading the weights."""

    config: Any


def _columns(n: int, idx: np.ndarray, scores: np.ndarray | None, counts: np.ndarray | None) -> dict[str, pa.Array]:
    """The annotation columns of ``n`` documents from the line scores of the scored ones ``idx``."""
    mean = np.full(n, np.nan)
    mx = np.full(n, np.nan)
    frac = np.full(n, np.nan)
    count = np.zeros(n, dtype=np.int64)
    if scores is not None:
        mean[idx], mx[idx], frac[idx] = segment_stats(scores, counts)
        count[idx] = counts
    null = np.isnan(mean)
    return {
        "toxicity_mean": pa.array(mean.astype(np.float32), mask=null, type=pa.float32()),
        "toxicity_lines": pa.array(count.astype(np.int32), mask=null, type=pa.int32()),
        "toxicity_max": pa.array(mx.astype(np.float32), mask=null, type=pa.float32()),
        "toxicity_frac_ge_0_5": pa.array(frac.astype(np.float32), mask=null, type=pa.float32()),
    }
