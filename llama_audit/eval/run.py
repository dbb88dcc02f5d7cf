"""``llama-audit eval``: score a model's generations with the benchmark analyzers, through the
scan machinery.

Why a scan: generations are documents (the text field is the generation), so an eval OUT is a
scan OUT — resumable shard by shard, mergeable across machines (``llama-audit merge``), locked to
its configuration, reported by ``llama-audit report`` in every format. The benchmarks are opt-in
analyzers (``toxigen``, ``bold_sentiment``) that fold their counts per group themselves, so one
report section holds the whole per-group table the paper prints (Table 11 and its appendix).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from llama_audit.eval import prompts
from llama_audit.job import Hooks, ScanRequest, ScanResult, run_scan
from llama_audit.scan import ReadOptions
from llama_audit.types import ConfigError

#: benchmark -> the analyzer that scores it
BENCHMARK_ANALYZERS = {"toxigen": "toxigen", "bold": "bold_sentiment"}
BENCHMARK_CHOICES = (*BENCHMARK_ANALYZERS, "all")
TRUTHFULQA_JUDGE_MISSING = ("--truthfulqa-judge: the TruthfulQA judge is not implemented in this version of "
                            "llama-audit; drop the option (TruthfulQA is reported as skipped)")


@dataclasses.dataclass
class EvalRequest:
    paths: Sequence[str]
    out: str
    benchmark: str = "all"
    generation_field: str = "generation"
    prompt_field: str = prompts.PROMPT_FIELD
    group_field: str = prompts.GROUP_FIELD
    domain_field: str = prompts.DOMAIN_FIELD
    id_field: str = "id"
    toxicity_model: str | None = None
    toxicity_tokenizer: str | None = None
    toxicity_options: dict = dataclasses.field(default_factory=dict)  # more toxigen options (device, self_test...)
    truthfulqa_judge: str | None = None
    workers: int = 1
    overwrite: bool = False
    strict: bool = False
    executor: str = "local"
    batch_docs: int | None = None


def analyzers_for(benchmark: str) -> list[str]:
    if benchmark == "all":
        return list(BENCHMARK_ANALYZERS.values())
    if benchmark not in BENCHMARK_ANALYZERS:
        raise ConfigError(f"--benchmark {benchmark!r}: choose one of {', '.join(BENCHMARK_CHOICES)}")
    return [BENCHMARK_ANALYZERS[benchmark]]


def scan_request(req: EvalRequest) -> ScanRequest:
    """The scan that scores ``req``: the generation is the text; the group, domain and prompt
    fields are the analyzers' options (BOLD scores prompt + generation, as the Llama 2 paper does;
    ToxiGen the generation alone)."""
    if req.truthfulqa_judge is not None:
        raise ConfigError(TRUTHFULQA_JUDGE_MISSING)
    names = analyzers_for(req.benchmark)
    options: dict[str, dict] = {}
    if "toxigen" in names:
        tox = {"group_field": req.group_field, **req.toxicity_options}
        if req.toxicity_model is not None:
            tox["model"] = req.toxicity_model
            tox.setdefault("tokenizer", req.toxicity_model)
        if req.toxicity_tokenizer is not None:
            tox["tokenizer"] = req.toxicity_tokenizer
        options["toxigen"] = tox
    if "bold_sentiment" in names:
        options["bold_sentiment"] = {"group_field": req.group_field, "domain_field": req.domain_field,
                                     "prompt_field": req.prompt_field}
    read = ReadOptions(text_field=req.generation_field, id_field=req.id_field, batch_docs=req.batch_docs)
    return ScanRequest(paths=list(req.paths), out=req.out, analyzers=names, languages=("all",), options=options,
                       read=read, strict=req.strict, overwrite=req.overwrite, workers=max(1, req.workers),
                       executor=req.executor)


def run_eval(req: EvalRequest, hooks: Hooks | None = None) -> ScanResult:
    """Score the generations of ``req`` into ``req.out`` (resumes a partial OUT of the same
    configuration, as ``scan`` does)."""
    return run_scan(scan_request(req), hooks)
