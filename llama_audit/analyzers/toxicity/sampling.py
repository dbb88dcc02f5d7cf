"""Deterministic document sampling (``--toxicity-sample RATE``, ``--seed``).

A document is selected when ``u(doc_id, seed) < rate`` where

    u = int.from_bytes(blake2b(f"{seed}\\x1f{doc_id}".encode("utf-8"), digest_size=8).digest(), "big") / 2**64

is uniform on [0, 1). The decision depends on the document id and seed only, so reruns, shards,
batch sizes and machines all select the same documents, and a smaller rate selects a subset of a
larger one (same seed).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

_SCALE = float(2**64)


def sample_uniform(doc_id: str, seed: int) -> float:
    """The uniform [0, 1) value of one document id under ``seed``."""
    digest = hashlib.blake2b(f"{seed}\x1f{doc_id}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def sample_mask(doc_ids: Sequence[str], seed: int, rate: float) -> np.ndarray:
    """Boolean mask of the documents selected at ``rate`` (0..1)."""
    n = len(doc_ids)
    if rate >= 1.0:
        return np.ones(n, dtype=bool)
    if rate <= 0.0:
        return np.zeros(n, dtype=bool)
    prefix = f"{seed}\x1f"
    u = np.fromiter(
        (int.from_bytes(hashlib.blake2b((prefix + str(d)).encode("utf-8", "surrogatepass"),
                                        digest_size=8).digest(), "big") for d in doc_ids),
        dtype=np.uint64, count=n)
    return (u.astype(np.float64) / _SCALE) < rate
