"""A BERT (or RoBERTa) sequence classifier evaluated on packed (unpadded) tokens: same numbers, less work.

``transformers``' BERT computes every position of a padded ``[rows, width]`` batch: the padding of
short rows and, in the last layer, every token although the classifier reads only ``[CLS]``.
Scoring lines, both are waste: dense layers (about 90% of a BERT forward) dominate, and their
cost is linear in the tokens they see. :class:`PackedBert` runs the same weights so that

* the dense layers (fused Q/K/V projection, attention output, feed-forward) see only the real
  tokens of the batch, concatenated (``[tokens, hidden]``);
* attention, on CUDA in bf16/fp16, is flash attention on the packed sequences themselves
  (``torch.nn.attention.varlen.varlen_attn``: no padding anywhere); otherwise (CPU, fp32, or where
  that is unavailable) Q/K/V are scattered into a padded ``[rows, heads, width, head_dim]``
  layout for ``scaled_dot_product_attention`` with a key-padding mask and gathered back;
* the last layer computes keys and values for every token but queries, attention output and
  feed-forward for the ``[CLS]`` rows only; then the pooler and the classifier.

Plain BERT classifiers and RoBERTa ones (the same encoder; positions offset by the padding index,
a head without a pooler module) qualify (:func:`packed_or_reason`); anything else keeps the
``transformers`` forward. The engine also compares both forwards on a probe batch before using
this one (see ``engine.ToxicityEngine``). Build it after moving the model to its device: it
shares the model's weights, except for one fused copy of the Q/K/V projections.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from llama_audit.analyzers.toxicity.model import position_offset

_ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


#: the classifiers the packed forward runs: class name -> the attribute holding the encoder. Both
#: have the same encoder layers; RoBERTa (the ToxiGen classifier, ``tomh/toxigen_roberta``) differs
#: in its positions (they start after the padding index) and its head (dense + tanh + out_proj on
#: ``<s>``, the same arithmetic as BERT's pooler + classifier, without a pooler module)
ENCODERS = {"BertForSequenceClassification": "bert", "RobertaForSequenceClassification": "roberta",
            "XLMRobertaForSequenceClassification": "roberta"}


def _head(model) -> tuple[torch.nn.Linear, torch.nn.Linear] | None:
    """``(dense before tanh, output layer)`` of the classification head, or None."""
    head = getattr(model, "classifier", None)
    if ENCODERS.get(type(model).__name__) == "roberta":
        dense, out = getattr(head, "dense", None), getattr(head, "out_proj", None)
    else:
        dense, out = getattr(getattr(getattr(model, "bert", None), "pooler", None), "dense", None), head
    if not isinstance(dense, torch.nn.Linear) or not isinstance(out, torch.nn.Linear):
        return None
    return dense, out


def packed_or_reason(model) -> tuple["PackedBert | None", str]:
    """``(PackedBert, "")`` for a plain BERT or RoBERTa sequence classifier, else ``(None, why not)``."""
    cfg = getattr(model, "config", None)
    name = type(model).__name__
    if name not in ENCODERS or cfg is None:
        return None, f"{name} is not one of {', '.join(ENCODERS)}"
    pet = getattr(cfg, "position_embedding_type", None) or "absolute"
    if pet != "absolute":
        return None, f"position_embedding_type {pet!r}"
    act = getattr(cfg, "hidden_act", None)
    if not isinstance(act, str) or act not in _ACTIVATIONS:
        return None, f"hidden_act {act!r}"
    if getattr(cfg, "is_decoder", False) or getattr(cfg, "add_cross_attention", False):
        return None, "decoder configuration"
    if getattr(model, ENCODERS[name], None) is None:
        return None, f"no {ENCODERS[name]} encoder"
    if _head(model) is None:
        return None, "no pooler" if ENCODERS[name] == "bert" else "classification head is not dense + out_proj"
    try:
        return PackedBert(model), ""
    except (AttributeError, TypeError, ValueError) as exc:  # an unexpected module layout
        return None, f"unexpected layout ({type(exc).__name__}: {exc})"


def host_layout(lens: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(pos, slot, starts)`` of a packed batch, computed on the host so that the device never
    waits for a ``.item()``: each token's position in its row, its index in the padded
    ``[rows * width]`` layout, and each row's first (``[CLS]``) index in the packed tokens."""
    lens = np.asarray(lens, dtype=np.int64)
    starts = np.cumsum(lens) - lens
    total = int(lens.sum())
    pos = np.arange(total, dtype=np.int64) - np.repeat(starts, lens)
    slot = np.repeat(np.arange(len(lens), dtype=np.int64) * int(width), lens) + pos
    return pos, slot, starts


