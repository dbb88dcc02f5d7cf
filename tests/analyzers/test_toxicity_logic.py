"""Toxicity: line rules, sampling, partial counts and summary, availability — no torch needed."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
import unicodedata
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from llama_audit.analyzers.base import BatchContext
from llama_audit.analyzers.toxicity import ToxicityAnalyzer, summarize_toxicity
from llama_audit.analyzers.toxicity.lines import document_lines, segment_stats, split_documents
from llama_audit.analyzers.toxicity.sampling import sample_mask, sample_uniform
from llama_audit.analyzers.toxicity.summary import fold_scores, quantile_from_bins


# -- lines ---------------------------------------------------------------------------------------

def test_document_lines_rules():
    text = "first line\n\n   \n\tsecond\t\r\n\u00a0\n\u2028\nthird\u2028same line\n"
    assert document_lines(text) == ["first line", "second", "third\u2028same line"]
    assert document_lines("") == []
    assert document_lines(None) == []
    assert document_lines(" \n\t\n\r\n") == []
    assert document_lines("no newline") == ["no newline"]
    # invisible format characters are blank at the ends of a line, kept inside it
    assert document_lines("hello\n\ufeff\n \u200b\u200d \n\u00ad\n a\u200bb \n\u2066x\u2069") == ["hello", "a\u200bb", "x"]
    assert document_lines("\ufeff\n\u200b") == []
    # what BERT's tokenizer deletes (controls, format, private use, unassigned, U+FFFD) is blank too
    for c in ("\u061c", "\ufffd", "\x01", "\x7f", "\ue000", "\U000e0041", "\u0600", "\ufff9", "\U0010ffff"):
        assert document_lines("a\n" + c * 3 + "\n") == ["a"], hex(ord(c))
    assert document_lines("\x01x\ufffd") == ["\x01x\ufffd"]  # kept whole when something is visible
    for cp in range(0x10000):  # the rule, code point by code point (BMP)
        c = chr(cp)
        blank = unicodedata.category(c).startswith("C") or c.isspace() or c == "\ufffd"
        assert (document_lines(c + c) == []) == blank, hex(cp)
    # every character str.strip() removes is still removed
    assert all(document_lines(c + "x" + c) == ["x"] for c in map(chr, range(0x110000)) if c.isspace() and c != "\n")


def test_split_documents_counts():
    flat, counts = split_documents(["a\nb", "", "   ", "c", "\n\nd\n\ne\n"])
    assert flat == ["a", "b", "c", "d", "e"]
    assert counts.tolist() == [2, 0, 0, 1, 2]


def test_segment_stats_matches_loops():
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 6, size=200)
    counts[:3] = 0
    scores = rng.random(counts.sum())
    scores[:5] = 0.5  # exactly at the threshold counts as >= 0.5
    mean, mx, frac = segment_stats(scores, counts)
    pos = 0
    for i, c in enumerate(counts):
        seg = scores[pos:pos + c]
        pos += c
        if c == 0:
            assert math.isnan(mean[i]) and math.isnan(mx[i]) and math.isnan(frac[i])
        else:
            assert mean[i] == pytest.approx(seg.mean(), abs=1e-12)
            assert mx[i] == seg.max()
            assert frac[i] == pytest.approx((seg >= 0.5).mean(), abs=1e-12)


def test_segment_stats_edges():
    mean, mx, frac = segment_stats(np.array([]), np.array([0, 0]))
    assert np.isnan(mean).all() and np.isnan(mx).all() and np.isnan(frac).all()
    with pytest.raises(ValueError):
        segment_stats(np.array([0.1]), np.array([2]))


# -- sampling ------------------------------------------------------------------------------------

def test_sampling_deterministic_and_rate():
    ids = [f"shard-{i % 7}:{i}" for i in range(20000)]
    a = sample_mask(ids, seed=3, rate=0.1)
    assert np.array_equal(a, sample_mask(ids, seed=3, rate=0.1))
    assert 0.09 < a.mean() < 0.11
    # per document, independent of batch composition and order
    assert np.array_equal(sample_mask(ids[::-1], 3, 0.1), a[::-1])
    assert np.array_equal(sample_mask(ids[5000:5100], 3, 0.1), a[5000:5100])
    # another seed, another sample; a smaller rate is a subset
    b = sample_mask(ids, seed=4, rate=0.1)
    assert not np.array_equal(a, b)
    assert not (sample_mask(ids, 3, 0.05) & ~a).any()
    assert sample_mask(ids, 0, 1.0).all() and not sample_mask(ids, 0, 0.0).any()
    assert all((sample_uniform(d, 3) < 0.1) == a[i] for i, d in enumerate(ids[:500]))


def test_sampling_odd_ids():
    ids = ["", "\ud800", "ünï", "x" * 1000]
    assert sample_mask(ids, 0, 0.5).shape == (4,)


# -- fold and summary ----------------------------------------------------------------------------

def _fold(means, lines=None, frac=None):
    means = np.asarray(means, dtype=np.float64)
    lines = np.ones(len(means)) if lines is None else np.asarray(lines, dtype=np.float64)
    frac = (means >= 0.5).astype(float) if frac is None else np.asarray(frac, dtype=np.float64)
    return fold_scores(means, lines, frac)


def test_fold_counts_and_bins():
    means = np.array([0.0, 0.004, 0.5, 0.4999, 0.99999, 1.0, np.nan], dtype=np.float32).astype(np.float64)
    lines = np.array([2, 1, 4, 3, 1, 1, np.nan])
    frac = np.array([0.0, 0.0, 0.75, 1 / 3, 1.0, 1.0, np.nan])
    c = fold_scores(means, lines, frac)
    assert c["documents_scored"] == 6
    assert c["documents_ge_0_5"] == 3
    assert c["lines_scored"] == 12
    assert c["lines_ge_0_5"] == 3 + 1 + 1 + 1
    assert c["hist100/0"] == 2 and c["hist100/50"] == 1 and c["hist100/49"] == 1 and c["hist100/99"] == 2
    assert sum(v for k, v in c.items() if k.startswith("hist100/")) == 6
    assert sum(v for k, v in c.items() if k.startswith("q10000/")) == 6
    assert all(v > 0 for k, v in c.items() if "/" in k)  # sparse: no zero bins
    assert all(isinstance(v, int) for v in c.values())


def test_fold_is_additive():
    rng = np.random.default_rng(7)
    a, b = rng.random(500) ** 3, rng.random(300) ** 3
    assert _fold(a) + _fold(b) == _fold(np.concatenate([a, b]))


def test_summarize_quantiles_within_1e4():
    rng = np.random.default_rng(0)
    for n in (1, 2, 10, 999, 20000):
        x = (rng.beta(0.3, 5.0, size=n)).astype(np.float32).astype(np.float64)
        s = summarize_toxicity(_fold(x[: n // 2]) + _fold(x[n // 2:]))
        assert s["documents_scored"] == n
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)):
            exact = float(np.quantile(x, q, method="inverted_cdf"))
            assert abs(s["quantiles"][name] - exact) <= 1e-4, (n, name)
        assert s["pct_ge_0_5"] == pytest.approx(100.0 * (x >= 0.5).mean())
        h = s["histogram"]
        assert len(h["edges"]) == 101 and len(h["counts"]) == 100 and sum(h["counts"]) == n
        assert h["edges"][0] == 0.0 and h["edges"][-1] == 1.0
        assert np.array_equal(h["counts"], np.bincount(np.minimum((x * 100).astype(int), 99), minlength=100))


def test_summarize_empty_and_coarse_fallback():
    s = summarize_toxicity(Counter())
    assert s["documents_scored"] == 0 and s["pct_ge_0_5"] == 0.0
    assert s["quantiles"] == {"p50": None, "p90": None, "p99": None, "p999": None}
    coarse = {"documents_scored": 2, "documents_ge_0_5": 1, "hist100/10": 1, "hist100/80": 1}
    s = summarize_toxicity(coarse)
    assert s["pct_ge_0_5"] == 50.0 and s["quantiles"]["p50"] == pytest.approx(0.105)
    assert quantile_from_bins(np.zeros(10, dtype=np.int64), 0.5) is None


def test_analyzer_fold_reads_columns_with_nulls():
    an = ToxicityAnalyzer({"self_test": False})
    cols = {
        "toxicity_mean": pa.array([0.2, None, 0.75, 0.5], type=pa.float32()),
        "toxicity_lines": pa.array([3, None, 4, 2], type=pa.int32()),
        "toxicity_max": pa.array([0.4, None, 0.9, 0.6], type=pa.float32()),
        "toxicity_frac_ge_0_5": pa.array([0.0, None, 0.75, 0.5], type=pa.float32()),
    }
    c = an.fold(cols, BatchContext(np.ones(4, dtype=bool), {}))
    assert c["documents_scored"] == 3 and c["documents_ge_0_5"] == 2
    assert c["lines_scored"] == 9 and c["lines_ge_0_5"] == 4
    assert c["hist100/20"] == 1 and c["hist100/75"] == 1 and c["hist100/50"] == 1
    chunked = {k: pa.chunked_array([v[:2], v[2:]]) for k, v in cols.items()}
    assert an.fold(chunked, BatchContext(np.ones(4, dtype=bool), {})) == c


# -- contract and availability -------------------------------------------------------------------

def test_contract_and_fields():
    from llama_audit.analyzers.registry import load_class

    cls = load_class("toxicity")
    assert cls is ToxicityAnalyzer and cls.scoped and cls.requires == ()
    fields = {f.name: f.type for f in ToxicityAnalyzer().fields()}
    assert fields == {"toxicity_mean": pa.float32(), "toxicity_lines": pa.int32(),
                      "toxicity_max": pa.float32(), "toxicity_frac_ge_0_5": pa.float32()}


def test_bad_sample_rate():
    from llama_audit.analyzers.base import ConfigError

    with pytest.raises(ConfigError, match=r"^--toxicity-sample must be in \(0, 1\] \(got 1\.5\)$"):
        ToxicityAnalyzer({"sample": 1.5})
    with pytest.raises(ConfigError, match=r"--toxicity-sample"):
        ToxicityAnalyzer.options_from({"sample": "0"})  # as given on the command line


def test_unavailable_when_torch_missing(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    reason = ToxicityAnalyzer.unavailable_reason(ToxicityAnalyzer.options_from())
    assert "torch" in reason and "pip install 'llama-audit[toxicity]'" in reason and "\n" not in reason


@pytest.fixture
def no_models_cached(tmp_path, monkeypatch):
    """Extras present, an empty Hugging Face cache: whether the model can be found is all that counts."""
    from llama_audit.analyzers.toxicity import model as tm

    monkeypatch.setattr(tm, "missing_extras", lambda: [])
    monkeypatch.setattr(tm, "hub_cache_dir", lambda: str(tmp_path / "hub"))
    return tm


@pytest.mark.parametrize("named", ["missing-dir", "empty-dir", "org/not-fetched", "bad id!"])
@pytest.mark.parametrize("key", ["model", "tokenizer"])
def test_a_named_model_that_cannot_be_found_is_a_config_error(no_models_cached, tmp_path, named, key):
    from llama_audit.analyzers.base import ConfigError

    spec = {"missing-dir": str(tmp_path / "nope"), "empty-dir": str(tmp_path)}.get(named, named)
    options = ToxicityAnalyzer.options_from({key: spec})
    with pytest.raises(ConfigError, match=f"--toxicity-{key}") as info:
        ToxicityAnalyzer.unavailable_reason(options)
    assert spec in str(info.value) and "\n" not in str(info.value)


def test_a_named_revision_that_is_not_cached_is_a_config_error(no_models_cached):
    from llama_audit.analyzers.base import ConfigError

    with pytest.raises(ConfigError, match="revision v9"):
        ToxicityAnalyzer.unavailable_reason(ToxicityAnalyzer.options_from({"revision": "v9"}))


def test_the_default_model_missing_is_a_reason_to_skip(no_models_cached):
    reason = ToxicityAnalyzer.unavailable_reason(ToxicityAnalyzer.options_from({"sample": 0.1}))
    assert "tomh/toxigen_hatebert" in reason and "llama-audit models fetch" in reason


def test_a_named_model_without_the_extra_is_a_config_error(monkeypatch, tmp_path):
    from llama_audit.analyzers.base import ConfigError
    from llama_audit.analyzers.toxicity import model as tm

    monkeypatch.setattr(tm, "missing_extras", lambda: ["torch"])
    assert "pip install" in ToxicityAnalyzer.unavailable_reason(ToxicityAnalyzer.options_from())  # default: skip
    with pytest.raises(ConfigError, match=r"--toxicity-model .*needs torch.*pip install"):
        ToxicityAnalyzer.unavailable_reason(ToxicityAnalyzer.options_from({"model": str(tmp_path)}))


def test_unavailable_reason_is_cheap_and_lazy(tmp_path):
    code = (
        "import sys, time\n"
        "from llama_audit.analyzers.toxicity import ToxicityAnalyzer\n"
        f"o = ToxicityAnalyzer.options_from({{'model': {str(tmp_path / 'nope')!r}}})\n"
        "from llama_audit.types import ConfigError\n"
        "try:\n"
        "    ToxicityAnalyzer.unavailable_reason(o)\n"
        "except ConfigError as exc:\n"
        "    r = str(exc)\n"
        "assert 'does not exist' in r and '--toxicity-model' in r, r\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_report_gives_an_interval_for_the_share_sampled_or_not():
    from llama_audit.analyzers.toxicity import ToxicityAnalyzer
    from llama_audit.report.render import display_tables, render_csv
    from llama_audit.report.section import ReportContext

    counts = Counter({"documents_scored": 1000, "documents_ge_0_5": 2, "lines_scored": 5000, "hist100/1": 998,
                      "hist100/60": 2})

    def toxicity_section(counts, config):
        return ToxicityAnalyzer.report_section(counts, ReportContext(config, {}, ToxicityAnalyzer.ReportOptions()))
    full = toxicity_section(counts, {"model": "m", "sample_rate": 1.0})
    sampled = toxicity_section(counts, {"model": "m", "sample_rate": 0.1})
    lo, hi = sampled["pct_ge_0_5_ci95"]
    assert sampled["pct_ge_0_5"] == pytest.approx(0.2) and lo < 0.2 < hi
    assert full["pct_ge_0_5_ci95"] == [lo, hi]  # the same documents scored: the same interval
    report = {"corpus": {k: 0 for k in ("documents", "bytes", "shards", "bad_records", "in_scope_documents")},
              "toxicity": sampled}
    table = next(t for t in display_tables(report) if t.key == "toxicity")
    assert any("(10% sample)" in str(r[0]) and f"({lo:.2f}\u2013{hi:.2f})" in str(r[1]) for r in table.rows)
    assert f"toxicity,,ge_0_5,,0.2,,{lo},{hi}" in render_csv(report)
