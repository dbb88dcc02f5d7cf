"""Finding, checking and loading the toxicity classifier and its tokenizer, offline first.

A model or tokenizer is named by a local directory or a Hugging Face hub id. Hub ids are looked
up in the local Hugging Face cache only (``try_to_load_from_cache``: file-system reads, no network,
no retries); downloading is the job of ``llama-audit models fetch``. Nothing here imports torch or
transformers except :func:`load_model` and :func:`load_tokenizer`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
from pathlib import Path

from llama_audit.hashing import file_sha256
from llama_audit.types import AnalyzerUnavailable, ConfigError

DEFAULT_MODEL = "tomh/toxigen_hatebert"
DEFAULT_TOKENIZER = "bert-base-uncased"
EXTRA_FIX = "pip install 'llama-audit[toxicity]'"
FETCH_FIX = "`llama-audit models fetch` (needs network)"

MODEL_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json",
                      "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
MODEL_HASHED = ("config.json", "model.safetensors.index.json", "pytorch_model.bin.index.json")
MODEL_HASHED_SUFFIXES = (".safetensors", ".bin")
TOKENIZER_HASHED = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                    "merges.txt", "vocab.json")
TOKENIZER_HASHED_SUFFIXES = (".model",)  # sentencepiece


def missing_extras() -> list[str]:
    """Which of the toxicity extra's import packages are absent (cheap: no import)."""
    return [name for name in ("torch", "transformers", "tokenizers", "safetensors")
            if importlib.util.find_spec(name) is None]


