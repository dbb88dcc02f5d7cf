"""How a redacted text reads: each PII span replaced by its type (the format layer,
:meth:`llama_audit.corpus.Format.rewrite`, writes it back in place)."""

from __future__ import annotations


def redact_spans(text: str, spans: list[dict]) -> str:
    """Replace each (type, start, end) span by ``<TYPE>``; overlapping spans merge into the first."""
    out, pos = [], 0
    for s in sorted(spans, key=lambda s: (s["start"], -s["end"])):
        start, end = s["start"], s["end"]
        if start < pos:
            continue
        out.append(text[pos:start])
        out.append(f"<{s['type']}>")
        pos = end
    out.append(text[pos:])
    return "".join(out)
