"""The packed BERT forward: same logits as transformers' padded forward, and the engine's choice of
forward (probe, fallback, errors). Tiny random models built here; nothing is downloaded."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from llama_audit.analyzers.base import ConfigError  # noqa: E402
from llama_audit.analyzers.toxicity.engine import ToxicityEngine  # noqa: E402
from llama_audit.analyzers.toxicity.packed_bert import PackedBert, packed_or_reason  # noqa: E402

from test_toxicity_engine import build_tiny  # noqa: E402


def bert(layers=2, act="gelu", heads=4, hidden=32, seed=0, **kw):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=97, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=2 * hidden, max_position_embeddings=128, num_labels=2, hidden_act=act,
                     initializer_range=0.3, attn_implementation="sdpa", **kw)
    return BertForSequenceClassification(cfg).eval()


def roberta(layers=2, act="gelu", heads=4, hidden=32, seed=0, **kw):
    """A RoBERTa classifier: positions start after the padding index, and the head is its own
    dense + tanh + out_proj (no pooler), the shape of the ToxiGen RoBERTa classifier."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(seed)
    cfg = RobertaConfig(vocab_size=97, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=2 * hidden, max_position_embeddings=130, num_labels=2, hidden_act=act,
                        initializer_range=0.3, pad_token_id=1, type_vocab_size=1, attn_implementation="sdpa", **kw)
    return RobertaForSequenceClassification(cfg).eval()


def padded_logits(model, rows):
    width = max(map(len, rows))
    pad = getattr(model.config, "pad_token_id", None) or 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    with torch.inference_mode():
        return model(input_ids=ids, attention_mask=mask).logits


def packed_logits(packed, rows):
    ids = torch.tensor([t for r in rows for t in r], dtype=torch.long)
    lens = torch.tensor([len(r) for r in rows], dtype=torch.long)
    with torch.inference_mode():
        return packed(ids, lens)


def random_rows(n, max_len, seed=0, vocab=97):
    rng = np.random.default_rng(seed)
    return [[2] + rng.integers(5, vocab, size=int(rng.integers(0, max_len))).tolist() for _ in range(n)]


@pytest.mark.parametrize("layers,act,heads", [(1, "gelu", 4), (2, "gelu", 4), (3, "relu", 2),
                                              (2, "gelu_new", 8), (2, "gelu_pytorch_tanh", 1)])
def test_packed_matches_padded_forward(layers, act, heads):
    model = bert(layers=layers, act=act, heads=heads)
    packed, why = packed_or_reason(model)
    assert isinstance(packed, PackedBert) and why == ""
    for seed, (n, max_len) in enumerate([(1, 1), (1, 90), (7, 40), (33, 127), (5, 3)]):
        rows = random_rows(n, max_len, seed)
        np.testing.assert_allclose(packed_logits(packed, rows).numpy(), padded_logits(model, rows).numpy(),
                                   atol=2e-5, rtol=0)


@pytest.mark.parametrize("layers,act,heads", [(1, "gelu", 4), (2, "gelu", 4), (2, "relu", 2)])
def test_packed_roberta_matches_its_padded_forward(layers, act, heads):
    model = roberta(layers=layers, act=act, heads=heads)
    packed, why = packed_or_reason(model)
    assert isinstance(packed, PackedBert) and why == ""
    for seed, (n, max_len) in enumerate([(1, 1), (1, 120), (7, 40), (33, 127), (5, 3)]):
        rows = random_rows(n, max_len, seed)
        np.testing.assert_allclose(packed_logits(packed, rows).numpy(), padded_logits(model, rows).numpy(),
                                   atol=2e-5, rtol=0)


def test_roberta_truncation_leaves_room_for_its_position_offset():
    """RoBERTa's positions start at padding index + 1: 130 position embeddings take 128 tokens."""
    from llama_audit.analyzers.toxicity.model import max_length

    class NoLimit:
        model_max_length = 10**30

    assert max_length(roberta(), NoLimit(), limit=512) == 128
    assert max_length(bert(), NoLimit(), limit=512) == 128


def test_each_row_is_independent_of_its_batch():
    """A row's logits do not depend on the other rows packed beside it (no leakage across rows)."""
    model = bert()
    packed, _ = packed_or_reason(model)
    rows = random_rows(9, 60, seed=3)
    together = packed_logits(packed, rows).numpy()
    alone = np.concatenate([packed_logits(packed, [r]).numpy() for r in rows])
    np.testing.assert_allclose(together, alone, atol=2e-5, rtol=0)