def cuda_device_count() -> int:
    """Visible CUDA GPUs; 0 without torch (imports torch only when it is installed)."""
    if importlib.util.find_spec("torch") is None:
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def hub_cache_dir() -> str:
    """The Hugging Face hub cache directory (honours HF_HUB_CACHE / HF_HOME)."""
    try:
        from huggingface_hub import constants
        return str(constants.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        home = os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface"))
        return os.environ.get("HF_HUB_CACHE", os.path.join(home, "hub"))


@dataclasses.dataclass(frozen=True)
class Located:
    spec: str  # what the user gave (hub id or path)
    path: Path  # local directory holding the files
    source: str  # "local" | "cache"
    revision: str | None  # commit hash of the cached snapshot (None for a local directory)

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()


def _looks_like_path(spec: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else path-shaped is a directory the user meant."""
    return spec.startswith((".", "/", "~")) or "\\" in spec or spec.count("/") > 1


def locate(spec: str, revision: str | None, *, kind: str, option: str) -> Located:
    """Find ``spec`` (a directory or a cached hub id) or raise :class:`AnalyzerUnavailable`.

    ``kind`` is "model" or "tokenizer"; ``option`` the CLI flag that overrides it.
    """
    required = MODEL_WEIGHT_FILES if kind == "model" else TOKENIZER_FILES
    what = "weights (model.safetensors or pytorch_model.bin)" if kind == "model" else "tokenizer.json or vocab.txt"
    path = Path(spec).expanduser()
    if path.is_dir():
        loc = Located(spec, path.resolve(), "local", None)
        if kind == "model" and not loc.has("config.json"):
            raise AnalyzerUnavailable(f"toxicity {kind} directory {str(path)!r} ({option}) has no config.json")
        if not any(loc.has(f) for f in required):
            raise AnalyzerUnavailable(f"toxicity {kind} directory {str(path)!r} ({option}) has no {what}")
        return loc
    if _looks_like_path(spec) or path.exists():
        raise AnalyzerUnavailable(
            f"toxicity {kind} directory {spec!r} does not exist; pass {option} PATH to a local copy")
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        raise AnalyzerUnavailable(f"toxicity needs huggingface_hub; install it with: {EXTRA_FIX}") from None
    cache = hub_cache_dir()
    rev_text = f" (revision {revision})" if revision else ""
    missing = (f"toxicity {kind} {spec!r}{rev_text} is not in the Hugging Face cache ({cache}); "
               f"get it with {FETCH_FIX} or pass {option} PATH to a local copy")
    try:
        names = ("config.json",) + required if kind == "model" else required
        found: dict[str, str] = {}
        for name in names:
            hit = try_to_load_from_cache(spec, name, cache_dir=cache, revision=revision)
            if isinstance(hit, str):
                found[name] = hit
    except Exception as exc:  # invalid repo id, unreadable cache
        if type(exc).__name__ == "HFValidationError":
            raise AnalyzerUnavailable(
                f"toxicity {kind} {spec!r} is neither a directory nor a valid hub id; pass {option} PATH or a hub id"
            ) from None
        raise AnalyzerUnavailable(f"{missing} [{type(exc).__name__}: {exc}]") from None
    if (kind == "model" and "config.json" not in found) or not any(f in found for f in required):
        raise AnalyzerUnavailable(missing)
    snapshot = Path(next(iter(found.values()))).parent
    return Located(spec, snapshot, "cache", snapshot.name)


def files_sha256(loc: Located, kind: str) -> dict[str, str]:
    """sha256 of the files that determine the output, by file name: weights and config.json for
    ``kind="model"``; vocabulary and tokenizer configs for ``kind="tokenizer"``."""
    names, suffixes = ((MODEL_HASHED, MODEL_HASHED_SUFFIXES) if kind == "model"
                       else (TOKENIZER_HASHED, TOKENIZER_HASHED_SUFFIXES))
    out = {}
    for entry in sorted(os.listdir(loc.path)):
        p = loc.path / entry
        if (entry in names or entry.endswith(suffixes)) and p.is_file() and not entry.startswith("training_args"):
            out[entry] = file_sha256(p)
    return out


# ---------------------------------------------------------------------------------------------
# loading (imports torch / transformers)

def require_extras() -> None:
    missing = missing_extras()
    if missing:
        raise AnalyzerUnavailable(
            f"toxicity needs {', '.join(missing)} (not installed); install with: {EXTRA_FIX}")


def load_model(loc: Located):
    """``AutoModelForSequenceClassification`` from a located directory: no network, no remote code,
    safetensors when present, SDPA attention when the model class supports it."""
    require_extras()
    import torch
    from transformers import AutoModelForSequenceClassification

    use_st = True if (loc.has("model.safetensors") or loc.has("model.safetensors.index.json")) else None
    kwargs = dict(local_files_only=True, trust_remote_code=False, use_safetensors=use_st)
    with _quiet_transformers(), _load_errors("model", loc):
        try:
            model = AutoModelForSequenceClassification.from_pretrained(str(loc.path), attn_implementation="sdpa",
                                                                       **kwargs)
        except (ValueError, ImportError, TypeError):  # model class without SDPA support, or old transformers
            model = AutoModelForSequenceClassification.from_pretrained(str(loc.path), **kwargs)
    if any(p.dtype != torch.float32 for p in model.parameters()):
        model = model.float()  # a bf16/fp16 checkpoint: fp32 weights, the engine's autocast sets the precision
    num_labels = int(getattr(model.config, "num_labels", 0))
    if num_labels < 2:
        raise ConfigError(f"toxicity model {loc.spec!r} has {num_labels} output label(s); a 2-class "
                          "classifier (label 1 = toxic) is required")
    return model.eval()


@contextlib.contextmanager
def _load_errors(kind: str, loc: Located):
    """A file that is there but cannot be loaded (truncated weights, broken JSON, unknown model
    type): one line naming the directory, not a library traceback."""
    try:
        yield
    except (ConfigError, AnalyzerUnavailable, KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - whatever transformers / safetensors / tokenizers raise
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ConfigError(f"toxicity {kind} {loc.spec!r} ({loc.path}) cannot be loaded: "
                          f"{type(exc).__name__}: {first}") from None


@contextlib.contextmanager
def _quiet_transformers():
    """No weight-loading progress bars on the scan's terminal."""
    try:
        from transformers.utils import logging as hf_logging

        was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
    except (ImportError, AttributeError):  # pragma: no cover
        yield
        return
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def load_tokenizer(loc: Located):
    """The fast (Rust) tokenizer from a located directory."""
    require_extras()
    from transformers import AutoTokenizer

    with _load_errors("tokenizer", loc):
        tok = AutoTokenizer.from_pretrained(str(loc.path), use_fast=True, local_files_only=True,
                                            trust_remote_code=False)
    if not getattr(tok, "is_fast", False):
        raise ConfigError(f"toxicity tokenizer {loc.spec!r} has no fast tokenizer (tokenizer.json / vocab.txt)")
    return tok


def check_pair(model, tokenizer, model_spec: str, tokenizer_spec: str) -> None:
    vocab = int(getattr(model.config, "vocab_size", 0) or 0)
    if vocab and len(tokenizer) > vocab:
        raise ConfigError(
            f"toxicity tokenizer {tokenizer_spec!r} has {len(tokenizer)} tokens but model {model_spec!r} "
            f"has {vocab} embeddings; pass the model's tokenizer with --toxicity-tokenizer")


def position_offset(config) -> int:
    """The first position index: 0 for BERT; padding index + 1 for the RoBERTa family, whose
    position ids count from there (``create_position_ids_from_input_ids`` in transformers)."""
    if getattr(config, "model_type", None) in ("roberta", "xlm-roberta"):
        return int(getattr(config, "pad_token_id", None) or 0) + 1
    return 0


def max_length(model, tokenizer, limit: int = 512) -> int:
    """Truncation length: 512 tokens, or less if the model or tokenizer cannot take that many."""
    n = limit
    mpe = getattr(model.config, "max_position_embeddings", None)
    if isinstance(mpe, int) and mpe > 0:
        n = min(n, mpe - position_offset(model.config))  # RoBERTa's positions start at padding index + 1
    tml = getattr(tokenizer, "model_max_length", None)
    if isinstance(tml, int) and 0 < tml < 1_000_000:
        n = min(n, tml)
    return n
