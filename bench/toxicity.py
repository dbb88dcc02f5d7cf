#!/usr/bin/env python
"""Toxicity engine vs ``transformers.pipeline("text-classification")``, side by side, same model and lines.

    python bench/toxicity.py                       # CPU/GPU auto, random BERT-base, offline
    python bench/toxicity.py --device cuda --repeat 8
    python bench/toxicity.py --model ~/hatebert --tokenizer ~/bert-base-uncased

Lines: ``bench/data/web_lines.txt`` (real web text from DCLM, MIT; see bench/data/README.md), in
document order, so duplicates occur as often as they do in the documents. The default model is a
randomly initialised BERT-base-sized classifier (12 layers, hidden 768, 30,522-token WordPiece
vocabulary made from the lines themselves), so the script needs no network; ``--model`` takes a
real one (directory or cached hub id).

The default CPU run takes the first 400 lines (about 2-3 minutes on 2 quiet cores); on CUDA all
lines, repeated 6 times. Contenders, each warmed up, over the same lines: the pipeline at one or
more ``batch_size`` values (the fastest is the baseline), our engine with its duplicate cache off
(sorting + token budget + background tokenizer only) and, on CUDA or with ``--cache-run``, with
the cache on (with ``--repeat`` most of its lines are repeats). They run in interleaved rounds
over slices of the lines, so a shared machine whose speed drifts treats them alike; per-round
ratios are printed too. Scores must agree (1e-4 in fp32, 2e-2 when bf16/fp16 is involved).
On CUDA it also prints the achieved fraction of the GPU's peak dense bf16 FLOP/s.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATA = Path(__file__).resolve().parent / "data" / "web_lines.txt"
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "H800": 989.0, "GH200": 989.0, "B200": 2250.0,
                    "A100": 312.0, "A800": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}


def read_lines(n: int | None, repeat: int) -> list[str]:
    lines = [s for s in DATA.read_text(encoding="utf-8").split("\n") if s.strip()]
    if n:
        lines = lines[:n]
    return lines * max(1, repeat)


def build_vocab(lines: list[str], size: int = 30522) -> list[str]:
    """A bert-base-shaped WordPiece vocabulary (30,522 entries) from the lines' own words."""
    specials = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    counts = collections.Counter(w for s in lines for w in re.findall(r"\w+|[^\w\s]", s.lower()))
    chars = sorted({c for w in counts for c in w})
    vocab = specials + chars + ["##" + c for c in chars]
    seen = set(vocab)
    for w, _ in counts.most_common():
        if len(vocab) >= size:
            break
        if w not in seen:
            vocab.append(w)
            seen.add(w)
    i = 99
    while len(vocab) < size:
        vocab.append(f"[unused{i}]")
        i += 1
    return vocab[:size]


def random_bert_base(lines: list[str], workdir: Path, seed: int):
    import inspect

    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    vocab_file = workdir / "vocab.txt"
    vocab_file.write_text("\n".join(build_vocab(lines)) + "\n", encoding="utf-8")
    params = inspect.signature(BertTokenizerFast.__init__).parameters
    if "vocab" in params and "vocab_file" not in params:  # transformers 5
        tok = BertTokenizerFast(vocab=str(vocab_file))
    else:
        tok = BertTokenizerFast(vocab_file=str(vocab_file))
    tok.model_max_length = 512
    torch.manual_seed(seed)
    cfg = BertConfig(num_labels=2, attn_implementation="sdpa")  # bert-base: 12 x 768, 30522 tokens
    model = BertForSequenceClassification(cfg).eval()
    return model, tok


def load_real(model_spec: str, tokenizer_spec: str):
    from llama_audit.analyzers.toxicity import model as m

    model = m.load_model(m.locate(model_spec, None, kind="model", option="--model"))
    tok = m.load_tokenizer(m.locate(tokenizer_spec, None, kind="tokenizer", option="--tokenizer"))
    m.check_pair(model, tok, model_spec, tokenizer_spec)
    return model, tok


def token_lengths(tok, lines: list[str], max_length: int) -> np.ndarray:
    enc = tok(lines, truncation=True, max_length=max_length, return_attention_mask=False, return_token_type_ids=False)
    return np.fromiter(map(len, enc["input_ids"]), dtype=np.int64, count=len(lines))


def pipeline_padding(lens: np.ndarray, batch_size: int) -> float:
    padded = sum(int(lens[i:i + batch_size].max()) * len(lens[i:i + batch_size]) for i in range(0, len(lens), batch_size))
    return 1.0 - lens.sum() / padded


def useful_flops(model, lens: np.ndarray) -> float:
    """~2 x non-embedding parameters per token + attention (QK^T and AV: 4 x layers x hidden x n^2 per line)."""
    cfg = model.config
    emb = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n)
    dense = sum(p.numel() for p in model.parameters()) - emb
    lens = lens.astype(np.float64)
    return 2.0 * dense * lens.sum() + 4.0 * cfg.num_hidden_layers * cfg.hidden_size * float((lens ** 2).sum())