def test_unsupported_models_say_why():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    distil = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=97, dim=32, n_layers=1, n_heads=2,
                                                                  hidden_dim=64))
    p, why = packed_or_reason(distil)
    assert p is None and why.startswith("DistilBertForSequenceClassification is not one of BertForSequenceClassification")
    p, why = packed_or_reason(bert(position_embedding_type="relative_key"))
    assert p is None and "relative_key" in why
    p, why = packed_or_reason(bert(act="silu"))
    assert p is None and "silu" in why


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from llama_audit.analyzers.toxicity import model as tm

    d = build_tiny(tmp_path_factory.mktemp("packed") / "tiny")
    return (tm.load_model(tm.locate(str(d), None, kind="model", option="-")),
            tm.load_tokenizer(tm.locate(str(d), None, kind="tokenizer", option="-")))


def test_engine_picks_packed_after_the_probe(tiny):
    eng = ToxicityEngine(*tiny, device="cpu")
    s = eng.stats()
    assert s["forward"] == "packed" and s["forward_note"].startswith("padded attention; probe max |diff|")
    assert "(fp32)" in s["forward_note"] and "bf16" not in s["forward_note"]
    assert ToxicityEngine(*tiny, device="cpu", forward="transformers").stats()["forward"] == "transformers"
    with pytest.raises(ConfigError, match="expected auto, packed, transformers"):
        ToxicityEngine(*tiny, device="cpu", forward="fastest")


def test_engine_falls_back_when_the_probe_disagrees_or_fails(tiny, monkeypatch):
    real = PackedBert.forward

    def off(self, *args):
        return real(self, *args) + torch.tensor([0.0, 1.0])  # shifts the toxic logit

    monkeypatch.setattr(PackedBert, "forward", off)
    eng = ToxicityEngine(*tiny, device="cpu")
    assert eng.forward_impl == "transformers" and "differs from transformers by" in eng.forward_note
    assert all(w.packed is None for w in eng.workers)
    with pytest.raises(ConfigError, match="packed forward unusable here: padded attention: differs from transformers"):
        ToxicityEngine(*tiny, device="cpu", forward="packed")

    def broken(self, *args):
        raise RuntimeError("kernel not available")

    monkeypatch.setattr(PackedBert, "forward", broken)
    eng = ToxicityEngine(*tiny, device="cpu")
    assert eng.forward_impl == "transformers" and "kernel not available" in eng.forward_note
    assert np.isfinite(eng.score(["the dog", "she loves the cat"])).all()


def test_engine_keeps_transformers_forward_for_other_models(tiny):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    _, tok = tiny
    torch.manual_seed(0)
    distil = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=len(tok), dim=32, n_layers=1,
                                                                  n_heads=2, hidden_dim=64)).eval()
    eng = ToxicityEngine(distil, tok, device="cpu")
    assert eng.forward_impl == "transformers" and "not applicable" in eng.forward_note
    assert eng.score(["the dog"]).shape == (1,)
    with pytest.raises(ConfigError, match="does not support this model"):
        ToxicityEngine(distil, tok, device="cpu", forward="packed")


def test_low_precision_is_probed_too(tiny):
    """bf16 (autocast, here on the CPU): probed in fp32 and in bf16; scores near the fp32 ones."""
    lines = ["the dog", "she loves the cat and the house", "you are bad " * 20, "a"]
    eng = ToxicityEngine(*tiny, device="cpu", precision="bf16")
    assert eng.forward_impl == "packed" and "(fp32)" in eng.forward_note and "(bf16)" in eng.forward_note
    ref = ToxicityEngine(*tiny, device="cpu", forward="transformers").score(lines)
    np.testing.assert_allclose(eng.score(lines), ref, atol=3e-2, rtol=0)


def test_host_layout_matches_device_layout():
    from llama_audit.analyzers.toxicity.packed_bert import host_layout

    model = bert()
    packed, _ = packed_or_reason(model)
    rows = random_rows(6, 30, seed=5)
    lens = np.array([len(r) for r in rows])
    pos, slot, starts = host_layout(lens, 32)
    assert pos.tolist() == [j for n in lens for j in range(n)]
    assert starts.tolist() == np.concatenate([[0], np.cumsum(lens)[:-1]]).tolist()
    assert slot.tolist() == [i * 32 + j for i, n in enumerate(lens) for j in range(n)]
    ids = torch.tensor([t for r in rows for t in r])
    with torch.inference_mode():
        given = packed(ids, torch.from_numpy(lens), 32, *(torch.from_numpy(a) for a in (pos, slot, starts)))
        derived = packed(ids, torch.from_numpy(lens))
    np.testing.assert_allclose(given.numpy(), derived.numpy(), atol=2e-5, rtol=0)


def reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k):
    """What flash attention on packed sequences computes, one sequence at a time (CPU stand-in)."""
    import torch.nn.functional as F

    assert cu_q.dtype == cu_k.dtype == torch.int32 and len(cu_q) == len(cu_k)
    out = []
    for i in range(len(cu_q) - 1):
        qi, ki, vi = (t[int(c[i]):int(c[i + 1])].transpose(0, 1) for t, c in ((q, cu_q), (k, cu_k), (v, cu_k)))
        assert qi.shape[1] <= max_q and ki.shape[1] <= max_k
        out.append(F.scaled_dot_product_attention(qi, ki, vi).transpose(0, 1))
    return torch.cat(out)


def test_varlen_attention_path_matches(monkeypatch):
    """The CUDA-only flash-attention path, with a CPU stand-in for varlen_attn: same logits."""
    from llama_audit.analyzers.toxicity import packed_bert

    monkeypatch.setattr(packed_bert, "varlen_attention", reference_varlen)
    monkeypatch.setattr(PackedBert, "uses_varlen", lambda self, x: self.attention == "varlen")
    model = bert(layers=3)
    packed, _ = packed_or_reason(model)
    packed.attention = "varlen"
    for seed, (n, max_len) in enumerate([(1, 1), (7, 40), (20, 100)]):
        rows = random_rows(n, max_len, seed)
        np.testing.assert_allclose(packed_logits(packed, rows).numpy(), padded_logits(model, rows).numpy(),
                                   atol=2e-5, rtol=0)


def test_engine_probes_varlen_then_padded(tiny, monkeypatch):
    from llama_audit.analyzers.toxicity import packed_bert

    monkeypatch.setattr(ToxicityEngine, "_attention_modes", lambda self: ["varlen", "padded"])
    monkeypatch.setattr(PackedBert, "uses_varlen", lambda self, x: self.attention == "varlen")
    monkeypatch.setattr(packed_bert, "varlen_attention", reference_varlen)
    eng = ToxicityEngine(*tiny, device="cpu")
    assert eng.forward_impl == "packed" and eng.forward_note.startswith("varlen attention;")
    assert eng.workers[0].packed.attention == "varlen"

    def unavailable(*args):
        raise RuntimeError("FlashAttention only supports Ampere GPUs or newer.")

    monkeypatch.setattr(packed_bert, "varlen_attention", unavailable)
    eng = ToxicityEngine(*tiny, device="cpu")
    assert eng.forward_impl == "packed" and eng.workers[0].packed.attention == "padded"
    assert eng.forward_note.startswith("padded attention (after varlen attention: failed its probe (RuntimeError: "
                                       "FlashAttention only supports Ampere")
    lines = ["the dog", "she loves the cat and the house", "you are bad " * 20]
    ref = ToxicityEngine(*tiny, device="cpu", forward="transformers").score(lines)
    np.testing.assert_allclose(eng.score(lines), ref, atol=1e-5, rtol=0)


def test_engine_runs_a_roberta_classifier_packed(tiny):
    """The ToxiGen classifier's family: the engine probes and takes the packed forward, and its
    scores equal the transformers forward's (long lines truncated at the position limit)."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    _, tok = tiny
    torch.manual_seed(0)
    model = RobertaForSequenceClassification(RobertaConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=40, num_labels=2, pad_token_id=tok.pad_token_id, type_vocab_size=1,
        initializer_range=0.3)).eval()
    from llama_audit.analyzers.toxicity.model import max_length

    limit = max_length(model, tok)  # as the analyzers pass it: 40 positions, from padding index + 1
    assert limit == 40 - (tok.pad_token_id + 1)
    packed = ToxicityEngine(model, tok, device="cpu", max_length=limit)
    assert packed.forward_impl == "packed", packed.forward_note
    reference = ToxicityEngine(model, tok, device="cpu", forward="transformers", max_length=limit)
    lines = ["she loves the dog", "the house is very good " * 20, "a", "they hate the cat and the dog"]
    np.testing.assert_allclose(packed.score(lines), reference.score(lines), atol=1e-5, rtol=0)
