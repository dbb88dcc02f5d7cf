"""Command line: thin — parses options and delegates (scan -> job, report -> report, ...).

Exit codes: 0 success; 1 finished but some shards failed (see the manifest); 2 usage or
configuration error, or a bad record under --strict; 130 interrupted (rerun to resume);
141 the reader of ``scan --emit jsonl`` closed stdout (e.g. ``| head``).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Sequence

import click
from rich.console import Console

from llama_audit import __version__

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
        raise click.exceptions.Exit(EXIT_PIPE_CLOSED) from None


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


class AuditGroup(click.Group):
    """Adds the installed analyzers' declared flags to ``scan`` and ``report`` when one of them is
    invoked (loading every analyzer class costs start-up time the other commands need not pay)."""

    def get_command(self, ctx, cmd_name):
        cmd = super().get_command(ctx, cmd_name)
        if cmd_name in ANALYZER_FLAG_COMMANDS and cmd is not None:
            _with_analyzer_flags(cmd, cmd_name)
        return cmd


@click.group(cls=AuditGroup, no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="llama-audit", message="%(prog)s %(version)s",
                      help="Print the version and exit.")
def app() -> None:
    """Audit LLM pretraining corpora the way Llama 2 (section 4.1) did."""


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _one_line(exc: BaseException) -> str:
    """A user-facing error as one line. (str() of a KeyError-style exception quotes its message.)"""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc)


def fail(message: str, code: int = EXIT_USAGE) -> None:
    err.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    raise click.exceptions.Exit(code)


class ProgressHooks:
    """Rich progress on stderr: documents, bytes, docs/s, MB/s and an ETA from input bytes."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.progress = None
        self.task = None
        self.docs = 0

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

    def shard_finished(self, outcome) -> None:
        if outcome.status == "failed":
            line = f"[red]shard failed:[/] {outcome.reason}"
            (self.progress.console if self.progress else err).print(line, markup=True, soft_wrap=True)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


@app.command(epilog="Options of every analyzer: llama-audit analyzers NAME.")
@click.argument("corpus", nargs=-1, required=True)
@click.option("--out", "-o", required=True, help="Output directory (annotations, partials, summary, manifest).")
@click.option("--analyzers", default=None, help="Comma-separated analyzers (default: all available; see llama-audit analyzers).")
@click.option("--languages", default="en", show_default=True,
              help="Language scope of the scoped analyzers' statistics; 'all' disables the gate.")
@click.option("--option", "option", multiple=True, metavar="NAME.KEY=VALUE",
              help="An analyzer's option (repeatable), e.g. toxicity.precision=bf16.")
@click.option("--text-field", default="text", show_default=True, help="Field holding the document text.")
@click.option("--id-field", default="id", show_default=True, help="Field holding the document id (absent: <shard>:<row>).")
@click.option("--workers", default=1, type=click.IntRange(min=1), show_default=True,
              help="Local worker processes (shards run in parallel); with --executor ray and no --ray-address, "
                   "the CPUs of the local Ray instance.")
@click.option("--executor", default="local", show_default=True,
              help="local (this machine) | ray (a Ray cluster sharing OUT's file system).")
@click.option("--ray-address", default=None, help="Ray cluster address (default: start a local Ray).")
@click.option("--num-shards", default=1, type=click.IntRange(min=1), show_default=True,
              help="Split the shard list into N slices (Slurm array size).")
@click.option("--shard-index", default=0, type=click.IntRange(min=0), show_default=True,
              help="Which slice this process runs (Slurm array index).")
@click.option("--batch-docs", default=None, type=click.IntRange(min=1),
              help="Documents per batch (default: what the analyzers declare, 1024; 8192 when a GPU-batched analyzer runs).")
@click.option("--strict/--no-strict", default=False, help="Stop at the first bad record (exit code 2).")
@click.option("--overwrite/--no-overwrite", default=False, help="Discard an OUT written with another configuration.")
@click.option("--skip-unknown/--no-skip-unknown", default=False,
              help="Skip files of unknown type with a warning instead of failing.")