def peak_tflops(device_name: str, override: float | None) -> float | None:
    if override:
        return override
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if key in device_name:
            return PEAK_BF16_TFLOPS[key]
    return None


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def make_pipeline(model, tok, device: str, batch_size: int, max_length: int, dtype):
    """A warmed-up ``transformers`` text-classification pipeline: lines -> label-1 probabilities."""
    import torch
    from transformers import pipeline

    label = model.config.id2label.get(1, "LABEL_1")
    pipe_model = model
    if device.startswith("cuda"):
        import copy

        pipe_model = copy.deepcopy(model).to(device=device, dtype=dtype or torch.float32)
    pipe = pipeline("text-classification", model=pipe_model, tokenizer=tok, device=torch.device(device),
                    batch_size=batch_size, top_k=None, function_to_apply="softmax")
    kw = dict(truncation=True, max_length=max_length)

    def score(lines: list[str]) -> np.ndarray:
        res = pipe(lines, **kw)
        return np.array([next(d["score"] for d in r if d["label"] == label) for r in res], dtype=np.float32)

    score(["warm up"] * min(2 * batch_size, 16))
    return score


def make_engine(model, tok, device: str, args, cache_lines: int, forward: str = "auto"):
    from llama_audit.analyzers.toxicity.engine import ToxicityEngine

    eng = ToxicityEngine(model, tok, device=device, max_length=args.max_length, batch_tokens=args.batch_tokens,
                         cache_lines=cache_lines, precision=args.precision, forward=forward)
    eng.score(["warm up line"] * (256 if device.startswith("cuda") else 4))
    eng.cache.clear()
    eng.reset_stats()
    return eng


