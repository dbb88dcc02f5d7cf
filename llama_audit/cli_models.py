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
    """``error: MESSAGE`` as one line on stderr; exit code 2, as every usage or setup error of the
    CLI (1 means "some shards failed", which a fetch has none of)."""
    from llama_audit.report.section import printable

    click.echo(f"error: {printable(message)}", err=True)
    return click.exceptions.Exit(2)


def _offline() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:
        return False


def _download_failure(exc: BaseException) -> str:
    """Why a download failed, in a few words a person can act on. The hub's own texts run to
    several lines (request ids, urls, advice); its error classes are matched by name, which holds
    across huggingface_hub versions."""
    import errno

    kinds = {c.__name__ for c in type(exc).__mro__}
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if "GatedRepoError" in kinds:
        return "the repository is gated: accept its terms on huggingface.co and log in (hf auth login)"
    if "RepositoryNotFoundError" in kinds or status == 404:
        return "no such repository on the hub (a private one needs a login: hf auth login)"
    if "RevisionNotFoundError" in kinds:
        return "no such revision (branch, tag or commit) in the repository"
    if status in (401, 403):
        return f"the hub refused access (HTTP {status}): log in with hf auth login"
    if status is not None:
        return f"the hub answered HTTP {status}; try again later"
    if "LocalEntryNotFoundError" in kinds or any(k in kinds for k in ("ConnectError", "ConnectionError", "TimeoutException", "Timeout")):
        return "the hub cannot be reached (network down, proxy or firewall, or --timeout too short)"
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"no space left on the device holding {exc.filename or 'the Hugging Face cache'}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}"
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first[:160]}" if first else type(exc).__name__


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
            raise _fail(f"could not download {label} {repo!r}: {_download_failure(exc)}; "
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
    from rich.text import Text

    from llama_audit.report.section import printable

    def cell(value: object, style: str = "") -> Text:  # ids, paths and reasons are data, never markup
        return Text(printable(str(value)), style=style)

    from llama_audit.types import AnalyzerUnavailable
    from llama_audit.analyzers.toxicity.model import hub_cache_dir, locate, missing_extras

    table = Table(title=cell(f"models (Hugging Face cache: {hub_cache_dir()})"))
    for col in ("use", "model", "status", "revision", "size", "path"):
        table.add_column(col)
    lid = Path(__file__).resolve().parent / "models" / "lid.176.ftz"
    if lid.is_file():
        table.add_row("language", "fastText lid.176.ftz", "embedded", "-", f"{lid.stat().st_size / 2**20:.1f} MiB", cell(lid))
    for use, spec, rev, kind, option in (("toxicity", toxicity_model, toxicity_revision, "model", "--toxicity-model"),
                                         ("toxicity tokenizer", toxicity_tokenizer, None, "tokenizer", "--toxicity-tokenizer")):
        try:
            loc = locate(spec, rev, kind=kind, option=option)
        except AnalyzerUnavailable as exc:
            table.add_row(use, cell(spec), cell("missing", "red"), cell(rev or "-"), "-", cell(str(exc).split(";")[-1].strip()))
            continue
        table.add_row(use, cell(spec), cell(loc.source, "green"), cell(loc.revision or "-"),
                      f"{_size(loc.path) / 2**20:.1f} MiB", cell(loc.path))
    console = Console()
    console.print(table)
    missing = missing_extras()
    if missing:
        console.print(cell(f"toxicity also needs {', '.join(missing)}: pip install 'llama-audit[toxicity]'", "yellow"))