@click.option("--emit", default=None, help="'jsonl': stream one JSON object per document to stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def scan(corpus, out, analyzers, languages, option, text_field, id_field, workers, executor, ray_address,
         num_shards, shard_index, batch_docs, strict, overwrite, skip_unknown, emit, quiet) -> None:
    """Scan a corpus: annotate every document and write additive partial summaries (resumable)."""
    from llama_audit.corpus import UnsupportedFormat
    from llama_audit.emit import EmitClosed
    from llama_audit.job import ScanRequest, run_scan
    from llama_audit.scan import ReadOptions, StrictError
    from llama_audit.types import ConfigError

    if emit not in (None, "jsonl"):
        fail("--emit takes 'jsonl'")
    langs = tuple(code.lower() for code in (_split(languages) or ["en"]))
    try:
        given = analyzer_options_given(option)
    except ConfigError as exc:
        fail(str(exc))
    req = ScanRequest(paths=corpus, out=out, analyzers=_split(analyzers), languages=langs, options=given,
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
        fail(_one_line(exc))
    except StrictError as exc:
        hooks.stop()
        fail(f"--strict: {exc}")
    except KeyboardInterrupt:
        hooks.stop()
        err.print("interrupted: finished shards are kept; rerun the same command to resume")
        raise click.exceptions.Exit(EXIT_INTERRUPTED)
    except EmitClosed:
        hooks.stop()
        _silence_stdout()
        err.print("stdout was closed: scan stopped; finished shards are kept; rerun to resume")
        raise click.exceptions.Exit(EXIT_PIPE_CLOSED)
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
    raise click.exceptions.Exit(result.exit_code)


@app.command(epilog="Report options of every analyzer: llama-audit analyzers NAME.")
@click.argument("out")
@click.option("--format", "-f", "format", default="table", show_default=True, help="table | json | markdown | csv | html")
@click.option("--option", "option", multiple=True, metavar="NAME.KEY=VALUE",
              help="An analyzer's report option (repeatable), e.g. identities.top=10.")
@click.option("--paper/--no-paper", default=False, help="Show the Llama 2 paper's numbers beside yours.")
def report(out, format, option, paper) -> None:
    """Print the paper-style tables (9a, 9b, 10, toxicity, PII and every plugin's section) for a scan."""
    from llama_audit.analyzers.registry import typed_report_options
    from llama_audit.report.render import render_csv, render_html, render_json, render_markdown, render_terminal
    from llama_audit.report.tables import build_report, require_out
    from llama_audit.types import ConfigError

    if format not in ("table", "json", "markdown", "md", "csv", "html"):
        fail("--format takes table, json, markdown, csv or html")
    try:
        report_options = typed_report_options(analyzer_options_given(option))
        require_out(out)
        data = build_report(out, report_options=report_options)
    except ConfigError as exc:
        fail(str(exc))
    if not data["corpus"]["complete"]:
        err.print(f"[yellow]warning:[/] partial report: {data['corpus']['shards_done']} of "
                  f"{data['corpus']['shards']} shards done", markup=True)
    kw = dict(paper=paper, report_options=report_options)
    with stdout_reader_may_leave():
        if format == "json":
            sys.stdout.write(render_json(data))
        elif format in ("markdown", "md"):
            sys.stdout.write(render_markdown(data, **kw))
        elif format == "csv":
            sys.stdout.write(render_csv(data, **kw))
        elif format == "html":
            sys.stdout.write(render_html(data, **kw))
        else:
            render_terminal(data, PipeConsole(), **kw)


@app.command()
@click.argument("out")
def merge(out) -> None:
    """Combine the partials of finished shards (e.g. Slurm slices) into the summary and manifest."""
    from llama_audit.manifest import merge as merge_out
    from llama_audit.types import ConfigError

    try:
        manifest = merge_out(out)
    except ConfigError as exc:
        fail(str(exc))
    t = manifest["totals"]
    state = "summary written" if manifest["summary"]["complete"] else "summary pending"
    err.print(f"{t['shards_done']} of {t['shards']} shards done, {t['documents']:,} documents; {state}")
    raise click.exceptions.Exit(EXIT_OK if manifest["summary"]["complete"] else EXIT_FAILED_SHARDS)


@app.command("filter")
@click.argument("out")
@click.option("--out", "-o", "clean", required=True, help="Where the cleaned corpus goes (same layout and formats).")
@click.option("--redact", default=None, help="'pii' or 'pii:TYPE,TYPE': replace PII spans by <TYPE>.")
@click.option("--drop", multiple=True, help="Drop documents where EXPR holds, e.g. \"lang != 'en'\" (repeatable).")
@click.option("--keep", multiple=True, help="Keep only documents where EXPR holds (repeatable).")
@click.option("--overwrite/--no-overwrite", default=False, help="Discard a CLEAN written with other settings.")
def filter_cmd(out, clean, redact, drop, keep, overwrite) -> None:
    """Write a cleaned copy of the scanned corpus: drop and/or redact documents from their annotations."""
    from llama_audit.filter import FilterRequest, run_filter
    from llama_audit.types import ConfigError

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
    raise click.exceptions.Exit(res.exit_code)


@app.command("estimate")
@click.argument("corpus", nargs=-1, required=True)
@click.option("--analyzers", default=None, help="Comma-separated analyzers (default: all available).")
@click.option("--languages", default="en", show_default=True, help="Language scope, as for scan.")
@click.option("--option", "option", multiple=True, metavar="NAME.KEY=VALUE", help="An analyzer's option, as for scan.")
@click.option("--sample-mb", default=8.0, type=float, show_default=True, help="MB of text to time the analyzers on.")
@click.option("--workers", default=1, type=click.IntRange(min=1), show_default=True,
              help="Project the time for this many parallel workers too.")
@click.option("--text-field", default="text", show_default=True, help="Field holding the document text.")
@click.option("--skip-unknown/--no-skip-unknown", default=False, help="Skip files of unknown type.")
def estimate_cmd(corpus, analyzers, languages, option, sample_mb, workers, text_field, skip_unknown) -> None:
    """Time the analyzers on a sample of the corpus and project how long a full scan takes here."""
    from llama_audit.corpus import UnsupportedFormat
    from llama_audit.estimate import estimate
    from llama_audit.types import ConfigError

    def warn(message: str) -> None:
        err.print(f"[yellow]warning:[/] {message}", markup=True, soft_wrap=True)

    try:
        est = estimate(corpus, analyzers=_split(analyzers), languages=tuple(_split(languages) or ["en"]),
                       options=analyzer_options_given(option), sample_mb=sample_mb, text_field=text_field, skip_unknown=skip_unknown, warn=warn)
    except (ConfigError, UnsupportedFormat, FileNotFoundError) as exc:
        fail(_one_line(exc))
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
@click.argument("name", required=False)
def list_analyzers(name) -> None:
    """List the analyzers (built-in and installed plugins) and whether they can run here; with a
    NAME, that analyzer's scan and report options."""
    from llama_audit.analyzers.options import specs
    from llama_audit.analyzers.registry import available_names, load_class
    from llama_audit.types import ConfigError

    if name is not None:
        try:
            cls = load_class(name)
        except ConfigError as exc:
            fail(str(exc))
        doc = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or "").strip().splitlines()
        print(f"{name}: {doc[0] if doc else cls.__qualname__}")
        print(f"  scoped: {'yes (only documents in --languages)' if cls.scoped else 'no (every document)'}"
              + (f"; provides the language scope (column {cls.scope_column!r})" if cls.scope_column else "")
              + (f"; requires {', '.join(cls.requires)}" if cls.requires else ""))
        for title, options_cls in (("scan options", cls.Options), ("report options", getattr(cls, "ReportOptions", None))):
            declared = specs(options_cls, name) if options_cls is not None else []
            print(f"  {title}:" + ("" if declared else " none"))
            for spec in declared:
                spelled = (spec.flag.split("/")[0] + " | " if spec.flag else "") + f"--option {spec.qualified}=VALUE"
                print(f"    {spelled}  ({spec.type_name}; default {spec.default!r})\n        {spec.help}")
        return
    for analyzer, target in available_names().items():
        try:
            cls = load_class(analyzer)
            reason = cls.unavailable_reason(cls.options_from())
        except Exception as exc:  # a broken plugin must not break the listing
            reason = f"cannot load: {type(exc).__name__}: {exc}"
        print(f"{analyzer:12s} {'available' if not reason else 'unavailable: ' + reason}  ({target})")


