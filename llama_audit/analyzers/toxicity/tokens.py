"""Lines -> token ids as the toxicity engine feeds its model, without torch or a model: the CPU
half of the analyzer's two stages (``prepare`` in a CPU task, :mod:`engine` ``score_tokenized`` on
the device) and the engine's own tokenizer thread use this one code, so both see the same chunks."""

from __future__ import annotations

import hashlib
import itertools
from collections import OrderedDict
from typing import Sequence

import numpy as np


def make_backend(tokenizer, max_length: int):
    """A private copy of the Rust tokenizer with truncation on and padding off (None: use the
    Python wrapper)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    try:
        from tokenizers import Tokenizer

        bt = Tokenizer.from_str(backend.to_str())
        bt.no_padding()
        bt.enable_truncation(max_length=max_length)
        return bt
    except Exception:  # pragma: no cover - exotic tokenizer: fall back to the wrapper
        return None


class LineTokenizer:
    """Lines -> token-id chunks of ``chunk`` lines each, truncated at ``max_length`` tokens: the
    tokenisation of :meth:`engine.ToxicityEngine.score`, usable in a process that holds no model."""

    def __init__(self, tokenizer, max_length: int, chunk: int = 2048):
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.chunk = max(1, int(chunk))
        self.backend = make_backend(tokenizer, self.max_length)

    def encode(self, lines: list[str]) -> list[list[int]]:
        try:
            return self._encode_raw(lines)
        except Exception:
            # lone surrogates and other strings the Rust side refuses: replace and retry
            clean = [s.encode("utf-8", "replace").decode("utf-8") for s in lines]
            return self._encode_raw(clean)

    def _encode_raw(self, lines: list[str]) -> list[list[int]]:
        if self.backend is not None:
            encode = getattr(self.backend, "encode_batch_fast", None) or self.backend.encode_batch  # fast: no offsets
            return [e.ids for e in encode(lines, add_special_tokens=True)]
        enc = self.tokenizer(lines, truncation=True, max_length=self.max_length, padding=False,
                             return_attention_mask=False, return_token_type_ids=False)
        return enc["input_ids"]

    def chunk_at(self, lines: list[str], start: int) -> tuple[int, np.ndarray, np.ndarray]:
        """``(start, flat token ids, row lengths)`` of ``lines[start:start + chunk]``."""
        ids = self.encode(lines[start:start + self.chunk])
        lens = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lens.sum()))
        return start, flat, lens

    def chunks(self, lines: Sequence[str]) -> list[tuple[int, np.ndarray, np.ndarray]]:
        lines = list(lines)
        return [self.chunk_at(lines, start) for start in range(0, len(lines), self.chunk)]


# ---------------------------------------------------------------------------------------------
# the duplicate-line cache


class LineCache:
    """Bounded LRU map: 16-byte line hash -> score."""

    def __init__(self, capacity: int):
        self.capacity = max(0, int(capacity))
        self._d: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._d)

    def get(self, key: bytes) -> float | None:
        v = self._d.get(key)
        if v is not None:
            self._d.move_to_end(key)
        return v

    def put_many(self, keys: Sequence[bytes], values: np.ndarray) -> None:
        if self.capacity <= 0:
            return
        d = self._d
        for k, v in zip(keys, values.tolist()):
            d[k] = v
            d.move_to_end(k)
        while len(d) > self.capacity:
            d.popitem(last=False)

    def clear(self) -> None:
        self._d.clear()


def line_key(line: str) -> bytes:
    return hashlib.blake2b(line.encode("utf-8", "surrogatepass"), digest_size=16).digest()