class PackedBert(torch.nn.Module):
    """``forward(ids, lens) -> logits``: ``ids`` the rows' token ids concatenated (int64 ``[T]``),
    ``lens`` each row's length (int64 ``[B]``, every length >= 1, the first token of each row its
    ``[CLS]``). ``width`` (>= the longest row; a multiple of 8 suits GPU kernels) and the
    :func:`host_layout` arrays may be given; otherwise they are computed on the device."""

    def __init__(self, model):
        super().__init__()
        cfg = model.config
        encoder = getattr(model, ENCODERS[type(model).__name__])
        emb = encoder.embeddings
        self.hidden = int(cfg.hidden_size)
        self.heads = int(cfg.num_attention_heads)
        if self.hidden % self.heads:
            raise ValueError("hidden_size is not a multiple of num_attention_heads")
        self.head_dim = self.hidden // self.heads
        self.eps = float(cfg.layer_norm_eps)
        self.act = _ACTIVATIONS[cfg.hidden_act]
        self.word = emb.word_embeddings.weight
        self.position = emb.position_embeddings.weight
        self.position_offset = position_offset(cfg)
        self.type0 = emb.token_type_embeddings.weight[0]
        self.emb_ln = (emb.LayerNorm.weight, emb.LayerNorm.bias)
        self.layers = []
        for layer in encoder.encoder.layer:
            att = layer.attention
            sa = att.self
            self.layers.append(dict(
                # fused Q/K/V: one GEMM instead of three (a concatenated copy of the weights)
                qkv_w=torch.cat([sa.query.weight, sa.key.weight, sa.value.weight]).detach(),
                qkv_b=torch.cat([sa.query.bias, sa.key.bias, sa.value.bias]).detach(),
                out=(att.output.dense.weight, att.output.dense.bias),
                ln1=(att.output.LayerNorm.weight, att.output.LayerNorm.bias),
                up=(layer.intermediate.dense.weight, layer.intermediate.dense.bias),
                down=(layer.output.dense.weight, layer.output.dense.bias),
                ln2=(layer.output.LayerNorm.weight, layer.output.LayerNorm.bias),
            ))
        if not self.layers:
            raise ValueError("no encoder layers")
        dense, out = _head(model)
        self.pooler = (dense.weight, dense.bias)  # BERT's pooler, RoBERTa's head.dense: tanh follows both
        self.classifier = (out.weight, out.bias)
        self.attention = "padded"  # or "varlen" (see uses_varlen); the engine probes before choosing

    def _ln(self, x: torch.Tensor, wb) -> torch.Tensor:
        return F.layer_norm(x, (self.hidden,), wb[0], wb[1], self.eps)

    def uses_varlen(self, x: torch.Tensor) -> bool:
        """Variable-length flash attention: CUDA, under bf16/fp16 autocast, when chosen."""
        return (self.attention == "varlen" and x.is_cuda and torch.is_autocast_enabled("cuda")
                and torch.get_autocast_dtype("cuda") in (torch.bfloat16, torch.float16))

    def forward(self, ids: torch.Tensor, lens: torch.Tensor, width: int | None = None,
                pos: torch.Tensor | None = None, slot: torch.Tensor | None = None,
                starts: torch.Tensor | None = None, max_len: int | None = None) -> torch.Tensor:
        device = ids.device
        rows = int(lens.numel())
        total = int(ids.numel())
        if max_len is None:
            max_len = int(lens.max())
        if width is None:
            width = max_len
        if pos is None or slot is None or starts is None:
            starts = torch.cumsum(lens, 0) - lens  # packed index of each row's [CLS]
            pos = torch.arange(total, device=device) - torch.repeat_interleave(starts, lens, output_size=total)
            row_of = torch.repeat_interleave(torch.arange(rows, device=device), lens, output_size=total)
            slot = row_of * width + pos  # where each packed token sits in the padded [rows * width] layout

        if self.position_offset:
            pos = pos + self.position_offset
        x = F.embedding(ids, self.word) + F.embedding(pos, self.position) + self.type0
        x = self._ln(x, self.emb_ln)
        h, nh, hd = self.hidden, self.heads, self.head_dim

        if self.uses_varlen(x):
            # packed [T, heads, hd] straight into flash attention: no padding, no mask, no scatter
            cu = torch.cat([starts, starts.new_full((1,), total)]).to(torch.int32)
            cu_rows = torch.arange(rows + 1, device=device, dtype=torch.int32)

            def attend(q, k, v, q_rows: bool = False):
                """q [T or rows, heads, hd], k/v [T, heads, hd] -> [T or rows, h]"""
                return varlen_attention(q, k, v, cu_rows if q_rows else cu, cu, 1 if q_rows else max_len,
                                        max_len).reshape(-1, h)

            def split(t: torch.Tensor, parts: int):
                return t.view(-1, parts, nh, hd).unbind(1)
        else:
            # padded [rows, heads, width, hd] for scaled_dot_product_attention with a key mask
            key_ok = (torch.arange(width, device=device)[None, :] < lens[:, None])[:, None, None, :]

            def attend(q, k, v, q_rows: bool = False):
                if q_rows:  # one query per row: [rows, heads, 1, hd]
                    return F.scaled_dot_product_attention(q.view(rows, nh, 1, hd), k, v,
                                                          attn_mask=key_ok).reshape(rows, h)
                a = F.scaled_dot_product_attention(q, k, v, attn_mask=key_ok)  # [rows, heads, width, hd]
                return a.transpose(1, 2).reshape(rows * width, h).index_select(0, slot)

            def split(t: torch.Tensor, parts: int):
                """packed [T, parts*h] -> parts x [rows, heads, width, hd]"""
                buf = t.new_zeros(rows * width, parts * h)
                buf.index_copy_(0, slot, t)
                return buf.view(rows, width, parts, nh, hd).permute(2, 0, 3, 1, 4).unbind(0)

        last = len(self.layers) - 1
        for i, L in enumerate(self.layers):
            if i < last:
                q, k, v = split(F.linear(x, L["qkv_w"], L["qkv_b"]), 3)
                x = self._ln(x + F.linear(attend(q, k, v), *L["out"]), L["ln1"])
                x = self._ln(x + F.linear(self.act(F.linear(x, *L["up"])), *L["down"]), L["ln2"])
            else:  # the classifier reads [CLS] only: queries and everything after for those rows
                k, v = split(F.linear(x, L["qkv_w"][h:], L["qkv_b"][h:]), 2)
                c = x.index_select(0, starts)  # [rows, h]
                q = F.linear(c, L["qkv_w"][:h], L["qkv_b"][:h]).view(rows, nh, hd)
                c = self._ln(c + F.linear(attend(q, k, v, q_rows=True), *L["out"]), L["ln1"])
                x = self._ln(c + F.linear(self.act(F.linear(c, *L["up"])), *L["down"]), L["ln2"])
        pooled = torch.tanh(F.linear(x, *self.pooler))
        return F.linear(pooled, *self.classifier)


def varlen_attention(q, k, v, cu_q, cu_k, max_q: int, max_k: int) -> torch.Tensor:
    """``torch.nn.attention.varlen.varlen_attn`` (flash attention on packed sequences; CUDA, torch >= 2.10)."""
    from torch.nn.attention.varlen import varlen_attn

    return varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k)