# -- analyzer options on the command line ----------------------------------------------------------
# Analyzers declare their options (Analyzer.Options / ReportOptions); a declared ``flag`` becomes a
# flag of ``scan`` / ``report`` here, and every option is reachable as ``--option NAME.KEY=VALUE``.

ANALYZER_FLAG_COMMANDS = ("scan", "report")  # where declared flags of Options / ReportOptions go
FLAG_PARAM_PREFIX = "analyzer_option__"  # click parameter names of analyzer flags: PREFIX + name__key
ANALYZER_OPTIONS_META = "llama_audit.analyzer_options"  # where the flags' values wait for the command


def _declared_flags(kind: str, taken: set[str]) -> list:
    """(click.Option, OptionSpec) for every declared flag of every loadable analyzer. A flag that
    another option already uses is not added (that option stays reachable through --option)."""
    from llama_audit.analyzers.options import specs
    from llama_audit.analyzers.registry import available_names, load_class
    from llama_audit.types import ConfigError

    params = []
    for name in available_names():
        try:
            cls = load_class(name)
        except ConfigError:
            continue  # a broken plugin is reported when it is used
        options_cls = cls.Options if kind == "scan" else getattr(cls, "ReportOptions", None)
        for spec in specs(options_cls, name) if options_cls is not None else []:
            if not spec.flag or any(f in taken for f in spec.flag.split("/")):
                continue
            taken.update(spec.flag.split("/"))
            default = "" if spec.default is None else f"; default: {spec.default}"
            help_text = f"{spec.help} [{name}{default}]"
            param_name = f"{FLAG_PARAM_PREFIX}{name}__{spec.key}"
            if "/" in spec.flag:
                params.append(click.Option([spec.flag, param_name], default=None, help=help_text))
            else:
                params.append(click.Option([spec.flag, param_name], default=None, type=str, help=help_text,
                                           metavar=spec.metavar_text))
    return params


