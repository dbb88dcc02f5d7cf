#!/usr/bin/env python
"""Generations scored per second by ``llama-audit eval`` (docs/eval.md), per benchmark, on this machine.

    python bench/eval_throughput.py                      # CPU, 400 generations, random RoBERTa-base
    python bench/eval_throughput.py --n 4000 --device cuda --size large
    python bench/eval_throughput.py --toxicity-model ~/toxigen_roberta

Generations: each benchmark's bundled prompts (the first ``--n``; a benchmark scores only its own
prompts' generations), each with a generation of about 28 words, the prompt's first 8 words then
a fixed continuation (about as long as 50 generated tokens, ``prompts --generate-with``'s
default; distinct, so the duplicate-line cache scores each; BOLD scores prompt + generation,
ToxiGen the generation). The run checks that the classifier scored every generation. Contenders, each over the same file, each a full ``eval`` into a fresh
OUT (job planning, reading, annotation and partial writing included, and loading the classifier:
each eval loads it afresh, and the BERT packed forward also runs its probe; a warm-up run on 8
generations first fills the import and file caches):

- ``bold``: VADER compound per generation (pure Python, one core);
- ``toxigen``: the ToxiGen classifier through the toxicity engine. Without ``--toxicity-model`` it is
  a randomly initialised RoBERTa classifier of the paper's architecture family (``--size base``:
  12 layers, hidden 768; ``large``: 24 x 1024, the size of tomh/toxigen_roberta) with a WordPiece
  vocabulary built from the generations, so no network is needed and the speed is the real model's
  (scores are meaningless). Twice, side by side: the engine's packed forward (what ``auto``
  picks after its probe; RoBERTa's positions and head handled) and the ``transformers`` forward;
  ``--family bert`` measures the same on a BERT of the same size.

Prints generations per second for each, and the packed / transformers ratio. Not a timed test:
numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONTINUATION = ("and was later known for the work that followed, which many people in the field still "
                "discuss with some interest today")
SIZES = {"tiny": (2, 64, 2), "base": (12, 768, 12), "large": (24, 1024, 16)}


def write_generations(folder: Path, n: int, benchmark: str = "bold") -> Path:
    """The first ``n`` prompts of ``benchmark`` (each benchmark scores its own generations only:
    ``meta.benchmark``), each with the fixed continuation."""
    from llama_audit.eval.prompts import load_prompts

    rows = load_prompts(benchmark)[:n]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "generations.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for i, r in enumerate(rows):
            # distinct generations: the engine's duplicate-line cache would score one repeated text once
            head = " ".join(r["prompt"].split()[:8])
            f.write(json.dumps({**r, "generation": f"{head} (number {i}) {CONTINUATION}"}) + "\n")
    return path


def random_classifier(folder: Path, texts: list[str], size: str, family: str) -> Path:
    import inspect

    import torch
    import transformers
    from transformers import BertTokenizerFast

    words = sorted({w for t in texts for w in t.lower().replace(",", " ").replace(".", " ").split()})
    chars = sorted({c for t in texts for c in t.lower() if not c.isspace()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars] + words
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    params = inspect.signature(BertTokenizerFast.__init__).parameters
    tok = (BertTokenizerFast(vocab=str(folder / "vocab.txt")) if "vocab" in params and "vocab_file" not in params
           else BertTokenizerFast(vocab_file=str(folder / "vocab.txt")))
    tok.model_max_length = 512
    layers, hidden, heads = SIZES[size]
    common = dict(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                  intermediate_size=4 * hidden, num_labels=2)
    torch.manual_seed(0)
    if family == "roberta":
        model = transformers.RobertaForSequenceClassification(
            transformers.RobertaConfig(max_position_embeddings=514, pad_token_id=0, **common))
    else:
        model = transformers.BertForSequenceClassification(transformers.BertConfig(max_position_embeddings=512, **common))
    model.eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def timed_eval(path: Path, out: Path, benchmark: str, model: str | None, device: str,
               forward: str = "auto") -> float:
    from llama_audit.eval.run import EvalRequest, run_eval

    shutil.rmtree(out, ignore_errors=True)
    req = EvalRequest(paths=[str(path)], out=str(out), benchmark=benchmark, toxicity_model=model,
                      toxicity_options={"device": device, "self_test": False, "forward": forward})
    t0 = time.perf_counter()
    result = run_eval(req)
    seconds = time.perf_counter() - t0
    assert not result.failed, result.failed
    section = json.loads((out / "manifest.json").read_text())  # every generation was scored, none skipped
    stats = section["runs"][-1]["analyzer_stats"].get("toxigen")
    if benchmark == "toxigen":
        assert stats and stats["lines_scored"] == result.documents, stats  # no generation left out or cached
        timed_eval.model_tokens_per_s = stats["model_tokens_per_s"]  # the forward alone (no load, no probe)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--n", type=int, default=400, help="generations (default 400)")
    ap.add_argument("--size", choices=sorted(SIZES), default="base")
    ap.add_argument("--family", choices=("roberta", "bert"), default="roberta")
    ap.add_argument("--toxicity-model", default=None, help="a real ToxiGen classifier (directory or cached hub id)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        gens = write_generations(tmp / "gen", args.n)
        warm = write_generations(tmp / "warm", 8)
        tox_gens = write_generations(tmp / "tox_gen", args.n, "toxigen")
        tox_warm = write_generations(tmp / "tox_warm", 8, "toxigen")
        texts = [r["prompt"] + r["generation"] for path in (gens, tox_gens)
                 for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())]
        model = args.toxicity_model or str(random_classifier(tmp / "model", texts, args.size, args.family))
        what = args.toxicity_model or f"random {args.family}-{args.size}"
        print(f"{args.n} generations per benchmark (its first prompts, a fixed continuation), device {args.device}")
        timed_eval(warm, tmp / "warm_out", "bold", model, args.device)  # imports, model files cached
        seconds = timed_eval(gens, tmp / "out", "bold", model, args.device)
        print(f"  {'bold (VADER)':48s} {args.n / seconds:10.1f} generations/s  ({seconds:.2f} s)")
        timed_eval(tox_warm, tmp / "warm_out", "toxigen", model, args.device)
        rates, forward_rates = {}, {}
        for forward in ("packed", "transformers", "packed", "transformers"):  # interleaved: the machine is shared
            seconds = timed_eval(tox_gens, tmp / "out", "toxigen", model, args.device, forward)
            rates.setdefault(forward, []).append(args.n / seconds)
            forward_rates.setdefault(forward, []).append(timed_eval.model_tokens_per_s)
            label = f"toxigen ({what}, {forward} forward)"
            print(f"  {label:48s} {args.n / seconds:10.1f} generations/s  ({seconds:.2f} s; forward alone "
                  f"{timed_eval.model_tokens_per_s:,.0f} tokens/s)")
        best = {k: max(v) for k, v in rates.items()}
        fast = {k: max(v) for k, v in forward_rates.items()}
        print(f"  toxigen packed / transformers forward (best of 2 each): x{best['packed'] / best['transformers']:.2f} "
              f"whole eval (the packed forward's probe at load included), x{fast['packed'] / fast['transformers']:.2f} "
              "forward alone")


if __name__ == "__main__":
    main()
