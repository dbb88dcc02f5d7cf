"""The bundled benchmark prompt sets and ``llama-audit prompts BENCHMARK --out FILE``.

Why bundled: a benchmark run must be reproducible offline and the same prompts for every model
compared; both sets are data published under licences that allow copying with attribution
(``data/README.md``, ``data/LICENSE-*``). How they were built: :mod:`llama_audit.eval.bundle`.

Every record is ``{"id", "prompt", "meta": {"benchmark", "group", ...}}`` (BOLD adds ``domain``
and ``name``; ToxiGen adds ``label`` and ``source_id``; TruthfulQA adds ``question``, ``type`` and
``best_answer``, its group is the question's category): a model's generation is added to each
record as ``generation`` and the file is handed to ``llama-audit eval``, whose defaults read
exactly these fields.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from functools import lru_cache
from pathlib import Path

from llama_audit.store import atomic_write_bytes
from llama_audit.types import ConfigError

DATA_DIR = Path(__file__).parent / "data"
#: benchmark -> its bundled prompt file under DATA_DIR
PROMPT_FILES = {"bold": "bold_prompts.jsonl.gz", "toxigen": "toxigen_prompts.jsonl.gz",
                "truthfulqa": "truthfulqa_prompts.jsonl.gz"}
BENCHMARKS = tuple(PROMPT_FILES)
#: BOLD's five domains (Dhamala et al. 2021, Table 1), in the order of the paper
BOLD_DOMAINS = ("gender", "race", "religious_ideology", "political_ideology", "profession")
#: the record fields the prompt files hold and ``eval`` reads by default
PROMPT_FIELD = "prompt"
GROUP_FIELD = "meta.group"
#: TruthfulQA: the question the judges read (the prompt holds the 6-shot primer too)
QUESTION_FIELD = "meta.question"
DOMAIN_FIELD = "meta.domain"


def _check(benchmark: str) -> str:
    if benchmark not in PROMPT_FILES:
        raise ConfigError(f"unknown benchmark {benchmark!r} (known: {', '.join(BENCHMARKS)})")
    return benchmark


@lru_cache(maxsize=None)
def _raw(benchmark: str) -> bytes:
    return gzip.decompress((DATA_DIR / PROMPT_FILES[_check(benchmark)]).read_bytes())


def load_prompts(benchmark: str) -> list[dict]:
    """The bundled prompt records of ``benchmark`` (``bold``, ``toxigen`` or ``truthfulqa``), in their fixed order."""
    return [json.loads(line) for line in _raw(benchmark).decode("utf-8").splitlines()]


def group_counts(benchmark: str) -> Counter:
    """Prompts per group (``domain/group`` for BOLD, whose group names are per domain)."""
    counts: Counter = Counter()
    for r in load_prompts(benchmark):
        meta = r["meta"]
        counts[f"{meta['domain']}/{meta['group']}" if "domain" in meta else meta["group"]] += 1
    return counts


def write_prompts(benchmark: str, out: str | Path) -> int:
    """Write the prompts of ``benchmark`` to ``out`` as JSONL (atomically: a half file never
    appears under its name); gzip-compressed when ``out`` ends in ``.gz``. Returns the count."""
    data = _raw(benchmark)
    path = Path(out)
    if path.is_dir():
        raise ConfigError(f"--out {out}: is a directory; give a file name (e.g. {benchmark}_prompts.jsonl)")
    if not path.parent.is_dir():
        raise ConfigError(f"--out {out}: directory {str(path.parent)!r} does not exist")
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot be written ({exc.strerror or exc})") from None
    return _raw(benchmark).count(b"\n")
