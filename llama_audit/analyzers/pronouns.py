"""Pronoun representation (Llama 2 Table 9a), over in-scope documents.

Column ``pronoun_groups``: the groups (she, he, unspecified, 1st, 2nd, 3rd) whose words occur in
the document; null for out-of-scope documents. Counts: documents per group, plus the two
headers (``gender``: any she/he/unspecified word; ``person``: any 1st/2nd/3rd word).
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping

import pyarrow as pa

from llama_audit.analyzers._columns import count_rows_with_any, count_values
from llama_audit.analyzers.base import Analyzer, BatchContext, DocBatch
from llama_audit.lexicon import Lexicon, builtin_path
from llama_audit.text import tokenized

GENDER_GROUPS = ["she", "he", "unspecified"]
PERSON_GROUPS = ["1st", "2nd", "3rd"]


class PronounAnalyzer(Analyzer):
    name = "pronouns"
    scoped = True

    def __init__(self, options):
        super().__init__(options)
        path = options.extra.get("pronoun_lexicon") or builtin_path("pronouns.tsv")
        self.lexicon = Lexicon.load(path, allow_multi_group=True)

    def config(self) -> dict:
        return {"lexicon": self.lexicon.source if self.options.extra.get("pronoun_lexicon") else "pronouns.tsv",
                "lexicon_sha256": self.lexicon.sha256}

    def fields(self) -> list[pa.Field]:
        return [pa.field("pronoun_groups", pa.list_(pa.string()))]

    def annotate(self, batch: DocBatch, ctx: BatchContext) -> dict[str, pa.Array]:
        tb = tokenized(batch, ctx.in_scope)
        entries, groups = self.lexicon.entries, self.lexicon.groups
        order = {g: k for k, g in enumerate(groups)}
        out: list[list[str] | None] = []
        for i, scoped in enumerate(ctx.in_scope):
            if not scoped:
                out.append(None)
                continue
            found = {entries[j].group for j in self.lexicon.match(tb, i)}
            out.append(sorted(found, key=order.__getitem__))
        return {"pronoun_groups": pa.array(out, pa.list_(pa.string()))}

    def fold(self, columns: Mapping[str, pa.Array], ctx: BatchContext) -> Counter:
        col = columns["pronoun_groups"]
        out = count_values(col, "documents/")
        out["documents"] = int(ctx.in_scope.sum())
        out["documents/gender"] = count_rows_with_any(col, GENDER_GROUPS)
        out["documents/person"] = count_rows_with_any(col, PERSON_GROUPS)
        return +out
