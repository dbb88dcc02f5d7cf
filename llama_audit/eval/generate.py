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

The settings that decide the parts' bytes (benchmark, model directory, seed, length, batch and
part size, limit, decoding) are recorded as ``DIR/.generate.json`` (hidden: a scan of DIR skips
it); resuming with other settings would mix two runs' parts, so it is refused (``overwrite``: the
old parts are removed instead).
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
SETTINGS_FILE = ".generate.json"


def load_causal_lm(model_dir: str, device: str, flag: str = "--generate-with"):
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise ConfigError(f"{flag} needs torch and transformers; install with: pip install "
                          "'llama-audit[toxicity]'") from None
    path = Path(model_dir).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(f"{flag} {model_dir}: not a model directory (no config.json)")
    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True).eval()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{flag} {model_dir}: cannot be loaded ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    tok.padding_side = "left"  # a decoder continues the last token: pad on the left
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    return model, tok, device


def check_settings(out: Path, settings: dict, overwrite: bool) -> bool:
    """Refuse to resume parts written with other settings (``overwrite``: remove them). Parts
    without a record (written before it existed) are kept. Returns whether the record must be
    (re)written (:func:`record_settings`, once the model has loaded)."""
    path = out / SETTINGS_FILE
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    if old is not None and old != settings:
        if not overwrite:
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise ConfigError(f"{out}: its generations were made with other settings (differ in: {', '.join(diff)}); "
                              "use another --out, or --overwrite to generate them again")
        for part in out.glob("part-*.jsonl"):
            part.unlink()
    return old != settings


def record_settings(out: Path, settings: dict) -> None:
    atomic_write_bytes(out / SETTINGS_FILE, (json.dumps(settings, sort_keys=True, indent=1) + "\n").encode("utf-8"))


def generate_parts(benchmark: str, model_dir: str, out_dir: str | Path, *, seed: int = 0, batch_size: int = 16,
                   part_size: int | None = None, max_new_tokens: int = MAX_NEW_TOKENS, device: str = "auto",
                   limit: int | None = None, progress: Callable[[int], None] | None = None,
                   overwrite: bool = False) -> tuple[int, int]:
    """Generate the missing parts; returns ``(parts written, parts already there)``."""
    records = load_prompts(benchmark)[:limit]
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out_dir}: with --generate-with, give a directory (parts are written there)")
    out.mkdir(parents=True, exist_ok=True)
    part_size = part_size or PART_SIZE
    settings = {"benchmark": benchmark, "model": str(Path(model_dir).expanduser().resolve()), "seed": seed,
                "batch_size": batch_size, "part_size": part_size, "max_new_tokens": max_new_tokens,
                "limit": limit, "temperature": TEMPERATURE, "top_p": TOP_P}
    unrecorded = check_settings(out, settings, overwrite)
    parts = [records[i:i + part_size] for i in range(0, len(records), part_size)]
    todo = [k for k in range(len(parts)) if not (out / PART_NAME.format(k)).is_file()]
    if not todo:
        if unrecorded:
            record_settings(out, settings)
        return 0, len(parts)
    import torch

    model, tok, device = load_causal_lm(model_dir, device)
    if unrecorded:
        record_settings(out, settings)
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
