"""What the benchmark analyzers share: per-group count keys, the mean interval, the paper's
Table 11 and the TruthfulQA status.

Counts must be additive integers (a partial is a sum; shards merge in any order), so per-group
numbers are folded under keys that name the group: a JSON list ``[kind, group...]``, which any
group value (user data, with any character) survives. Group values are normalized as
``scan --group-by`` does (:meth:`llama_audit.groups.GroupBy.value`: a missing field is
``(none)``, long values are cut).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

from llama_audit.groups import MISSING, GroupBy
from llama_audit.report.section import Z_95

REFERENCE_FILE = Path(__file__).parent / "reference.json"
#: why TruthfulQA is not scored without a judge (the paper's metric needs two fine-tuned judges)
TRUTHFULQA_SKIPPED = ("needs judge models: the paper scores TruthfulQA with fine-tuned GPT-3 judges of truthfulness "
                      "and informativeness (Lin et al. 2022); pass local replicas with --truthfulqa-judge DIR and "
                      "--truthfulqa-info-judge DIR (docs/eval.md)")


def group_key(kind: str, *parts: str) -> str:
    return json.dumps([kind, *parts], ensure_ascii=False, separators=(",", ":"))


def parse_key(key: str) -> list[str] | None:
    """``[kind, group...]`` of a key written by :func:`group_key`, else None."""
    if not key.startswith("["):
        return None
    try:
        value = json.loads(key)
    except ValueError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def group_values(field: str, raw: Sequence[Any] | None, n: int) -> list[str]:
    """The group of each of ``n`` documents from the values read at ``field`` (``""``: no field)."""
    if not field:
        return [""] * n
    grouping = GroupBy.parse(field)
    return [grouping.value(v) for v in (raw if raw is not None else [None] * n)]


#: the record field naming the benchmark a prompt belongs to (``meta.benchmark`` of the bundled
#: prompts): with ``eval --benchmark all`` over both prompt sets, each benchmark scores its own
#: generations only, as the paper does (a BOLD generation is not a ToxiGen one)
BENCHMARK_FIELD = "meta.benchmark"
#: the count of generations of another benchmark (not scored), a key without a group
OTHER_BENCHMARK = group_key("other_benchmark")


def of_another_benchmark(values: Sequence[Any] | None, benchmark: str, n: int) -> list[bool]:
    """Which of ``n`` documents name another benchmark at the benchmark field (a record without
    the field, or with a non-text value, belongs to any benchmark)."""
    return [isinstance(v, str) and v != benchmark for v in (values if values is not None else [None] * n)]


def other_benchmark_warning(analyzer: str, counts: Counter) -> list[str]:
    """A warning when every generation belongs to another benchmark (``eval --benchmark toxigen``
    over BOLD generations); a mix (``--benchmark all`` over both sets) is what is expected."""
    k = counts.get(OTHER_BENCHMARK, 0)
    if not k or any(v for key, v in counts.items() if key != OTHER_BENCHMARK):
        return []
    return [f"{analyzer}: all {k:,} generation(s) belong to another benchmark ({BENCHMARK_FIELD}); none was scored "
            "(is --benchmark right?)"]


def column_values(col: Any) -> list:
    """The values of an annotation column (an Arrow array, chunked or not, or a plain sequence)."""
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    return col.to_pylist() if isinstance(col, pa.Array) else list(col)


def no_group_warning(analyzer: str, counts: Counter, kind: str) -> list[str]:
    """A warning when counts of ``kind`` exist and every one is in the missing-field group: the
    group field is in no generation (a typo, or files without labels), so the per-group tables
    would hold one row ``(none)``."""
    parsed = [parse_key(key) for key, value in counts.items() if value]
    groups = {tuple(p[1:]) for p in parsed if p and p[0] == kind}
    if groups and all(g[-1] == MISSING for g in groups):
        return [f"{analyzer}: no generation has a group (is --group-field right?); every one is in the group "
                f"{MISSING!r}"]
    return []


def tally(keys: Iterable[tuple[str, ...]], values: Iterable[int]) -> Counter:
    out: Counter = Counter()
    for k, v in zip(keys, values):
        if v:
            out[group_key(*k)] += int(v)
    return out


def mean_ci95(n: int, total: float, total_sq: float) -> tuple[float | None, list[float] | None]:
    """The mean of ``n`` values from their sum and sum of squares, with a 95% normal interval
    (mean ± z_0.975 · s/√n, s the sample standard deviation). A normal, not a Student t, interval:
    t quantiles need a statistics library we do not depend on, and the two differ by under 2%
    of the width from 60 values on (t_0.975,59 = 2.001 vs 1.960); BOLD's smallest group
    (hinduism) has 12 prompts, where t would be 10% wider: read such rows with care."""
    if n <= 0:
        return None, None
    mean = total / n
    if n == 1:
        return mean, None
    var = max(0.0, (total_sq - n * mean * mean) / (n - 1))
    half = Z_95 * math.sqrt(var / n)
    return mean, [mean - half, mean + half]


@lru_cache(maxsize=1)
def paper_reference() -> dict:
    """The paper's Table 11 and Table 14 (``reference.json``)."""
    return json.loads(REFERENCE_FILE.read_text(encoding="utf-8"))


#: the paper's models whose per-group numbers the human tables show (JSON and CSV: all four sizes)
TABLE_MODELS = ("Llama 2 7B", "Llama 2 70B")


def paper_by_group(table: str, group: str) -> dict[str, float]:
    """The paper's number for one group, per Llama 2 model (``{}`` where the paper has none)."""
    return {model: groups[group] for model, groups in paper_reference()[table].items() if group in groups}


def table11_rows() -> list[dict]:
    """Table 11 (pretrained models) as ``[{"model", "truthfulqa_pct", "toxigen_pct"}]``."""
    ref = paper_reference()
    return [{"model": name, **dict(zip(ref["columns"], values, strict=True))}
            for name, values in ref["table11_pretrained"].items()]
