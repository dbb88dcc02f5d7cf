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

from llama_audit.analyzers.base import Analyzer, BatchContext
from llama_audit.hashing import file_sha256
from llama_audit.types import AnalyzerUnavailable, ConfigError, DocBatch

EMBEDDED_MODEL = "lid.176.ftz"
EMBEDDED_SHA256 = "8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83"
UNKNOWN = "unknown"


def embedded_model_path() -> Path:
    return Path(str(resources.files("llama_audit") / "models" / EMBEDDED_MODEL))


def model_sha256(path: Path) -> str:
    return file_sha256(path)


class LanguageAnalyzer(Analyzer):
    name = "language"

    def __init__(self, options):
        super().__init__(options)
        self.model_path = Path(options.lid_model) if options.lid_model else embedded_model_path()
        if not 0.0 <= options.lid_threshold <= 1.0:
            raise ConfigError(f"--lid-threshold must be between 0 and 1, got {options.lid_threshold}")
        self._model = None
        self._fast = None
        if options.lid_engine not in ("auto", "fastlid", "fasttext"):
            raise ConfigError(f"--lid-engine takes auto, fastlid or fasttext (got {options.lid_engine!r})")

    @classmethod
    def unavailable_reason(cls, options) -> str | None:
        path = Path(options.lid_model) if options.lid_model else embedded_model_path()
        if not path.is_file():
            return f"language model {path} not found (give --lid-model PATH to a fastText lid.176.bin/.ftz)"
        return None

    def config(self) -> dict:
        return {
            "model": self.model_path.name if not self.options.lid_model else str(self.model_path),
            "model_sha256": model_sha256(self.model_path),
            "threshold": self.options.lid_threshold,
            "engine": self.options.lid_engine,
        }

    def setup(self) -> None:
        if self._model is not None or self._fast is not None:
            return
        if self.options.lid_model is None and model_sha256(self.model_path) != EMBEDDED_SHA256:
            raise AnalyzerUnavailable(f"embedded {EMBEDDED_MODEL} is corrupt (sha256 mismatch); reinstall llama-audit")
        if self.options.lid_engine in ("auto", "fastlid"):
            from llama_audit.analyzers.fastlid import FastLid

            try:
                self._fast = FastLid(self.model_path)
                return
            except ValueError as exc:
                if self.options.lid_engine == "fastlid":
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

    def predict(self, texts: list[str]) -> tuple[list[str], np.ndarray]:
        """Labels (thresholded) and top-1 probabilities (NaN for empty documents)."""
        self.setup()
        n = len(texts)
        labels = [UNKNOWN] * n
        scores = np.full(n, np.nan, dtype=np.float32)
        idx = [i for i, t in enumerate(texts) if t and not t.isspace()]
        if not idx:
            return labels, scores
        # fastText reads one line; its own tokenizer already treats \r \t \v \f as spaces
        lines = [texts[i].replace("\n", " ") for i in idx]
        threshold = self.options.lid_threshold
        if self._fast is not None:
            fast_labels, fast_probs = self._fast.predict(lines)
            probs = np.minimum(fast_probs, 1.0)
            scores[idx] = probs
            for j, i in enumerate(idx):
                if fast_labels[j] and probs[j] >= threshold:
                    labels[i] = fast_labels[j]
            return labels, scores
        pred_labels, pred_probs = self._model.predict(lines, k=1, threshold=0.0)
        for j, i in enumerate(idx):
            if not pred_labels[j]:
                continue
            p = float(pred_probs[j][0])
            scores[i] = min(p, 1.0)  # fastText can return 1.00001
            if p >= threshold:
                labels[i] = pred_labels[j][0][9:]  # strip "__label__"
        return labels, scores

    def labels(self) -> set[str]:
        """Language codes the model can output (without ``__label__``)."""
        self.setup()
        if self._fast is not None:
            return {lab[9:] if lab.startswith("__label__") else lab for lab in self._fast.labels}
        return {lab[9:] for lab in self._model.get_labels()}

    def stats(self) -> dict:
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
            out["documents/" + value] = n
        chars = ctx.columns.get("chars")
        if chars is not None:
            table = pa.table({"lang": lang, "chars": chars}).group_by("lang").aggregate([("chars", "sum")])
            for value, n in zip(table["lang"].to_pylist(), table["chars_sum"].to_pylist()):
                out["chars/" + value] = n
        return out
