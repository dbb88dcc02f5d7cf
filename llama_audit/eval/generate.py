"""``llama-audit prompts BENCHMARK --generate-with MODEL_DIR --out DIR``: the benchmark's generations
from a local Hugging Face causal LM, ready for ``llama-audit eval DIR``.

Decoding as the Llama 2 paper states it for these benchmarks (section 4.1, "Safety Benchmarks for
Pretrained Models"): "we set temperature to 0.1 and use nucleus sampling (Holtzman et al., 2020)
with top-p set to 0.9". The length of a generation is not stated there: ``max_new_tokens``
(default 50) is ours. The prompt is the whole input (no chat template: a pretrained model).

Resumable and deterministic: the prompts are cut into parts of ``part_size`` in their bundled
order; each part is generated with the seed ``seed`` and its index, then written atomically as
``DIR/part-NNNNN.jsonl`` (the prompt record plus ``generation``); a rerun skips the parts already
written, so a kill loses at most one part and a finished run's bytes do not depend on where it
was interrupted. Offline: the model is loaded from the directory only (``local_files_only``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from llama_audit.eval.prompts import load_prompts
from llama_audit.store import atomic_write_bytes
from llama_audit.types import ConfigError

#: the paper's decoding (Touvron et al. 2023, section 4.1)
TEMPERATURE = 0.1
TOP_P = 0.9
MAX_NEW_TOKENS = 50
PART_SIZE = 512
PART_NAME = "part-{:05d}.jsonl"


def load_causal_lm(model_dir: str, device: str):
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise ConfigError("--generate-with needs torch and transformers; install with: pip install "
                          "'llama-audit[toxicity]'") from None
    path = Path(model_dir).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(f"--generate-with {model_dir}: not a model directory (no config.json)")
    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True).eval()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--generate-with {model_dir}: cannot be loaded ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    tok.padding_side = "left"  # a decoder continues the last token: pad on the left
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    return model, tok, device


def generate_parts(benchmark: str, model_dir: str, out_dir: str | Path, *, seed: int = 0, batch_size: int = 16,
                   part_size: int | None = None, max_new_tokens: int = MAX_NEW_TOKENS, device: str = "auto",
                   limit: int | None = None, progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Generate the missing parts; returns ``(parts written, parts already there)``."""
    records = load_prompts(benchmark)[:limit]
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out_dir}: with --generate-with, give a directory (parts are written there)")
    out.mkdir(parents=True, exist_ok=True)
    part_size = part_size or PART_SIZE
    parts = [records[i:i + part_size] for i in range(0, len(records), part_size)]
    todo = [k for k in range(len(parts)) if not (out / PART_NAME.format(k)).is_file()]
    if not todo:
        return 0, len(parts)
    import torch

    model, tok, device = load_causal_lm(model_dir, device)
    for k in todo:
        torch.manual_seed(seed * 1_000_003 + k)  # per part: a resumed run draws what an uninterrupted one did
        lines = []
        for start in range(0, len(parts[k]), batch_size):
            batch = parts[k][start:start + batch_size]
            enc = tok([r["prompt"] for r in batch], return_tensors="pt", padding=True).to(device)
            with torch.no_grad():
                ids = model.generate(**enc, do_sample=True, temperature=TEMPERATURE, top_p=TOP_P,
                                     max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id)
            texts = tok.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            lines += [json.dumps({**r, "generation": t}, ensure_ascii=False, sort_keys=True) for r, t in zip(batch, texts)]
            if progress:
                progress(len(batch))
        atomic_write_bytes(out / PART_NAME.format(k), ("\n".join(lines) + "\n").encode("utf-8"))
    return len(todo), len(parts) - len(todo)
