"""``llama-audit models``: download (``fetch``) and inspect (``list``) the models fetched on demand.

The toxicity analyzer needs ``tomh/toxigen_hatebert`` (HateBERT fine-tuned on ToxiGen) and the
``bert-base-uncased`` tokenizer. ``fetch`` puts them in the Hugging Face cache (``HF_HOME`` /
``HF_HUB_CACHE``), where ``scan`` finds them offline. Only what inference needs is downloaded:
config, safetensors weights (``pytorch_model.bin`` only when the repository has no safetensors) and
tokenizer files. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import os
from pathlib import Path
import click

from llama_audit.analyzers.toxicity.model import DEFAULT_MODEL, DEFAULT_TOKENIZER



@click.group(no_args_is_help=True)
def models_app() -> None:
    """Download and list the models the analyzers load (toxicity classifier, tokenizer)."""


MODEL_PATTERNS = ["config.json", "*.safetensors", "*.safetensors.index.json"]
BIN_PATTERNS = ["pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*.bin"]
TOKENIZER_PATTERNS = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                      "config.json"]
_TRUE = {"1", "on", "yes", "true"}


def _fail(message: str) -> click.exceptions.Exit:
    click.echo(f"error: {message}", err=True)
    return click.exceptions.Exit(1)


def _offline() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:
        return False


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _download(repo: str, revision: str | None, patterns: list[str], timeout: float) -> Path:
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id=repo, revision=revision, allow_patterns=patterns, etag_timeout=timeout))


@models_app.command("fetch")
@click.option("--toxicity-model", default=DEFAULT_MODEL, show_default=True, help="hub id of the toxicity classifier")
@click.option("--toxicity-revision", default=None, help="branch, tag or commit")
@click.option("--toxicity-tokenizer", default=DEFAULT_TOKENIZER, show_default=True, help="hub id of its tokenizer")
@click.option("--timeout", default=10.0, type=float, show_default=True, help="seconds to wait for the hub before giving up")
def fetch(toxicity_model, toxicity_revision, toxicity_tokenizer, timeout) -> None:
    """Download the toxicity model and tokenizer into the Hugging Face cache (needs network)."""
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        raise _fail("downloading models needs huggingface_hub; install with: pip install 'llama-audit[toxicity]'") from None
    if _offline():
        raise _fail("HF_HUB_OFFLINE is set, so nothing can be downloaded; unset it on a machine with network, "
                    "or copy the model there and pass --toxicity-model PATH")
    from llama_audit.types import AnalyzerUnavailable
    from llama_audit.analyzers.toxicity.model import locate

    jobs = [("toxicity model", toxicity_model, toxicity_revision, "model", "--toxicity-model"),
            ("toxicity tokenizer", toxicity_tokenizer, None, "tokenizer", "--toxicity-tokenizer")]
    for label, repo, revision, kind, option in jobs:
        try:
            if kind == "model":
                path = _download(repo, revision, MODEL_PATTERNS, timeout)
                if not any(path.glob("*.safetensors")):
                    path = _download(repo, revision, BIN_PATTERNS, timeout)
            else:
                path = _download(repo, revision, TOKENIZER_PATTERNS, timeout)
        except Exception as exc:  # network down, unknown repository, gated, disk full...
            raise _fail(f"could not download {label} {repo!r} ({_short(exc)}); check the network and the id, "
                        f"or copy it to a directory and pass {option} PATH") from None
        try:
            loc = locate(repo, revision, kind=kind, option=option)
        except AnalyzerUnavailable as exc:
            raise _fail(f"{label} {repo!r} downloaded to {path} but is incomplete: {exc}") from None
        click.echo(f"{label}: {repo} @ {loc.revision} -> {loc.path}")


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


@models_app.command("list")
@click.option("--toxicity-model", default=DEFAULT_MODEL, show_default=True, help="hub id or directory to check")
@click.option("--toxicity-revision", default=None)
@click.option("--toxicity-tokenizer", default=DEFAULT_TOKENIZER, show_default=True, help="hub id or directory")
def list_models(toxicity_model, toxicity_revision, toxicity_tokenizer) -> None:
    """Show which models are available locally (cache or directory) and where."""
    from rich.console import Console
    from rich.table import Table

    from llama_audit.types import AnalyzerUnavailable
    from llama_audit.analyzers.toxicity.model import hub_cache_dir, locate, missing_extras

    table = Table(title=f"models (Hugging Face cache: {hub_cache_dir()})")
    for col in ("use", "model", "status", "revision", "size", "path"):
        table.add_column(col)
    lid = Path(__file__).resolve().parent / "models" / "lid.176.ftz"
    if lid.is_file():
        table.add_row("language", "fastText lid.176.ftz", "embedded", "-", f"{lid.stat().st_size / 2**20:.1f} MiB", str(lid))
    for use, spec, rev, kind, option in (("toxicity", toxicity_model, toxicity_revision, "model", "--toxicity-model"),
                                         ("toxicity tokenizer", toxicity_tokenizer, None, "tokenizer", "--toxicity-tokenizer")):
        try:
            loc = locate(spec, rev, kind=kind, option=option)
        except AnalyzerUnavailable as exc:
            table.add_row(use, spec, "[red]missing[/red]", rev or "-", "-", str(exc).split(";")[-1].strip())
            continue
        table.add_row(use, spec, f"[green]{loc.source}[/green]", loc.revision or "-",
                      f"{_size(loc.path) / 2**20:.1f} MiB", str(loc.path))
    console = Console()
    console.print(table)
    missing = missing_extras()
    if missing:
        console.print(f"[yellow]toxicity also needs {', '.join(missing)}: pip install 'llama-audit[toxicity]'[/yellow]")
