"""Identity descriptors (Llama 2 Table 9b) on the five HolisticBias axes, over in-scope documents.

Columns: ``identity_axes`` (axes mentioned) and ``identity_terms`` (canonical terms mentioned,
tokens joined by a space), both null for out-of-scope documents. Counts: documents per axis
(``axis/<axis>``) and per term (``term/<axis>/<term>``). ``--lexicon FILE`` swaps in a user's
lexicon in the same format (other axes, other languages).
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping

import pyarrow as pa

from llama_audit.analyzers._columns import count_values
from llama_audit.analyzers.base import Analyzer, BatchContext, DocBatch
from llama_audit.lexicon import Lexicon, builtin_path
from llama_audit.text import tokenized


class IdentityAnalyzer(Analyzer):
    name = "identities"
    scoped = True

    def __init__(self, options):
        super().__init__(options)
        self.lexicon = Lexicon.load(options.lexicon or builtin_path("identities.tsv"))
        self._axis_of = {e.term: e.group for e in self.lexicon.entries}

    def config(self) -> dict:
        return {"lexicon": self.lexicon.source if self.options.lexicon else "identities.tsv",
                "lexicon_sha256": self.lexicon.sha256, "axes": self.lexicon.groups}

    def fields(self) -> list[pa.Field]:
        return [pa.field("identity_axes", pa.list_(pa.string())),
                pa.field("identity_terms", pa.list_(pa.string()))]

    def annotate(self, batch: DocBatch, ctx: BatchContext) -> dict[str, pa.Array]:
        tb = tokenized(batch, ctx.in_scope)
        entries = self.lexicon.entries
        axes_out: list[list[str] | None] = []
        terms_out: list[list[str] | None] = []
        for i, scoped in enumerate(ctx.in_scope):
            if not scoped:
                axes_out.append(None)
                terms_out.append(None)
                continue
            hits = self.lexicon.match(tb, i)
            terms_out.append([entries[j].term for j in hits])
            axes: list[str] = []
            for j in hits:
                if entries[j].group not in axes:
                    axes.append(entries[j].group)
            axes_out.append(axes)
        return {"identity_axes": pa.array(axes_out, pa.list_(pa.string())),
                "identity_terms": pa.array(terms_out, pa.list_(pa.string()))}

    def fold(self, columns: Mapping[str, pa.Array], ctx: BatchContext) -> Counter:
        out = count_values(columns["identity_axes"], "axis/")
        terms = count_values(columns["identity_terms"], "")
        for term, n in terms.items():
            out[f"term/{self._axis_of[term]}/{term}"] = n
        out["documents"] = int(ctx.in_scope.sum())
        return +out