def _unflagged_options_help(kind: str) -> str:
    """The epilog of scan/report --help: every analyzer option that has no flag of its own."""
    from llama_audit.analyzers.options import specs
    from llama_audit.analyzers.registry import available_names, load_class
    from llama_audit.types import ConfigError

    lines = []
    for name in available_names():
        try:
            cls = load_class(name)
        except ConfigError:
            continue
        options_cls = cls.Options if kind == "scan" else getattr(cls, "ReportOptions", None)
        for spec in specs(options_cls, name) if options_cls is not None else []:
            if not spec.flag:
                lines.append(f"  --option {spec.qualified}=VALUE  ({spec.type_name}; default {spec.default!r}) {spec.help}")
    if not lines:
        return ""
    return "\b\nOther analyzer options (--option NAME.KEY=VALUE, repeatable):\n" + "\n".join(lines)


def _with_analyzer_flags(command, kind: str) -> None:
    """(Re)build the analyzers' declared flags on a click command (what is installed may have
    changed since the last call, e.g. in tests); their values are handed to the command through
    the click context (see analyzer_options_given)."""
    base = getattr(command, "core_params", None)
    if base is None:
        command.core_params, command.core_epilog, command.core_callback = list(command.params), command.epilog, command.callback
    command.params = list(command.core_params)
    taken = {opt for p in command.params for opt in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}
    flags = _declared_flags(kind, taken)
    command.params.extend(flags)
    more = _unflagged_options_help(kind)
    command.epilog = f"{more}\n\n{command.core_epilog or ''}" if more else command.core_epilog
    names = {p.name for p in flags}
    callback = command.core_callback

    def with_flags(**kwargs):
        given: dict[str, dict] = {}
        for param in names:
            value = kwargs.pop(param)
            if value is not None:
                analyzer, key = param.removeprefix(FLAG_PARAM_PREFIX).split("__", 1)
                given.setdefault(analyzer, {})[key] = value
        click.get_current_context().meta[ANALYZER_OPTIONS_META] = given
        return callback(**kwargs)

    command.callback = with_flags


def analyzer_options_given(assignments: Sequence[str]) -> dict[str, dict]:
    """``{analyzer: {key: value}}`` from the declared flags given and ``--option NAME.KEY=VALUE``
    (which wins where both name one option)."""
    from llama_audit.analyzers.options import parse_assignments
    from llama_audit.analyzers.registry import available_names

    ctx = click.get_current_context(silent=True)
    given = {name: dict(values) for name, values in ((ctx.meta if ctx else {}).get(ANALYZER_OPTIONS_META) or {}).items()}
    for name, values in parse_assignments(assignments, lambda n: n in available_names()).items():
        given.setdefault(name, {}).update(values)
    return given


def command() -> click.Group:
    """The whole CLI (scan and report get the installed analyzers' flags when invoked)."""
    return app


def _mount_optional() -> None:
    try:
        from llama_audit.cli_models import models_app
    except ImportError:  # pragma: no cover
        return
    app.add_command(models_app, name="models")


_mount_optional()


def main() -> None:
    try:
        command()(prog_name="llama-audit")
    except BrokenPipeError:  # e.g. `report ... | head`: stop quietly, like any Unix filter
        _silence_stdout()
        sys.exit(EXIT_PIPE_CLOSED)


if __name__ == "__main__":
    main()
