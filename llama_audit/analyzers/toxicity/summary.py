"""Additive partial counts for toxicity and the summary read from them.

Counts (all ints, merged by addition across batches, shards and machines):

- ``documents_scored``, ``documents_ge_0_5``: documents with a score, and those with mean >= 0.5;
- ``lines_scored``, ``lines_ge_0_5``: lines scored, and those scoring >= 0.5;
- ``hist100/<i>``: documents whose mean falls in bin ``i = min(int(mean * 100), 99)`` (i = 0..99);
- ``q10000/<i>``: the same on 10,000 bins (sparse: empty bins are absent). Quantiles are read from
  it as the centre of the bin holding the order statistic of rank ``ceil(q * N)`` (the
  "inverted CDF" definition), so they are within 5e-5 of the exact sample quantile.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Mapping

import numpy as np

HIST_BINS = 100
SKETCH_BINS = 10_000
QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p999": 0.999}


def fold_scores(means: np.ndarray, lines: np.ndarray, frac: np.ndarray) -> Counter:
    """Counts for one batch. ``means`` has NaN for unscored documents; ``lines``/``frac`` align."""
    means = np.asarray(means, dtype=np.float64)
    valid = ~np.isnan(means)
    m = means[valid]
    n_lines = np.asarray(lines, dtype=np.float64)[valid]
    fr = np.asarray(frac, dtype=np.float64)[valid]
    counts: Counter = Counter()
    counts["documents_scored"] = int(valid.sum())
    counts["documents_ge_0_5"] = int((m >= 0.5).sum())
    counts["lines_scored"] = int(np.nansum(n_lines))
    counts["lines_ge_0_5"] = int(np.rint(np.nan_to_num(fr * n_lines)).sum())
    if len(m):
        m = np.clip(m, 0.0, 1.0)
        for name, bins in (("hist100", HIST_BINS), ("q10000", SKETCH_BINS)):
            idx = np.minimum((m * bins).astype(np.int64), bins - 1)
            ids, cnt = np.unique(idx, return_counts=True)
            for i, c in zip(ids.tolist(), cnt.tolist()):
                counts[f"{name}/{i}"] = c
    return counts


def _dense(counts: Mapping[str, int], name: str, bins: int) -> np.ndarray:
    out = np.zeros(bins, dtype=np.int64)
    prefix = name + "/"
    for key, value in counts.items():
        if key.startswith(prefix):
            out[int(key[len(prefix):])] += int(value)
    return out


def quantile_from_bins(dense: np.ndarray, q: float) -> float | None:
    """Inverted-CDF quantile ``q`` from a dense fixed-bin histogram on [0, 1] (bin centre)."""
    total = int(dense.sum())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total - 1e-9))
    idx = int(np.searchsorted(np.cumsum(dense), rank, side="left"))
    return (idx + 0.5) / len(dense)


def summarize_toxicity(counts: Mapping[str, int]) -> dict:
    """The report's toxicity block from merged counts (percentages 0-100)."""
    n = int(counts.get("documents_scored", 0))
    lines = int(counts.get("lines_scored", 0))
    hist = _dense(counts, "hist100", HIST_BINS)
    sketch = _dense(counts, "q10000", SKETCH_BINS)
    if sketch.sum() == 0 and hist.sum() > 0:  # no fine sketch: fall back to the coarse histogram
        sketch = hist
    return {
        "documents_scored": n,
        "documents_ge_0_5": int(counts.get("documents_ge_0_5", 0)),
        "pct_ge_0_5": 100.0 * counts.get("documents_ge_0_5", 0) / n if n else 0.0,
        "lines_scored": lines,
        "pct_lines_ge_0_5": 100.0 * counts.get("lines_ge_0_5", 0) / lines if lines else 0.0,
        "histogram": {
            "edges": [i / HIST_BINS for i in range(HIST_BINS + 1)],
            "counts": hist.tolist(),
        },
        "quantiles": {name: quantile_from_bins(sketch, q) for name, q in QUANTILES.items()},
    }