def timed(fn, lines, device: str):
    sync(device)
    t0 = time.perf_counter()
    out = fn(lines)
    sync(device)
    return out, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=None, help="first N lines of the data file (default: 400 on CPU, all on CUDA)")
    ap.add_argument("--repeat", type=int, default=None, help="repeat the lines R times (default 1 on CPU, 6 on CUDA)")
    ap.add_argument("--model", default=None, help="classifier directory or cached hub id (default: random BERT-base)")
    ap.add_argument("--tokenizer", default="bert-base-uncased", help="tokenizer for --model")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--pipeline-batch-size", default=None,
                    help="pipeline batch_size(s), comma-separated (default 1,8 on CPU, where 1 is the pipeline's "
                         "fastest since unsorted batches pad; 64,256 on CUDA)")
    ap.add_argument("--batch-tokens", type=int, default=None, help="engine token budget (default: engine's choice)")
    ap.add_argument("--precision", default="auto", help="engine precision: auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--peak-tflops", type=float, default=None, help="peak dense bf16 TFLOP/s of the GPU (default: by name)")
    ap.add_argument("--cache-run", action=argparse.BooleanOptionalAction, default=None,
                    help="also time the engine with its duplicate cache on (default: on CUDA only)")
    ap.add_argument("--rounds", type=int, default=None,
                    help="interleaved timing rounds over slices of the lines (default 4 on CPU, 1 on CUDA)")
    ap.add_argument("--forward", default="auto", help="engine forward: auto | packed | transformers")
    ap.add_argument("--compare-forward", action=argparse.BooleanOptionalAction, default=True,
                    help="also time the engine with the transformers forward (default: on)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch
    from llama_audit.analyzers.toxicity.engine import resolve_devices, resolve_precision

    dev = resolve_devices(args.device)[0]  # the bench compares on one device
    device = str(dev)
    cuda = dev.type == "cuda"
    n_lines = args.lines if args.lines is not None else (None if cuda else 400)
    lines = read_lines(n_lines, args.repeat if args.repeat else (6 if cuda else 1))
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            model, tok = load_real(args.model, args.tokenizer)
            model_name = args.model
        else:
            model, tok = random_bert_base(lines, Path(tmp), args.seed)
            model_name = "random BERT-base (12 layers, hidden 768, vocab 30522)"
    amp = resolve_precision(args.precision, dev)
    batch_sizes = [int(x) for x in (args.pipeline_batch_size or ("64,256" if cuda else "1,8")).split(",")]
    lens = token_lengths(tok, lines, args.max_length)
    tokens = int(lens.sum())
    dev_name = torch.cuda.get_device_name(dev) if cuda else f"CPU, {torch.get_num_threads()} torch threads"
    print(f"model: {model_name}; {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")
    print(f"device: {device} ({dev_name}); engine precision {args.precision}"
          f"{'' if amp is None else ' -> ' + str(amp).replace('torch.', '')}; torch {torch.__version__}")
    print(f"data: {len(lines)} lines ({len(set(lines))} distinct), {tokens} tokens (mean {lens.mean():.1f}, "
          f"max {lens.max()}) from {DATA.relative_to(ROOT)}")

    with_cache = args.cache_run if args.cache_run is not None else cuda
    cudnn_default = torch.backends.cuda.cudnn_sdp_enabled() if cuda else None
    runners = {f"pipeline bs={bs}": make_pipeline(model, tok, device, bs, args.max_length, amp) for bs in batch_sizes}
    engines = {"engine": make_engine(model, tok, device, args, cache_lines=0, forward=args.forward)}
    if args.compare_forward and engines["engine"].forward_impl == "packed":
        engines["engine hf-forward"] = make_engine(model, tok, device, args, cache_lines=0, forward="transformers")
    if with_cache:
        engines["engine+cache"] = make_engine(model, tok, device, args, cache_lines=500_000, forward=args.forward)
    runners.update({k: e.score for k, e in engines.items()})
    # an engine may turn cuDNN attention off for the process; each contender runs as it would alone
    cudnn = {k: (not engines[k].cudnn_attention_off) if k in engines else cudnn_default for k in runners}
    # interleaved rounds over consecutive slices of the lines, alternating the order, so that a
    # machine whose speed drifts (shared CPUs) treats every contender alike
    rounds = max(1, min(args.rounds if args.rounds else (1 if cuda else 4), len(lines)))
    bounds = np.linspace(0, len(lines), rounds + 1).astype(int)
    scores = {k: [] for k in runners}
    per_round = {k: [] for k in runners}
    cpu_s = dict.fromkeys(runners, 0.0)
    for r in range(rounds):
        part = lines[bounds[r]:bounds[r + 1]]
        names = list(runners) if r % 2 == 0 else list(runners)[::-1]
        for name in names:
            if cuda:
                torch.backends.cuda.enable_cudnn_sdp(bool(cudnn[name] and cudnn_default))
            c0 = os.times()
            out, wall = timed(runners[name], part, device)
            c1 = os.times()
            cpu_s[name] += (c1.user - c0.user) + (c1.system - c0.system)
            scores[name].append(out)
            per_round[name].append(wall)
    walls = {k: float(sum(v)) for k, v in per_round.items()}
    scores = {k: np.concatenate(v) for k, v in scores.items()}
    pipes = [k for k in runners if k.startswith("pipeline")]
    base = min(pipes, key=lambda k: walls[k])  # the pipeline's best setting is the baseline
    e0 = engines["engine"].stats()
    tol = 1e-4 if amp is None else 2e-2
    diffs = {f"{k} vs {base}": float(np.abs(scores[k] - scores[base]).max()) for k in runners if k != base}
    ok = all(d <= tol for d in diffs.values())

    def row(name, extra=""):
        wall = walls[name]
        return (f"  {name:<18} {wall:8.2f} s  {len(lines) / wall:8.1f} lines/s  {tokens / wall:10.0f} tokens/s"
                f"  x{walls[base] / wall:5.2f}{extra}")

    print(f"\nresults, {rounds} interleaved round(s); tokens/s counts every input line's tokens, duplicates "
          f"included; xN = speed-up over the fastest pipeline ({base}):")
    for k in pipes:
        print(row(k, f"   padding waste {pipeline_padding(lens, int(k.split('=')[1])):.1%}"))
    print(row("engine", f"   padding waste {e0['padding_waste']:.1%}{' (attention only)' if e0['forward'] == 'packed' else ''},"
                        f" {e0['batches']} batches, budget {e0['batch_tokens']} tokens, no cache, {e0['forward']} forward"
                        f" ({e0['forward_note']})"))
    if "engine hf-forward" in engines:
        eh = engines["engine hf-forward"].stats()
        print(row("engine hf-forward", f"   padding waste {eh['padding_waste']:.1%}, {eh['batches']} batches,"
                                       " the same engine with the transformers forward"))
    if with_cache:
        e1 = engines["engine+cache"].stats()
        print(row("engine+cache", f"   cache hit rate {e1['cache_hit_rate']:.1%}, padding waste {e1['padding_waste']:.1%}"))
    for k in pipes:
        rr = np.array(per_round[k]) / np.array(per_round["engine"])
        print(f"  engine vs {k}: x{walls[k] / walls['engine']:.2f} overall; per round median x{np.median(rr):.2f} "
              f"(min x{rr.min():.2f}, max x{rr.max():.2f})")
    print("  process CPU time: " + ", ".join(f"{k} {v:.0f} s" for k, v in cpu_s.items())
          + f"; tokenizer thread busy {e0['tokenize_s']:.2f} s, scoring loop waited {e0['wait_s']:.2f} s for it")
    print("agreement (max |diff|): " + "; ".join(f"{k} {v:.2e}" for k, v in diffs.items())
          + f"  -> {'OK' if ok else 'MISMATCH'} (tolerance {tol:g})")
    if cuda:
        flops = useful_flops(model, lens)
        peak = peak_tflops(dev_name, args.peak_tflops)
        for name, wall in ((base, walls[base]), ("engine", walls["engine"])):
            tf = flops / wall / 1e12
            frac = f", {tf / peak:.1%} of {peak:g} TFLOP/s peak dense bf16" if peak else " (peak unknown: --peak-tflops)"
            print(f"  {name}: {tf:.1f} useful TFLOP/s{frac}")
        print(f"  peak GPU memory {torch.cuda.max_memory_allocated(dev) / 2**30:.1f} GiB")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
