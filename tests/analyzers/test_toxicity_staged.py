"""The toxicity analyzer in two stages (Analyzer.staged): prepare (lines, cache walk, tokens) and
finish in one process, infer (the model) in another; the same bits as ``annotate``.

The tiny randomly initialised BERT of test_toxicity_engine.py (built here, nothing downloaded).
"""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from llama_audit.analyzers.base import BatchContext, DocBatch  # noqa: E402
from llama_audit.analyzers.toxicity import ToxicityAnalyzer  # noqa: E402

_spec = importlib.util.spec_from_file_location("_tox_engine_tests", Path(__file__).with_name("test_toxicity_engine.py"))
_engine_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_engine_tests)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return _engine_tests.build_tiny(tmp_path_factory.mktemp("tox") / "tiny")


def shard_batches(seed=0, batches=4, docs=40):
    """Batches of one shard whose lines repeat within and across batches (the cache matters)."""
    lines = _engine_tests.make_lines(n=120, seed=seed)
    rng = np.random.default_rng(seed)
    out = []
    for b in range(batches):
        texts = ["\n".join(rng.choice(lines, size=int(rng.integers(0, 6)))) for _ in range(docs)]
        ids = [f"{b}-{i}" for i in range(docs)]
        out.append(DocBatch("s.jsonl", np.arange(docs, dtype=np.int64), ids, texts))
    return out


@pytest.mark.parametrize("cache_lines", [500_000, 7, 0])
def test_staged_equals_annotate_bit_for_bit(tiny_dir, cache_lines):
    opts = {"model": str(tiny_dir), "tokenizer": str(tiny_dir), "device": "cpu", "self_test": False,
            "cache_lines": cache_lines, "batch_tokens": 256, "sample": 0.8}
    one = ToxicityAnalyzer(opts)
    one.setup()
    cpu_side = ToxicityAnalyzer(opts)  # prepare and finish: no model loaded
    cpu_side.setup_prepare()
    device_side = ToxicityAnalyzer(opts)  # infer: the model
    device_side.setup()
    assert ToxicityAnalyzer.staged and cpu_side._engine is None
    for shard in ("a", "b"):  # two shards: the per-shard caches are reset
        one.start_shard(shard)
        cpu_side.start_shard(shard)
        for batch in shard_batches(seed=ord(shard)):
            scope = np.arange(len(batch)) % 5 != 0
            ctx = BatchContext(scope, {})
            want = one.annotate(batch, ctx)
            payload = pickle.loads(pickle.dumps(cpu_side.prepare(batch, ctx)))  # crosses processes
            inferred = pickle.loads(pickle.dumps(device_side.infer(payload)))
            got = cpu_side.finish(batch, ctx, inferred)
            assert list(got) == list(want)
            for name in want:
                assert got[name].equals(want[name]), (shard, name)
            if cache_lines:  # lines seen before in the shard are not sent to the model again
                assert payload["unique"] < payload["lines"] or payload["lines"] == 0
    assert cpu_side._engine is None  # the CPU side never loaded the model
    for a in (one, cpu_side, device_side):
        a.close()
