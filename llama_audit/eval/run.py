"""``llama-audit eval``: score a model's generations with the benchmark analyzers, through the
scan machinery.

Why a scan: generations are documents (the text field is the generation), so an eval OUT is a
scan OUT — resumable shard by shard, mergeable across machines (``llama-audit merge``), locked to
its configuration, reported by ``llama-audit report`` in every format. The benchmarks are opt-in
analyzers (``toxigen``, ``bold_sentiment``, ``truthfulqa``) that fold their counts per group themselves, so one
report section holds the whole per-group table the paper prints (Table 11 and its appendix).

TruthfulQA is scored only with a judge model (``--truthfulqa-judge DIR``): ``--benchmark all``
includes it then, and otherwise reports it as skipped (the paper's metric needs the judges).

With ``generate_with`` (``eval --generate-with MODEL_DIR``) and no GENERATIONS, the benchmark's
bundled prompts are generated first (:func:`llama_audit.eval.generate.generate_parts`, the same
decoding, seed and parts as ``prompts --generate-with``) into ``OUT/generations/<benchmark>/``,
then scored: one command where a model is at hand. A rerun resumes both halves (the missing parts,
then the missing shards). The folder is inside OUT so the run is one artefact, and it survives
``--overwrite`` of the scoring (OUT's own folders are cleared, not this one); its settings are
recorded beside the parts and another model or seed is refused there
(:func:`llama_audit.eval.generate.check_settings`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

from llama_audit.corpus.remote import is_url, local_path
from llama_audit.eval import prompts
from llama_audit.job import Hooks, ScanRequest, ScanResult, check_out, run_scan
from llama_audit.scan import ReadOptions
from llama_audit.types import ConfigError

#: benchmark -> the analyzer that scores it
BENCHMARK_ANALYZERS = {"truthfulqa": "truthfulqa", "toxigen": "toxigen", "bold": "bold_sentiment"}
BENCHMARK_CHOICES = (*BENCHMARK_ANALYZERS, "all")
#: benchmarks that need a judge model the user supplies (``all`` leaves them out without one)
JUDGED = ("truthfulqa",)
#: where ``eval --generate-with`` writes the generations of a benchmark, under OUT
GENERATIONS_DIR = "generations"


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
    truthfulqa_info_judge: str | None = None
    question_field: str = prompts.QUESTION_FIELD
    truthfulqa_options: dict = dataclasses.field(default_factory=dict)  # more truthfulqa options (device, batch_size)
    #: generate the benchmark's prompts with this local causal LM first (``paths`` then empty)
    generate_with: str | None = None
    generate_options: dict = dataclasses.field(default_factory=dict)  # seed, max_new_tokens, batch_size, limit, device
    workers: int = 1
    overwrite: bool = False
    strict: bool = False
    executor: str = "local"
    batch_docs: int | None = None


def analyzers_for(benchmark: str, judged: bool = False) -> list[str]:
    """The analyzers of ``benchmark``; ``all`` holds TruthfulQA only when a judge is given (``judged``)."""
    if benchmark == "all":
        return [a for b, a in BENCHMARK_ANALYZERS.items() if judged or b not in JUDGED]
    if benchmark not in BENCHMARK_ANALYZERS:
        raise ConfigError(f"--benchmark {benchmark!r}: choose one of {', '.join(BENCHMARK_CHOICES)}")
    return [BENCHMARK_ANALYZERS[benchmark]]


def check_request(req: EvalRequest) -> None:
    """One-line errors for options that do not fit together, before any work."""
    if req.benchmark == "truthfulqa" and not req.truthfulqa_judge:
        raise ConfigError("--benchmark truthfulqa needs --truthfulqa-judge DIR (a local TruthfulQA judge model, "
                          "e.g. allenai/truthfulqa-truth-judge-llama2-7B downloaded)")
    if req.truthfulqa_judge and req.benchmark not in ("truthfulqa", "all"):
        raise ConfigError(f"--truthfulqa-judge: --benchmark {req.benchmark} does not score TruthfulQA "
                          "(use --benchmark truthfulqa or all)")
    if req.truthfulqa_info_judge and not req.truthfulqa_judge:
        raise ConfigError("--truthfulqa-info-judge needs --truthfulqa-judge DIR too (the truth judge)")
    if req.generate_with is not None:
        if req.paths:
            raise ConfigError("GENERATIONS and --generate-with exclude each other: score existing generations, "
                              "or generate them (then give no GENERATIONS)")
        if req.benchmark == "all":
            raise ConfigError("--generate-with needs one --benchmark (toxigen, bold or truthfulqa): each is "
                              "generated from its own prompts")
        if is_url(local_path(str(req.out))):
            raise ConfigError("--generate-with writes its generations under --out: give a local OUT")
    elif not req.paths:
        raise ConfigError("give the GENERATIONS to score, or --generate-with MODEL_DIR to generate them first")


def generations_dir(req: EvalRequest) -> Path:
    """Where ``eval --generate-with`` writes the generations: ``OUT/generations/<benchmark>``."""
    return Path(local_path(str(req.out))) / GENERATIONS_DIR / req.benchmark  # file:// is its path


def scan_request(req: EvalRequest) -> ScanRequest:
    """The scan that scores ``req``: the generation is the text; the group, domain and prompt
    fields are the analyzers' options (BOLD scores prompt + generation, as the Llama 2 paper does;
    ToxiGen the generation alone)."""
    check_request(req)
    names = analyzers_for(req.benchmark, judged=bool(req.truthfulqa_judge))
    options: dict[str, dict] = {}
    if "truthfulqa" in names:
        options["truthfulqa"] = {"judge": req.truthfulqa_judge, "info_judge": req.truthfulqa_info_judge,
                                 "question_field": req.question_field, "group_field": req.group_field,
                                 **req.truthfulqa_options}
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
    paths = [str(generations_dir(req))] if req.generate_with is not None else list(req.paths)
    return ScanRequest(paths=paths, out=req.out, analyzers=names, languages=("all",), options=options,
                       read=read, strict=req.strict, overwrite=req.overwrite, workers=max(1, req.workers),
                       executor=req.executor)


def run_eval(req: EvalRequest, hooks: Hooks | None = None) -> ScanResult:
    """Score the generations of ``req`` into ``req.out`` (resumes a partial OUT of the same
    configuration, as ``scan`` does). With ``generate_with``: generate the missing parts first."""
    scan = scan_request(req)  # every option checked before a model is loaded
    if req.generate_with is not None:
        from llama_audit.eval.generate import generate_parts

        check_out(scan)  # an OUT of another configuration is refused before hours of generation
        generate_parts(req.benchmark, req.generate_with, generations_dir(req), overwrite=req.overwrite,
                       **req.generate_options)
    return run_scan(scan, hooks)
