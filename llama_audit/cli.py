"""Command line: thin — parses options and delegates (scan -> job, report -> report, ...).

Exit codes: 0 success; 1 finished but some shards failed (see the manifest); 2 usage or
configuration error, or a bad record under --strict; 130 interrupted (rerun to resume);
141 the reader of ``scan --emit jsonl`` closed stdout (e.g. ``| head``).
"""

from __future__ import annotations

import contextlib
import sys
from typing import List, Optional

import typer
from rich.console import Console

from llama_audit import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Audit LLM pretraining corpora the way Llama 2 (section 4.1) did.")
err = Console(stderr=True, highlight=False)

EXIT_OK, EXIT_FAILED_SHARDS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_PIPE_CLOSED = 141  # as a process killed by SIGPIPE: the reader of stdout went away


@contextlib.contextmanager
def stdout_reader_may_leave():
    """Output for pipes: when the reader goes away (``| head``), stop quietly with exit code 141.

    (Click itself would turn the broken pipe into exit code 1.)"""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        raise typer.Exit(EXIT_PIPE_CLOSED) from None


class PipeConsole(Console):
    """A stdout console whose broken pipe reaches :func:`stdout_reader_may_leave` (rich would exit 1)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


def _silence_stdout() -> None:
    """Point stdout at /dev/null so Python's exit flush does not raise on a closed pipe."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _version(value: bool) -> None:
    if value:
        print(f"llama-audit {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                               help="Print the version and exit.")) -> None:
    pass


def _split(value: Optional[str]) -> Optional[list[str]]:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def fail(message: str, code: int = EXIT_USAGE) -> None:
    err.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


class ProgressHooks:
    """Rich progress on stderr: documents, bytes, docs/s, MB/s and an ETA from input bytes."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.progress = None
        self.task = None
        self.docs = 0
        self.failures: list[str] = []

    def warn(self, message: str) -> None:
        err.print(f"[yellow]warning:[/] {message}", markup=True, soft_wrap=True)

    def start(self, total_bytes: int, shards: int, skipped: int) -> None:
        if skipped:
            err.print(f"resuming: {skipped} shard(s) already done, {shards} to scan")
        if self.quiet or not shards:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        class Rates(TextColumn):
            def __init__(self, hooks):
                super().__init__("")
                self.hooks = hooks

            def render(self, task):
                from rich.text import Text

                secs = task.elapsed or 0.0
                mb = task.completed / 1e6
                docs = self.hooks.docs
                rate = f"{docs / secs:,.0f} docs/s {mb / secs:.1f} MB/s" if secs > 0 else ""
                # bytes are of the input files as stored (compressed for .gz/.zst): the ETA's basis
                return Text(f"{docs:,} docs {mb:,.1f}/{(task.total or 0) / 1e6:,.1f} MB of files {rate}")

        self.progress = Progress(TextColumn("scan"), BarColumn(), Rates(self), TimeElapsedColumn(),
                                 TextColumn("eta"), TimeRemainingColumn(), console=err, transient=False)
        self.task = self.progress.add_task("scan", total=max(total_bytes, 1))
        self.progress.start()

    def advance(self, docs: int, nbytes: int) -> None:
        self.docs += docs
        if self.progress is not None:
            self.progress.update(self.task, advance=nbytes)

    def shard_finished(self, outcome: tuple) -> None:
        if outcome[0] == "failed":
            self.failures.append(outcome[2])
            line = f"[red]shard failed:[/] {outcome[2]}"
            (self.progress.console if self.progress else err).print(line, markup=True, soft_wrap=True)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


@app.command()
def scan(
    corpus: List[str] = typer.Argument(..., help="Corpus files, directories (recursive) or globs."),
    out: str = typer.Option(..., "--out", "-o", help="Output directory (annotations, partials, summary, manifest)."),
    analyzers: Optional[str] = typer.Option(None, help="Comma-separated analyzers (default: all available): "
                                            "language,pronouns,identities,pii,toxicity."),
    languages: str = typer.Option("en", help="Language scope of pronoun/identity/toxicity statistics; 'all' disables the gate."),
    lid_threshold: float = typer.Option(0.5, help="fastText probability below which a document is 'unknown'."),
    lid_model: Optional[str] = typer.Option(None, help="Path to a fastText model (e.g. lid.176.bin); default: embedded lid.176.ftz."),
    lid_engine: str = typer.Option("auto", help="auto (fast numpy fastText, exact labels) | fasttext (the C++ binding)."),
    lexicon: Optional[str] = typer.Option(None, help="Identity lexicon TSV (axis, descriptor) replacing HolisticBias."),
    pronoun_lexicon: Optional[str] = typer.Option(None, help="Pronoun lexicon TSV (group, word) replacing the paper's lists."),
    text_field: str = typer.Option("text", help="Field holding the document text."),
    id_field: str = typer.Option("id", help="Field holding the document id (absent: <shard>:<row>)."),
    pii_types: Optional[str] = typer.Option(None, help="Comma-separated PII types (default: all)."),
    pii_region: str = typer.Option("US", help="Default region for phone numbers without a leading +."),
    toxicity_model: str = typer.Option("tomh/toxigen_hatebert", help="Toxicity model: hub id or local directory."),
    toxicity_revision: Optional[str] = typer.Option(None, help="Hub revision of the toxicity model."),
    toxicity_tokenizer: str = typer.Option("bert-base-uncased", help="Tokenizer: hub id or local directory."),
    toxicity_sample: float = typer.Option(1.0, help="Fraction of in-scope documents scored (paper: 0.1), deterministic per id."),
    toxicity_batch_tokens: Optional[int] = typer.Option(
        None, min=64, help="Padded tokens per model batch, >= 64 (default: 2048 on CPU, from free memory on GPU)."),
    toxicity_self_test: bool = typer.Option(True, help="Check before scanning that toxic sentences outscore benign ones."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N (toxicity)."),
    seed: int = typer.Option(0, help="Seed of the deterministic toxicity sample."),
    workers: int = typer.Option(1, min=1, help="Local worker processes (shards run in parallel); with --executor ray "
                                        "and no --ray-address, the CPUs of the local Ray instance."),
    executor: str = typer.Option("local", help="local (this machine) | ray (a Ray cluster sharing OUT's file system)."),
    ray_address: Optional[str] = typer.Option(None, help="Ray cluster address (default: start a local Ray)."),
    num_shards: int = typer.Option(1, min=1, help="Split the shard list into N slices (Slurm array size)."),
    shard_index: int = typer.Option(0, min=0, help="Which slice this process runs (Slurm array index)."),
    batch_docs: Optional[int] = typer.Option(None, min=1, help="Documents per batch (default 1024; 8192 when toxicity runs, to fill the GPU)."),
    strict: bool = typer.Option(False, help="Stop at the first bad record (exit code 2)."),
    overwrite: bool = typer.Option(False, help="Discard an OUT written with another configuration."),
    skip_unknown: bool = typer.Option(False, help="Skip files of unknown type with a warning instead of failing."),
    emit: Optional[str] = typer.Option(None, help="'jsonl': stream one JSON object per document to stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Scan a corpus: annotate every document and write additive partial summaries (resumable)."""
    from llama_audit.analyzers.base import ConfigError, ScanOptions
    from llama_audit.corpus import UnsupportedFormat
    from llama_audit.emit import EmitClosed
    from llama_audit.job import ScanRequest, run_scan
    from llama_audit.scan import ReadOptions, StrictError

    if emit not in (None, "jsonl"):
        fail("--emit takes 'jsonl'")
    langs = tuple(code.lower() for code in (_split(languages) or ["en"]))
    if not 0.0 < toxicity_sample <= 1.0:
        fail(f"--toxicity-sample must be in (0, 1], got {toxicity_sample}")
    extra = {} if toxicity_self_test else {"toxicity_self_test": False}
    if pronoun_lexicon:
        extra["pronoun_lexicon"] = pronoun_lexicon
    requested = _split(analyzers)
    options = ScanOptions(
        languages=langs, lid_threshold=lid_threshold, lid_model=lid_model, lid_engine=lid_engine, lexicon=lexicon,
        pii_types=tuple(_split(pii_types)) if pii_types else None, pii_region=pii_region,
        toxicity_model=toxicity_model, toxicity_revision=toxicity_revision, toxicity_tokenizer=toxicity_tokenizer,
        toxicity_sample=toxicity_sample, toxicity_batch_tokens=toxicity_batch_tokens, device=device, seed=seed,
        explicit=tuple(requested or ()), extra=extra,
    )
    req = ScanRequest(paths=corpus, out=out, analyzers=requested, options=options,
                      read=ReadOptions(text_field=text_field, id_field=id_field,
                                       batch_docs=max(1, batch_docs) if batch_docs else None),
                      strict=strict, overwrite=overwrite, skip_unknown=skip_unknown, workers=max(1, workers),
                      num_shards=num_shards, shard_index=shard_index, executor=executor, ray_address=ray_address)
    hooks = ProgressHooks(quiet)
    if emit == "jsonl":
        from llama_audit.emit import JsonlEmitter

        req.emitter = JsonlEmitter(sys.stdout.buffer)
    try:
        result = run_scan(req, hooks)
    except (ConfigError, UnsupportedFormat, FileNotFoundError) as exc:
        hooks.stop()
        fail(str(exc).strip("'\""))
    except StrictError as exc:
        hooks.stop()
        fail(f"--strict: {exc}")
    except KeyboardInterrupt:
        hooks.stop()
        err.print("interrupted: finished shards are kept; rerun the same command to resume")
        raise typer.Exit(EXIT_INTERRUPTED)
    except EmitClosed:
        hooks.stop()
        _silence_stdout()
        err.print("stdout was closed: scan stopped; finished shards are kept; rerun to resume")
        raise typer.Exit(EXIT_PIPE_CLOSED)
    if result.documents == 0 and result.bad_records:
        err.print(f"[yellow]warning:[/] no document was read: all {result.bad_records:,} records are bad "
                  f"(is --text-field {text_field!r} right? see bad_samples in {out}/manifest.json)", markup=True)
    if not quiet:
        state = "summary written" if result.summary_written else "summary pending (shards left)"
        err.print(f"{result.documents:,} documents, {result.bad_records:,} bad records, "
                  f"{result.shards_run} shard(s) scanned, {result.shards_skipped} resumed, "
                  f"{len(result.failed)} failed in {result.seconds:.1f}s; {state} -> {out}")
    if result.failed:
        err.print(f"[red]{len(result.failed)} shard(s) failed[/]; see {out}/manifest.json. Rerun to retry them.",
                  markup=True)
    raise typer.Exit(result.exit_code)


@app.command()
def report(
    out: str = typer.Argument(..., help="Output directory of a scan."),
    format: str = typer.Option("table", "--format", "-f", help="table | json | markdown | csv | html"),
    top: int = typer.Option(5, min=0, help="Descriptors shown per axis (Table 9b)."),
    min_pct: float = typer.Option(0.005, min=0.0, help="Smallest language share shown (Table 10), in percent."),
    paper: bool = typer.Option(False, help="Show the Llama 2 paper's numbers beside yours."),
) -> None:
    """Print the paper-style tables (9a, 9b, 10, toxicity, PII) for a scan."""
    from llama_audit.analyzers.base import ConfigError
    from llama_audit.report.render import render_csv, render_html, render_json, render_markdown, render_terminal
    from llama_audit.report.tables import build_report, require_out

    if format not in ("table", "json", "markdown", "md", "csv", "html"):
        fail("--format takes table, json, markdown, csv or html")
    try:
        require_out(out)
        data = build_report(out)
    except ConfigError as exc:
        fail(str(exc))
    if not data["corpus"]["complete"]:
        err.print(f"[yellow]warning:[/] partial report: {data['corpus']['shards_done']} of "
                  f"{data['corpus']['shards']} shards done", markup=True)
    with stdout_reader_may_leave():
        if format == "json":
            sys.stdout.write(render_json(data))
        elif format in ("markdown", "md"):
            sys.stdout.write(render_markdown(data, top=top, min_pct=min_pct, paper=paper))
        elif format == "csv":
            sys.stdout.write(render_csv(data))
        elif format == "html":
            sys.stdout.write(render_html(data, top=top, min_pct=min_pct, paper=paper))
        else:
            render_terminal(data, PipeConsole(), top=top, min_pct=min_pct, paper=paper)


@app.command()
def merge(out: str = typer.Argument(..., help="Output directory shared by scan slices.")) -> None:
    """Combine the partials of finished shards (e.g. Slurm slices) into the summary and manifest."""
    from llama_audit.analyzers.base import ConfigError
    from llama_audit.job import merge as merge_out

    try:
        manifest = merge_out(out)
    except ConfigError as exc:
        fail(str(exc))
    t = manifest["totals"]
    state = "summary written" if manifest["summary"]["complete"] else "summary pending"
    err.print(f"{t['shards_done']} of {t['shards']} shards done, {t['documents']:,} documents; {state}")
    raise typer.Exit(EXIT_OK if manifest["summary"]["complete"] else EXIT_FAILED_SHARDS)


@app.command("filter")
def filter_cmd(
    out: str = typer.Argument(..., help="Output directory of a scan."),
    clean: str = typer.Option(..., "--out", "-o", help="Where the cleaned corpus goes (same layout and formats)."),
    redact: Optional[str] = typer.Option(None, help="'pii' or 'pii:TYPE,TYPE': replace PII spans by <TYPE>."),
    drop: List[str] = typer.Option([], help="Drop documents where EXPR holds, e.g. \"lang != 'en'\" (repeatable)."),
    keep: List[str] = typer.Option([], help="Keep only documents where EXPR holds (repeatable)."),
    overwrite: bool = typer.Option(False, help="Discard a CLEAN written with other settings."),
) -> None:
    """Write a cleaned copy of the scanned corpus: drop and/or redact documents from their annotations."""
    from llama_audit.analyzers.base import ConfigError
    from llama_audit.filter import FilterRequest, run_filter

    def warn(message: str) -> None:
        err.print(f"[yellow]warning:[/] {message}", markup=True, soft_wrap=True)

    try:
        res = run_filter(FilterRequest(out=out, clean=clean, drop=drop, keep=keep, redact=redact,
                                       overwrite=overwrite), warn)
    except ConfigError as exc:
        fail(str(exc))
    err.print(f"kept {res.kept:,} documents; dropped {sum(res.dropped.values()):,}; "
              f"redacted {res.redacted_documents:,} ({sum(res.redacted_spans.values()):,} spans); "
              f"{res.shards_done} shard(s) written, {res.shards_skipped} resumed -> {clean}")
    for why, n in sorted(res.dropped.items()):
        err.print(f"  dropped {n:,}: {why}", markup=False)
    for t, n in sorted(res.redacted_spans.items()):
        err.print(f"  redacted {n:,} {t} span(s)")
    if res.refused:
        err.print(f"[red]{len(res.refused)} shard(s) refused[/] (changed since the scan); see warnings above",
                  markup=True)
    raise typer.Exit(res.exit_code)


@app.command("estimate")
def estimate_cmd(
    corpus: List[str] = typer.Argument(..., help="Corpus files, directories or globs."),
    analyzers: Optional[str] = typer.Option(None, help="Comma-separated analyzers (default: all available)."),
    languages: str = typer.Option("en", help="Language scope, as for scan."),
    sample_mb: float = typer.Option(8.0, help="MB of text to time the analyzers on."),
    workers: int = typer.Option(1, min=1, help="Project the time for this many parallel workers too."),
    text_field: str = typer.Option("text", help="Field holding the document text."),
    skip_unknown: bool = typer.Option(False, help="Skip files of unknown type."),
) -> None:
    """Time the analyzers on a sample of the corpus and project how long a full scan takes here."""
    from llama_audit.analyzers.base import ConfigError, ScanOptions
    from llama_audit.corpus import UnsupportedFormat
    from llama_audit.estimate import estimate

    def warn(message: str) -> None:
        err.print(f"[yellow]warning:[/] {message}", markup=True, soft_wrap=True)

    try:
        est = estimate(corpus, analyzers=_split(analyzers), options=ScanOptions(languages=tuple(_split(languages) or ["en"])),
                       sample_mb=sample_mb, text_field=text_field, skip_unknown=skip_unknown, warn=warn)
    except (ConfigError, UnsupportedFormat, FileNotFoundError) as exc:
        fail(str(exc).strip("'\""))
    print(f"corpus: {est.shards:,} shard(s), {est.file_bytes / 1e9:,.3f} GB on disk, "
          f"~{est.text_bytes_projected / 1e9:,.3f} GB of text (sample ratio {est.sample_text_bytes / max(est.sample_file_bytes, 1):.2f})")
    print(f"sample: {est.sample_documents:,} documents, {est.sample_text_bytes / 1e6:,.1f} MB of text")
    for name in est.analyzers:
        spm = est.seconds_per_mb[name]
        print(f"  {name:12s} {1 / spm if spm else float('inf'):8.1f} MB/s per core")
    total = est.seconds_per_mb["total"]
    print(f"  {'all':12s} {1 / total if total else float('inf'):8.1f} MB/s per core (reading and writing not included)")
    print(f"projected analysis time: {_duration(est.hours(1) * 3600)} on one core" +
          (f", {_duration(est.hours(workers) * 3600)} with {workers} workers" if workers > 1 else ""))


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


@app.command("analyzers")
def list_analyzers() -> None:
    """List the analyzers (built-in and installed plugins) and whether they can run here."""
    from llama_audit.analyzers.base import ScanOptions
    from llama_audit.analyzers.registry import available_names, load_class

    for name, target in available_names().items():
        try:
            reason = load_class(name).unavailable_reason(ScanOptions())
        except Exception as exc:  # a broken plugin must not break the listing
            reason = f"cannot load: {type(exc).__name__}: {exc}"
        print(f"{name:12s} {'available' if not reason else 'unavailable: ' + reason}  ({target})")


def _mount_optional() -> None:
    try:
        from llama_audit.cli_models import models_app
    except ImportError:  # pragma: no cover
        return
    app.add_typer(models_app, name="models", help="Fetch and list the models the analyzers use.")


_mount_optional()


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # e.g. `report ... | head`: stop quietly, like any Unix filter
        _silence_stdout()
        sys.exit(EXIT_PIPE_CLOSED)


if __name__ == "__main__":
    main()
