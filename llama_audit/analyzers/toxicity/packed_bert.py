"""A BERT sequence classifier evaluated on packed (unpadded) tokens: same numbers, less work.

``transformers``' BERT computes every position of a padded ``[rows, width]`` batch: the padding of
short rows and, in the last layer, every token although the classifier reads only ``[CLS]``.
Scoring lines, both are waste: dense layers (about 90% of a BERT forward) dominate, and their
cost is linear in the tokens they see. :class:`PackedBert` runs the same weights so that

* the dense layers (fused Q/K/V projection, attention output, feed-forward) see only the real
  tokens of the batch, concatenated (``[tokens, hidden]``);
* attention scatters the packed Q/K/V into a padded ``[rows, heads, width, head_dim]`` layout for
  ``scaled_dot_product_attention`` with a key-padding mask, and gathers the real positions back;
* the last layer computes keys and values for every token but queries, attention output and
  feed-forward for the ``[CLS]`` rows only; then the pooler and the classifier.

Only plain BERT classifiers qualify (:func:`packed_or_reason`); anything else keeps the
``transformers`` forward. The engine also compares both forwards on a probe batch before using
this one (see ``engine.ToxicityEngine``). Build it after moving the model to its device: it
shares the model's weights, except for one fused copy of the Q/K/V projections.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

_ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


def packed_or_reason(model) -> tuple["PackedBert | None", str]:
    """``(PackedBert, "")`` for a plain BERT sequence classifier, else ``(None, why not)``."""
    cfg = getattr(model, "config", None)
    if type(model).__name__ != "BertForSequenceClassification" or cfg is None:
        return None, f"{type(model).__name__} is not BertForSequenceClassification"
    pet = getattr(cfg, "position_embedding_type", None) or "absolute"
    if pet != "absolute":
        return None, f"position_embedding_type {pet!r}"
    act = getattr(cfg, "hidden_act", None)
    if not isinstance(act, str) or act not in _ACTIVATIONS:
        return None, f"hidden_act {act!r}"
    if getattr(cfg, "is_decoder", False) or getattr(cfg, "add_cross_attention", False):
        return None, "decoder configuration"
    bert = getattr(model, "bert", None)
    if bert is None or getattr(bert, "pooler", None) is None:
        return None, "no pooler"
    if not isinstance(getattr(model, "classifier", None), torch.nn.Linear):
        return None, "classifier is not a single linear layer"
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
        emb = model.bert.embeddings
        self.hidden = int(cfg.hidden_size)
        self.heads = int(cfg.num_attention_heads)
        if self.hidden % self.heads:
            raise ValueError("hidden_size is not a multiple of num_attention_heads")
        self.head_dim = self.hidden // self.heads
        self.eps = float(cfg.layer_norm_eps)
        self.act = _ACTIVATIONS[cfg.hidden_act]
        self.word = emb.word_embeddings.weight
        self.position = emb.position_embeddings.weight
        self.type0 = emb.token_type_embeddings.weight[0]
        self.emb_ln = (emb.LayerNorm.weight, emb.LayerNorm.bias)
        self.layers = []
        for layer in model.bert.encoder.layer:
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
        self.pooler = (model.bert.pooler.dense.weight, model.bert.pooler.dense.bias)
        self.classifier = (model.classifier.weight, model.classifier.bias)

    def _ln(self, x: torch.Tensor, wb) -> torch.Tensor:
        return F.layer_norm(x, (self.hidden,), wb[0], wb[1], self.eps)

    def forward(self, ids: torch.Tensor, lens: torch.Tensor, width: int | None = None,
                pos: torch.Tensor | None = None, slot: torch.Tensor | None = None,
                starts: torch.Tensor | None = None) -> torch.Tensor:
        device = ids.device
        rows = int(lens.numel())
        total = int(ids.numel())
        if width is None:
            width = int(lens.max())
        if pos is None or slot is None or starts is None:
            starts = torch.cumsum(lens, 0) - lens  # packed index of each row's [CLS]
            pos = torch.arange(total, device=device) - torch.repeat_interleave(starts, lens, output_size=total)
            row_of = torch.repeat_interleave(torch.arange(rows, device=device), lens, output_size=total)
            slot = row_of * width + pos  # where each packed token sits in the padded [rows * width] layout
        key_ok = (torch.arange(width, device=device)[None, :] < lens[:, None])[:, None, None, :]

        x = F.embedding(ids, self.word) + F.embedding(pos, self.position) + self.type0
        x = self._ln(x, self.emb_ln)
        h, nh, hd = self.hidden, self.heads, self.head_dim

        def padded(t: torch.Tensor, parts: int) -> torch.Tensor:
            """packed [T, parts*h] -> [parts, rows, heads, width, head_dim]"""
            buf = t.new_zeros(rows * width, parts * h)
            buf.index_copy_(0, slot, t)
            return buf.view(rows, width, parts, nh, hd).permute(2, 0, 3, 1, 4)

        last = len(self.layers) - 1
        for i, L in enumerate(self.layers):
            if i < last:
                q, k, v = padded(F.linear(x, L["qkv_w"], L["qkv_b"]), 3)
                a = F.scaled_dot_product_attention(q, k, v, attn_mask=key_ok)  # [rows, heads, width, hd]
                a = a.transpose(1, 2).reshape(rows * width, h).index_select(0, slot)
                x = self._ln(x + F.linear(a, *L["out"]), L["ln1"])
                x = self._ln(x + F.linear(self.act(F.linear(x, *L["up"])), *L["down"]), L["ln2"])
            else:  # the classifier reads [CLS] only: queries and everything after for those rows
                k, v = padded(F.linear(x, L["qkv_w"][h:], L["qkv_b"][h:]), 2)
                c = x.index_select(0, starts)  # [rows, h]
                q = F.linear(c, L["qkv_w"][:h], L["qkv_b"][:h]).view(rows, nh, 1, hd)
                a = F.scaled_dot_product_attention(q, k, v, attn_mask=key_ok).reshape(rows, h)
                c = self._ln(c + F.linear(a, *L["out"]), L["ln1"])
                x = self._ln(c + F.linear(self.act(F.linear(c, *L["up"])), *L["down"]), L["ln2"])
        pooled = torch.tanh(F.linear(x, *self.pooler))
        return F.linear(pooled, *self.classifier)
