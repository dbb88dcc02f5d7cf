"""Command line: thin — parses options and delegates (scan -> job, report -> report, ...).

Exit codes: 0 success; 1 finished but some shards failed (see the manifest); 2 usage or
configuration error, or a bad record under --strict; 70 internal error (a bug: rerun with
LLAMA_AUDIT_DEBUG=1 for the traceback); 130 interrupted by Ctrl-C, 143 stopped by SIGTERM (both
keep finished shards: rerun to resume); 141 the reader of
``scan --emit jsonl`` closed stdout (e.g. ``| head``). An OS error that no lower layer turned into
an error of its own (a permission, a full disk) is one line with the path and a fix: exit code 2,
or 1 once shards were written (they are kept: rerun to resume).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Sequence

import click
from rich.console import Console

from llama_audit import __version__

class PlainConsole(Console):
    """The stderr console. Everything printed on it is plain text: paths, shard names, reasons and
    exception texts are user data ("[/]" or "[bold red]" in a file name is not markup, ":fire:" is
    no emoji, a terminal escape is shown as ``\\x1b``), so a ``str`` is printed literally even where
    a caller asks for markup; styles come only from ``(text, style)`` pairs given to :func:`say`."""

    def print(self, *objects, **kwargs) -> None:
        from llama_audit.report.section import printable

        kwargs.pop("markup", None)
        super().print(*(printable(o) if isinstance(o, str) else o for o in objects), **kwargs)


err = PlainConsole(stderr=True, highlight=False, markup=False, emoji=False, soft_wrap=True)

EXIT_OK, EXIT_FAILED_SHARDS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_PIPE_CLOSED = 141  # as a process killed by SIGPIPE: the reader of stdout went away
EXIT_INTERNAL = 70  # EX_SOFTWARE (sysexits.h): a bug, neither a failed shard nor a usage error
DEBUG_ENV = "LLAMA_AUDIT_DEBUG"  # set (not 0): exceptions keep their traceback
SHARDS_WRITTEN_META = "llama_audit.shards_written"  # click ctx.meta: shards finished in this command


def os_error_line(exc: OSError, shards_written: int = 0) -> str:
    """An OS error as one line: what happened, to which path, and what to do about it."""
    import errno

    path = exc.filename if exc.filename is not None else "?"
    if exc.filename2 is not None:
        path = f"{path} -> {exc.filename2}"
    what = (exc.strerror or type(exc).__name__).lower()
    fixes = {
        errno.EACCES: "make it writable (or readable) for this user, or choose another path",
        errno.EPERM: "make it writable (or readable) for this user, or choose another path",
        errno.EROFS: "the file system is read-only: choose another path",
        errno.ENOSPC: "free space (or raise the quota)",
        errno.EDQUOT: "free space (or raise the quota)",
        errno.ENOENT: "check that the path exists (and was not removed while running)",
        errno.EMFILE: "too many open files: raise the limit (ulimit -n) or use fewer --workers",
        errno.ENAMETOOLONG: "shorten the path",
    }
    fix = fixes.get(exc.errno, "check the path and its file system")
    resume = "; finished shards are kept: rerun the same command to resume" if shards_written else ""
    return f"{what}: {path}; {fix}{resume}"


def _internal_error(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 200 characters) and where in llama_audit it
    was raised: enough to recognise a known bug at 3 a.m., without a 70-line traceback."""
    import traceback

    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if "llama_audit" in frame.filename.replace("\\", "/"):
            where = f" (at {frame.filename.rsplit('llama_audit', 1)[-1].lstrip('/')}:{frame.lineno} in {frame.name})"
            break
    return f"{type(exc).__name__}: {first[:200]}{where}" if first else f"{type(exc).__name__}{where}"

# Closed sets of values are click Choices: a typo is a usage error that lists them, and shell
# completion offers them. (Spelled out here so that start-up imports no executor; a test checks
# EXECUTOR_CHOICES against llama_audit.executors.EXECUTORS.)
EXECUTOR_CHOICES = ("local", "ray")
EMIT_CHOICES = ("jsonl",)
REPORT_FORMATS = ("table", "json", "markdown", "md", "csv", "html")


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

    def invoke(self, ctx):
        """The last resort for every command: what reaches here was not turned into an error by the
        layers below. An OS error becomes one line with its path and a fix; any other exception
        (a bug) one line saying so and how to get the traceback (``LLAMA_AUDIT_DEBUG=1``, which
        lets every exception through as it is)."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt, BrokenPipeError):
            raise
        except Exception as exc:
            if os.environ.get(DEBUG_ENV, "").strip() not in ("", "0"):
                raise
            written = ctx.meta.get(SHARDS_WRITTEN_META, 0)
            if isinstance(exc, OSError):
                fail(os_error_line(exc, written), EXIT_FAILED_SHARDS if written else EXIT_USAGE)
            say(("internal error:", "bold red"), f" {_internal_error(exc)}; this is a bug: rerun with "
                f"{DEBUG_ENV}=1 for the traceback and report it" + ("; finished shards are kept" if written else ""))
            raise click.exceptions.Exit(EXIT_INTERNAL) from None


@click.group(cls=AuditGroup, no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="llama-audit", message="%(prog)s %(version)s",
                      help="Print the version and exit.")
def app() -> None:
    """Audit LLM pretraining corpora the way Llama 2 (section 4.1) did."""


def _complete_analyzer_names(ctx, param, incomplete: str) -> list[str]:
    """Shell completion of analyzer names, also after commas (``--analyzers language,pro<TAB>``)."""
    from llama_audit.analyzers.registry import available_names

    done, _, last = incomplete.rpartition(",")
    head = f"{done}," if done else ""
    given = set(done.split(",")) if done else set()
    return [head + name for name in available_names() if name.startswith(last) and name not in given]


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _one_line(exc: BaseException) -> str:
    """A user-facing error as one line. (str() of a KeyError-style exception quotes its message.)"""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc)


def say(*parts: str | tuple[str, str]) -> None:
    """One line on stderr from plain strings and ``(text, style)`` pairs, each printed literally
    (no markup, control characters shown as ``\\xNN``): user data can neither break nor restyle
    the output, so every message is safe by default."""
    from rich.text import Text

    from llama_audit.report.section import printable

    err.print(Text.assemble(*((printable(p), "") if isinstance(p, str) else (printable(p[0]), p[1]) for p in parts)))
    # (a str given to err.print directly is printed literally too: see PlainConsole)


def warn(message: str) -> None:
    """``warning: MESSAGE`` on stderr (the message is printed literally)."""
    say(("warning:", "yellow"), " ", message)


def fail(message: str, code: int = EXIT_USAGE) -> None:
    """``error: MESSAGE`` on stderr (printed literally), then exit with ``code``."""
    say(("error:", "bold red"), " ", message)
    raise click.exceptions.Exit(code)


@contextlib.contextmanager
def scan_errors_as_exit_codes(hooks: "ProgressHooks"):
    """Around a scan job (``scan``, ``eval``): its errors as one line and the exit code the README
    lists (2 before work, 1 when OUT could not be written, 130 interrupted)."""
    from llama_audit.corpus import UnsupportedFormat
    from llama_audit.scan import StrictError
    from llama_audit.store import OutputWriteError
    from llama_audit.types import ConfigError

    try:
        yield
    except (ConfigError, UnsupportedFormat, FileNotFoundError) as exc:
        hooks.stop()
        fail(_one_line(exc))
    except StrictError as exc:
        hooks.stop()
        fail(f"--strict: {exc}")
    except OutputWriteError as exc:  # disk full or OUT unwritable after work began: resumable
        hooks.stop()
        fail(str(exc), EXIT_FAILED_SHARDS)
    except KeyboardInterrupt:
        hooks.stop()
        err.print("interrupted: finished shards are kept; rerun the same command to resume")
        raise click.exceptions.Exit(EXIT_INTERRUPTED)


class ProgressHooks:
    """Rich progress on stderr: documents, bytes, docs/s, MB/s and an ETA from input bytes."""

    #: how the warning about an analyzer of the default set that cannot run here begins (job.py)
    ANALYZER_SKIPPED = "skipping analyzer "
    #: the option that names the text field, in the reasons shown (eval calls it --generation-field)
    text_field_flag = "--text-field"

    def __init__(self, quiet: bool, *, out_is_new: bool = True):
        self.quiet = quiet
        self.out_is_new = out_is_new
        self.progress = None
        self.task = None
        self.docs = 0

    def warn(self, message: str) -> None:
        # Once per OUT: the scan that created it said which analyzers cannot run here (the manifest
        # and the report keep saying it); each resume of that scan would only repeat it.
        if self.out_is_new or not message.startswith(self.ANALYZER_SKIPPED):
            warn(message)

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
        if outcome.status == "done":  # the last-resort error handler says so: "rerun to resume"
            ctx = click.get_current_context(silent=True)
            if ctx is not None:
                ctx.meta[SHARDS_WRITTEN_META] = ctx.meta.get(SHARDS_WRITTEN_META, 0) + 1
        if outcome.status == "failed":
            reason = str(outcome.reason).replace("--text-field", self.text_field_flag)
            say(("shard failed:", "red"), " ", reason)  # err is also the progress bar's console

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


@app.command(epilog="Options of every analyzer: llama-audit analyzers NAME.")
@click.argument("corpus", nargs=-1, required=False)
@click.option("--out", "-o", required=True, help="Output directory (annotations, partials, summary, manifest).")
@click.option("--analyzers", default=None, shell_complete=_complete_analyzer_names,
              help="Comma-separated analyzers (default: all available; see llama-audit analyzers).")
@click.option("--languages", default="en", show_default=True,
              help="Language scope of the scoped analyzers' statistics; 'all' disables the gate.")
@click.option("--option", "option", multiple=True, metavar="NAME.KEY=VALUE",
              help="An analyzer's option (repeatable), e.g. toxicity.precision=bf16.")
@click.option("--text-field", default="text", show_default=True,
              help="Field holding the document text (a path such as meta.text); fallbacks comma-separated, "
                   "e.g. text,content,raw_content: per record the first holding a string.")
@click.option("--id-field", default="id", show_default=True,
              help="Field holding the document id (absent: <shard>:<row>); fallbacks comma-separated, as --text-field.")
@click.option("--input-format", "input_format", default=None, metavar="FORMAT",
              help="With '-' (read the corpus from standard input): jsonl (default), jsonl.gz or jsonl.zst.")
@click.option("--hf-dataset", "hf_dataset", default=None, metavar="NAME",
              help="Instead of CORPUS: stream one split of a dataset through the datasets library (a Hub name "
                   "or a local folder), for datasets that are no plain files; plain files: hf://datasets/NAME.")
@click.option("--hf-config", "hf_config", default=None, metavar="CONFIG", help="With --hf-dataset: its configuration.")
@click.option("--hf-split", "hf_split", default=None, metavar="SPLIT", help="With --hf-dataset: the split (e.g. train).")
@click.option("--group-by", "group_by", default=None, metavar="FIELD",
              help="Also count everything per value of this record field (source, meta.source), or per host "
                   "name with host(FIELD), e.g. host(url); report --group-by shows the tables per group.")
@click.option("--workers", default=1, type=click.IntRange(min=1), show_default=True,
              help="Local worker processes (shards run in parallel); with --executor ray and no --ray-address, "
                   "the CPUs of the local Ray instance.")
@click.option("--executor", default="local", show_default=True, type=click.Choice(EXECUTOR_CHOICES),
              help="local (this machine) | ray (a Ray cluster sharing OUT's file system).")
@click.option("--ray-address", default=None, help="Ray cluster address (default: start a local Ray).")
@click.option("--ray-mode", "ray_mode", type=click.Choice(["auto", "data", "tasks"]), default=None,
              help="With --executor ray: data = a Ray Data pipeline (CPU stage, then the GPU model in an actor "
                   "pool); tasks = one Ray task per shard; auto (default): data when an analyzer declares two stages.")
@click.option("--ray-gpu-actors", "ray_gpu_actors", type=click.IntRange(min=1), default=None,
              help="With --executor ray: actors of the GPU stage (default: one per cluster GPU, or 1 CPU actor).")
@click.option("--ray-cpu-tasks", "ray_cpu_tasks", type=click.IntRange(min=1), default=None,
              help="With --executor ray: concurrent CPU-stage tasks (default: the CPUs the actors leave).")
@click.option("--ray-write-actors", "ray_write_actors", type=click.IntRange(min=1), default=None,
              help="With --executor ray: actors of the write stage (finish, folds, writes; default: one per 16 "
                   "CPU tasks).")
@click.option("--ray-max-retries", "ray_max_retries", type=click.IntRange(min=0), default=None,
              help="With --executor ray: retries of a shard's stage after its worker or actor died (default 2).")
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
@click.option("--emit", default=None, type=click.Choice(EMIT_CHOICES),
              help="'jsonl': stream one JSON object per document to stdout.")
@click.option("--attributes-out", "attributes_out", default=None, metavar="DIR",
              help="After the scan, write dolma attribute files of the finished shards to DIR "
                   "(as `llama-audit export dolma OUT --to DIR`).")
@click.option("--staging", default=None, metavar="DIR",
              help="With --out URL (s3://, gs://, ...): the local staging directory mirroring it (default: one "
                   "per URL under $LLAMA_AUDIT_STAGING or ~/.cache/llama-audit/staging).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def scan(corpus, out, analyzers, languages, option, text_field, id_field, group_by, workers, executor, ray_address,
         num_shards, shard_index, batch_docs, strict, overwrite, skip_unknown, emit, quiet, input_format,
         attributes_out=None, hf_dataset=None, hf_config=None, hf_split=None, staging=None, ray_mode=None,
         ray_gpu_actors=None, ray_cpu_tasks=None, ray_max_retries=None, ray_write_actors=None) -> None:
    """Scan a corpus: annotate every document and write additive partial summaries (resumable).
    CORPUS '-' reads one shard from standard input (cat part.jsonl | llama-audit scan - --out OUT)."""
    from llama_audit.corpus import STDIN_ARG
    from llama_audit.corpus.fields import normal_field_list
    from llama_audit.emit import EmitClosed
    from llama_audit.job import ScanRequest, run_scan
    from llama_audit.scan import ReadOptions
    from llama_audit.types import ConfigError

    langs = tuple(code.lower() for code in (_split(languages) or ["en"]))
    try:
        given = analyzer_options_given(option)
        text_field, id_field = normal_field_list(text_field, "--text-field"), normal_field_list(id_field, "--id-field")
        if attributes_out is not None:
            from llama_audit.export.dolma import check_destination

            check_destination(out, attributes_out)
    except ConfigError as exc:
        fail(str(exc))
    if tuple(corpus) == (STDIN_ARG,) and (sys.stdin is None or sys.stdin.isatty()):
        fail("'-' reads the corpus from standard input, which is a terminal here; pipe it in "
             "(cat part.jsonl | llama-audit scan - --out OUT)")
    if bool(corpus) == (hf_dataset is not None):
        fail("give the corpus as CORPUS paths or as --hf-dataset NAME (one of the two)")
    if hf_dataset is None and (hf_config is not None or hf_split is not None):
        fail("--hf-config and --hf-split are for --hf-dataset NAME")
    ray_options = {k: v for k, v in {"mode": ray_mode, "gpu_actors": ray_gpu_actors, "cpu_tasks": ray_cpu_tasks,
                                     "write_actors": ray_write_actors, "max_retries": ray_max_retries}.items()
                   if v is not None}
    if ray_options and executor != "ray":
        fail(f"--ray-{next(iter(ray_options)).replace('_', '-')} is for --executor ray")
    req = ScanRequest(paths=corpus, out=out, analyzers=_split(analyzers), languages=langs, options=given,
                      read=ReadOptions(text_field=text_field, id_field=id_field,
                                       batch_docs=max(1, batch_docs) if batch_docs else None, group_by=group_by),
                      strict=strict, overwrite=overwrite, skip_unknown=skip_unknown, workers=max(1, workers),
                      num_shards=num_shards, shard_index=shard_index, executor=executor, ray_address=ray_address,
                      ray_options=ray_options, input_format=input_format, staging=staging, hf_dataset=hf_dataset, hf_config=hf_config, hf_split=hf_split)
    from pathlib import Path

    hooks = ProgressHooks(quiet, out_is_new=overwrite or not (Path(out) / "config.json").is_file())
    if emit == "jsonl":
        from llama_audit.emit import JsonlEmitter

        req.emitter = JsonlEmitter(sys.stdout.buffer)
    try:
        with scan_errors_as_exit_codes(hooks):
            result = run_scan(req, hooks)
    except EmitClosed:
        hooks.stop()
        _silence_stdout()
        err.print("stdout was closed: scan stopped; finished shards are kept; rerun to resume")
        raise click.exceptions.Exit(EXIT_PIPE_CLOSED)
    # records but not one document: nothing was audited, whatever the shards say (exit code 1)
    no_documents = result.documents == 0 and result.bad_records > 0
    if no_documents:
        say(("error:", "bold red"), f" no document was read: all {result.bad_records:,} records are bad "
            f"(is --text-field {text_field!r} right? see bad_samples in {out}/manifest.json)")
    export_failed = attributes_out is not None and not _export_attributes(out, attributes_out, quiet)
    if result.nothing_to_do:
        raise click.exceptions.Exit(EXIT_FAILED_SHARDS if no_documents or export_failed else EXIT_OK)  # the job said why (a read-only, finished OUT)
    if not quiet:
        state = "summary written" if result.summary_written else "summary pending (shards left)"
        err.print(f"{result.documents:,} documents, {result.bad_records:,} bad records, "
                  f"{result.shards_run} shard(s) scanned, {result.shards_skipped} resumed, "
                  f"{len(result.failed)} failed in {result.seconds:.1f}s; {state} -> {out}")
    if result.failed:
        say((f"{len(result.failed)} shard(s) failed", "red"), f"; see {out}/manifest.json. Rerun to retry them.")
    raise click.exceptions.Exit(EXIT_FAILED_SHARDS if no_documents or export_failed else result.exit_code)


@app.command(epilog="Report options of every analyzer: llama-audit analyzers NAME.")
@click.argument("out")
@click.option("--format", "-f", "format", default="table", show_default=True, type=click.Choice(REPORT_FORMATS),
              help="table (the terminal) | json | markdown (md) | csv | html")
@click.option("--option", "option", multiple=True, metavar="NAME.KEY=VALUE",
              help="An analyzer's report option (repeatable), e.g. identities.top=10.")
@click.option("--paper/--no-paper", default=None,
              help="Show the Llama 2 paper's numbers and the difference (\u0394) beside yours (json and csv: "
                   "paper_pct beside pct). Default: shown in html and as markers in the figures, not in the other "
                   "formats.")
@click.option("--figures", "figures_dir", default=None, metavar="DIR",
              help="Write the figures (SVG and PNG; needs the report extra: matplotlib) to DIR. Default: with "
                   "--format html, to OUT/report (other formats draw none without --figures).")
@click.option("--no-figures", "no_figures", is_flag=True, help="Draw and write no matplotlib figures (the html keeps the toxicity table's inline histogram).")
@click.option("--min-docs", "min_docs", default=0, show_default=True, type=click.IntRange(min=0), metavar="N",
              help="Hide (terminal, markdown) or grey out (html) rows counting fewer than N documents; "
                   "json and csv keep every row.")
@click.option("--against", "against", default=None, metavar="OLD",
              help="Compare with the audit OLD (e.g. the scan a `filter` run read): every table as old, new "
                   "and change, and the demographic erasure ratio per identity axis.")
@click.option("--group-by", "group_by", default=None, metavar="FIELD",
              help="Every table per group of a scan made with --group-by FIELD (the same FIELD): the --top-groups "
                   "groups with the most documents, the rest summed into 'other'.")
@click.option("--top-groups", "top_groups", default=None, type=click.IntRange(min=0), metavar="N",
              help="With --group-by: groups shown by name, most documents first (default 20); the rest are "
                   "summed into 'other'.")
@click.option("--top-hosts", "top_hosts", default=None, type=click.IntRange(min=1), metavar="N",
              help="The N hosts with the densest personal data (documents with PII per 1,000, with 95% intervals): "
                   "needs a scan with --group-by 'host(url)' and the pii analyzer.")
def report(out, format, option, paper, figures_dir, no_figures, min_docs, against, group_by, top_groups,
           top_hosts) -> None:
    """Print the paper-style tables (9a, 9b, 10, toxicity, PII and every plugin's section) for a scan;
    with --against OLD, how OUT differs from OLD."""
    from llama_audit.analyzers.registry import typed_report_options
    from llama_audit.report.render import render_csv, render_html, render_json, render_markdown, render_terminal
    from llama_audit.report.tables import build_report, require_out
    from llama_audit.types import ConfigError

    try:
        report_options = typed_report_options(analyzer_options_given(option))
        if against is not None and (group_by is not None or top_hosts is not None or top_groups is not None):
            raise ConfigError("--group-by, --top-groups and --top-hosts do not combine with --against "
                              "(compare whole audits)")
        if against is not None and (figures_dir is not None or no_figures):
            raise ConfigError("--figures and --no-figures do not combine with --against (the diff draws tables only)")
        if top_groups is not None and group_by is None:
            raise ConfigError("--top-groups needs --group-by FIELD (the field the scan grouped by)")
        if against is not None:
            return _report_diff(_staged_out(out), _staged_out(against), format, report_options, paper=paper,
                                min_docs=min_docs, names=(_shown(out), _shown(against)))
        at_url = _is_remote(out)
        out = _staged_out(out)  # an OUT at a URL: its bookkeeping, pulled into the staging mirror
        require_out(out)
        if figures_dir is not None and not no_figures:
            from llama_audit.report.figures import check_directory

            check_directory(figures_dir)
        data = build_report(out, report_options=report_options, paper=paper is True, group_by=group_by,
                            top_groups=top_groups, top_hosts=top_hosts)  # --paper: paper_pct in json
    except ConfigError as exc:
        fail(str(exc))
    if not data["corpus"]["complete"]:
        failed = data["corpus"].get("failed_shards") or []
        warn(f"partial report: {data['corpus']['shards_done']} of {data['corpus']['shards']} shards done"
             + (f"; failed: {', '.join(failed[:5])}{' ...' if len(failed) > 5 else ''}" if failed else ""))
    # figures: with the html (embedded, and written to OUT/report/) or where --figures asks for them;
    # the other formats stay quick and write nothing into OUT
    wanted = not no_figures and (format == "html" or figures_dir is not None)
    drawn = _report_figures(out, data, figures_dir, paper=paper is not False, report_options=report_options,
                            write=figures_dir is not None or not at_url) if wanted else []
    kw = dict(paper=(format == "html") if paper is None else paper, report_options=report_options, min_docs=min_docs)
    with stdout_reader_may_leave():
        if format == "json":
            sys.stdout.write(render_json(data))
        elif format in ("markdown", "md"):
            sys.stdout.write(render_markdown(data, **kw))
        elif format == "csv":
            sys.stdout.write(render_csv(data, **kw))
        elif format == "html":
            sys.stdout.write(render_html(data, figures=drawn, **kw))
        else:
            render_terminal(data, PipeConsole(), **kw)


def _is_remote(out: str) -> bool:
    from llama_audit.remote_out import is_remote

    return is_remote(out)


def _staged_out(out: str) -> str:
    """``report`` on an OUT at a URL: the staging directory its bookkeeping was pulled into
    (llama_audit/remote_out.py); a local OUT as it is."""
    if not _is_remote(out):
        return out
    from llama_audit.remote_out import stage_for_read

    return str(stage_for_read(out))


def _report_figures(out: str, data: dict, directory: str | None, *, paper: bool, report_options,
                    write: bool = True) -> list:
    """The report's figures, drawn and written as SVG and PNG to ``directory`` (default
    OUT/report/); without matplotlib none, and one line on how to get them. An OUT that cannot
    take them (read-only) is a warning; a ``--figures DIR`` that cannot, an error. ``write=False``
    (an OUT at a URL without ``--figures``: its OUT/report/ would be a hidden staging directory):
    drawn for the HTML page, which embeds them, and written nowhere."""
    from pathlib import Path

    from llama_audit.report import figures
    from llama_audit.report.render import drawn_figures

    if not figures.available():
        say(figures.INSTALL_HINT)
        return []
    drawn = drawn_figures(data, paper=paper, report_options=report_options)
    if not write:
        return drawn
    target = figures.default_directory(out) if directory is None else Path(directory)
    try:
        figures.write_figures(drawn, target)
    except OSError as exc:
        if directory is not None:
            fail(f"--figures {directory}: cannot write the figures: {exc.strerror or exc}")
        warn(f"figures not written to {target}: {exc.strerror or exc} (use --figures DIR)")
    return drawn


def _shown(out: str) -> str:
    """An OUT as messages name it: a URL without its credentials, a local path as given."""
    from llama_audit.corpus.remote import public_url

    return public_url(out) if _is_remote(out) else out


def _report_diff(new: str, old: str, format: str, report_options, *, paper: bool, min_docs: int,
                 names: tuple[str, str] | None = None) -> None:
    """``report NEW --against OLD`` (llama_audit/report/diff.py): a ConfigError reaches the caller.
    ``names``: NEW and OLD as given (``new``/``old`` may be staging directories of URLs)."""
    from llama_audit.report import diff
    from llama_audit.report.render import render_html, render_markdown, render_terminal

    data = diff.build_diff(new, old, report_options, names=names)
    for warning in data["warnings"]:
        warn(warning)
    kw = dict(paper=paper, report_options=report_options)
    with stdout_reader_may_leave():
        if format == "json":
            sys.stdout.write(diff.render_diff_json(data))
        elif format == "csv":
            sys.stdout.write(diff.render_diff_csv(data, **kw))
        else:
            tables = diff.diff_display_tables(data, **kw)
            if format in ("markdown", "md"):
                sys.stdout.write(render_markdown({}, min_docs=min_docs, tables=tables))
            elif format == "html":
                sys.stdout.write(render_html({}, min_docs=min_docs, tables=tables))
            else:
                render_terminal({}, PipeConsole(), min_docs=min_docs, tables=tables)


@app.command()
@click.argument("out")
@click.option("--allow-failed", is_flag=True,
              help="When every shard is done or failed, write the summary over the done ones (marked partial).")
def merge(out, allow_failed) -> None:
    """Combine the partials of finished shards (e.g. Slurm slices) into the summary and manifest.

    Exit 0 when the summary is written (complete, or partial with --allow-failed), 1 otherwise."""
    from llama_audit.manifest import merge as merge_out
    from llama_audit.types import ConfigError

    try:
        if _is_remote(out):  # the remote gate, the local merge on the staging mirror, then the push
            from llama_audit.remote_out import merge as merge_remote

            manifest = merge_remote(out, allow_failed=allow_failed)
        else:
            manifest = merge_out(out, allow_failed=allow_failed)
    except ConfigError as exc:
        fail(str(exc))
    t, summary = manifest["totals"], manifest["summary"]
    if manifest.get("nothing_to_do"):
        say(f"{out} is read-only and complete ({t['shards']} shards): nothing to do")
        raise click.exceptions.Exit(EXIT_OK)
    pending = t["shards"] - t["shards_done"] - t["shards_failed"]
    if summary["complete"]:
        state = "summary written"
    elif summary.get("partial"):
        state = (f"PARTIAL summary written over the {t['shards_done']} done shard(s); not complete: "
                 f"failed: {', '.join(summary['failed_shards'])}")
    elif t["shards_failed"] and not pending:
        state = "summary pending: rerun the scan to retry the failed shards, or merge --allow-failed"
    else:
        state = f"summary pending ({pending} shard(s) not scanned yet)"
    say(f"{t['shards_done']} of {t['shards']} shards done ({t['shards_failed']} failed), "
        f"{t['documents']:,} documents; {state}")
    if t.get("shards_damaged"):
        warn(f"{t['shards_damaged']} shard(s) have damaged outputs (see 'damaged' in {out}/manifest.json): "
             "rerun the scan to redo them")
    if manifest.get("running"):
        warn(f"still running in {out}: {'; '.join(manifest['running'])}")
    raise click.exceptions.Exit(EXIT_OK if summary["complete"] or summary.get("partial") else EXIT_FAILED_SHARDS)


def _export_attributes(out: str, dest: str, quiet: bool) -> bool:
    """``scan --attributes-out``: export the finished shards (those exported before are skipped);
    False (after a one-line message) when some could not be."""
    from llama_audit.export.dolma import ExportRequest, run_export
    from llama_audit.types import ConfigError

    try:
        res = run_export(ExportRequest(out=out, dest=dest), warn)
    except ConfigError as exc:
        say(("error:", "bold red"), " --attributes-out: ", _one_line(exc))
        return False
    if not quiet:
        err.print(f"dolma attributes: {res.written} shard(s) written, {res.skipped} resumed -> {dest}",
                  markup=False, highlight=False)
    return not res.refused


@app.group("export")
def export_group() -> None:
    """Hand the annotations to other cleaning pipelines (dolma attribute files)."""


@export_group.command("dolma")
@click.argument("out")
@click.option("--to", "dest", required=True, metavar="DIR",
              help="Where the attribute files go: plays dolma's attributes/<name>/ beside documents/.")
@click.option("--name", default=None,
              help="First part of every attribute name (<name>__<analyzer>__<attribute>; default llama_audit).")
def export_dolma(out, dest, name) -> None:
    """Write dolma attribute files from a scan's annotations: one per shard, line-aligned with its
    records, so `dolma mix` can filter on them and redact PII with span_replacement."""
    from llama_audit.export.dolma import DEFAULT_NAME, ExportRequest, run_export
    from llama_audit.types import ConfigError

    try:
        res = run_export(ExportRequest(out=out, dest=dest, name=DEFAULT_NAME if name is None else name), warn)
    except ConfigError as exc:
        fail(_one_line(exc))
    err.print(f"dolma attributes: {res.written} written, {res.skipped} resumed, {len(res.refused)} refused; "
              f"{res.lines:,} lines -> {dest}", markup=False, highlight=False)
    if res.refused:
        say((f"{len(res.refused)} shard(s) refused", "red"), "; see the warnings above (rerun after fixing them)")
    raise click.exceptions.Exit(res.exit_code)


@app.command("filter")
@click.argument("out")
@click.option("--out", "-o", "clean", required=True, help="Where the cleaned corpus goes (same layout and formats).")
@click.option("--redact", default=None, help="'pii' or 'pii:TYPE,TYPE': replace PII spans by <TYPE>.")
@click.option("--drop", multiple=True, help="Drop documents where EXPR holds, e.g. \"lang != 'en'\" (repeatable).")
@click.option("--keep", multiple=True, help="Keep only documents where EXPR holds (repeatable).")
@click.option("--overwrite/--no-overwrite", default=False, help="Discard a CLEAN written with other settings.")
@click.option("--dry-run", is_flag=True, help="Count what each rule would drop and redact; write nothing.")
@click.option("--allow-empty", is_flag=True, help="Write even when the rules drop every document.")
def filter_cmd(out, clean, redact, drop, keep, overwrite, dry_run, allow_empty) -> None:
    """Write a cleaned copy of the scanned corpus: drop and/or redact documents from their annotations."""
    from llama_audit.filter import FilterRequest, run_filter
    from llama_audit.types import ConfigError

    try:
        res = run_filter(FilterRequest(out=out, clean=clean, drop=drop, keep=keep, redact=redact,
                                       overwrite=overwrite, dry_run=dry_run, allow_empty=allow_empty), warn)
    except ConfigError as exc:
        fail(str(exc))
    if res.dry_run:
        err.print(f"dry run (nothing written): of {res.documents:,} documents, {res.kept:,} would be kept, "
                  f"{sum(res.dropped.values()):,} dropped; {res.redacted_documents:,} would be redacted "
                  f"({sum(res.redacted_spans.values()):,} spans)")
    else:
        err.print(f"kept {res.kept:,} documents; dropped {sum(res.dropped.values()):,}; "
                  f"redacted {res.redacted_documents:,} ({sum(res.redacted_spans.values()):,} spans); "
                  f"{res.shards_done} shard(s) written, {res.shards_skipped} resumed -> {clean}")
    for why, n in sorted(res.dropped.items()):
        err.print(f"  dropped {n:,}: {why}")
    for t, n in sorted(res.redacted_spans.items()):
        err.print(f"  redacted {n:,} {t} span(s)")
    if res.stale_temporaries_removed:
        err.print(f"  removed {res.stale_temporaries_removed:,} temporary file(s) left by an interrupted run")
    if res.refused:
        say((f"{len(res.refused)} shard(s) refused", "red"), "; see the warnings above (rerun after fixing them)")
    raise click.exceptions.Exit(res.exit_code)


@app.command("estimate")
@click.argument("corpus", nargs=-1, required=True)
@click.option("--analyzers", default=None, shell_complete=_complete_analyzer_names,
              help="Comma-separated analyzers (default: all available).")
@click.option("--languages", default="en", show_default=True, help="Language scope, as for scan.")
@click.option("--option", "option", multiple=True, metavar="NAME.KEY=VALUE", help="An analyzer's option, as for scan.")
@click.option("--sample-mb", default=8.0, type=float, show_default=True, help="MB of text to time the analyzers on.")
@click.option("--workers", default=1, type=click.IntRange(min=1), show_default=True,
              help="Project the time for this many parallel workers too.")
@click.option("--text-field", default="text", show_default=True, help="Field holding the document text.")
@click.option("--skip-unknown/--no-skip-unknown", default=False, help="Skip files of unknown type.")
def estimate_cmd(corpus, analyzers, languages, option, sample_mb, workers, text_field, skip_unknown) -> None:
    """Time the analyzers on a sample of the corpus and project how long a full scan takes here."""
    from llama_audit.corpus import STDIN_ARG, UnsupportedFormat
    from llama_audit.estimate import estimate
    from llama_audit.types import ConfigError

    if STDIN_ARG in corpus:
        fail("estimate projects a scan from the corpus's size on disk, which standard input ('-') has not: "
             "give the files (or save a sample of the stream to a file and estimate that)")
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


#: the decoding options' values when not given (``generation_options``; None there: not given)
GENERATION_DEFAULTS = {"seed": 0, "max_new_tokens": 50, "batch_size": 16, "limit": None}  # 50: generate.MAX_NEW_TOKENS


def generation_options(command):
    """The decoding options of ``--generate-with`` (``prompts`` and ``eval``): seed, length, batch,
    limit. Their default is None (not given), so that one given without ``--generate-with`` is
    refused rather than ignored (:func:`generation_settings`)."""
    for option in reversed([
        click.option("--seed", default=None, type=int, help="With --generate-with: the sampling seed (default 0)."),
        click.option("--max-new-tokens", default=None, type=click.IntRange(min=1),
                     help="With --generate-with: tokens generated per prompt (default 50)."),
        click.option("--batch-size", default=None, type=click.IntRange(min=1),
                     help="With --generate-with: prompts per generate call (default 16)."),
        click.option("--limit", default=None, type=click.IntRange(min=1),
                     help="With --generate-with: the first N prompts only."),
    ]):
        command = option(command)
    return command


def generation_settings(generate_with, **given) -> dict:
    """The decoding options with their defaults filled in; one given without ``--generate-with``
    is a one-line error (it would change nothing)."""
    if generate_with is None:
        for name, value in given.items():
            if value is not None:
                fail(f"--{name.replace('_', '-')} needs --generate-with (it sets how generations are made)")
    return {k: (given.get(k) if given.get(k) is not None else v) for k, v in GENERATION_DEFAULTS.items()}


@app.command("prompts")
@click.argument("benchmark", type=click.Choice(["toxigen", "bold", "truthfulqa"]))
@click.option("--out", "-o", required=True, metavar="FILE|DIR",
              help="JSONL file to write (gzip when it ends in .gz): id, prompt, meta.group (BOLD: meta.domain); "
                   "with --generate-with, a directory of parts.")
@click.option("--generate-with", "generate_with", default=None, metavar="MODEL_DIR",
              help="Also generate a continuation of each prompt with this local causal LM (temperature 0.1, "
                   "top-p 0.9, as Llama 2); resumable: rerun to finish.")
@generation_options
@click.option("--device", default="auto", show_default=True, help="With --generate-with: auto | cpu | cuda | cuda:N.")
def prompts_cmd(benchmark, out, generate_with, seed, max_new_tokens, batch_size, limit, device) -> None:
    """Write the bundled prompts of a safety benchmark (BOLD: CC BY-SA 4.0, amazon-science/bold;
    ToxiGen: the revised set Llama 2 used, MIT + CDLA-Permissive-2.0, microsoft/SafeNLP; TruthfulQA:
    Apache-2.0, sylinrl/TruthfulQA, behind its 6-shot QA primer), with their group labels. Add each model generation as 'generation' (or pass --generate-with) and run
    `llama-audit eval`."""
    from llama_audit.eval.prompts import write_prompts
    from llama_audit.types import ConfigError

    chosen = generation_settings(generate_with, seed=seed, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                 limit=limit)
    seed, max_new_tokens, batch_size, limit = (chosen[k] for k in ("seed", "max_new_tokens", "batch_size", "limit"))
    try:
        if generate_with is not None:
            from llama_audit.eval.generate import generate_parts

            written, kept = generate_parts(benchmark, generate_with, out, seed=seed, batch_size=batch_size,
                                           max_new_tokens=max_new_tokens, device=device, limit=limit)
            err.print(f"{written} part(s) generated, {kept} already there -> {out} (next: llama-audit eval {out} "
                      f"--benchmark {benchmark} --out OUT)", markup=False, highlight=False)
            return
        n = write_prompts(benchmark, out)
    except ConfigError as exc:
        fail(str(exc))
    err.print(f"{n:,} {benchmark} prompts -> {out} (attribution and licences: docs/eval.md)",
              markup=False, highlight=False)


@app.command("eval")
@click.argument("generations", nargs=-1, required=False)
@click.option("--out", "-o", required=True, help="Output directory (like scan's; report it with `llama-audit report`).")
@click.option("--benchmark", default="all", show_default=True,
              type=click.Choice(["toxigen", "bold", "truthfulqa", "all"]),
              help="Which benchmark scores the generations (all: TruthfulQA only with --truthfulqa-judge).")
@click.option("--generation-field", default="generation", show_default=True, metavar="FIELD",
              help="Field path of the generated text (what is scored).")
@click.option("--prompt-field", default="prompt", show_default=True, metavar="FIELD",
              help="Field path of the prompt: BOLD scores prompt + generation (as Llama 2 did); '' for the "
                   "generation alone. ToxiGen scores the generation alone.")
@click.option("--group-field", default="meta.group", show_default=True, metavar="FIELD",
              help="Field path of the demographic group (e.g. meta.group).")
@click.option("--domain-field", default="meta.domain", show_default=True, metavar="FIELD",
              help="BOLD: field path of the domain (gender, race, ...); '' for none.")
@click.option("--id-field", default="id", show_default=True, help="Field holding the record id.")
@click.option("--toxicity-model", default=None, metavar="DIR|HUB_ID",
              help="ToxiGen classifier (default: tomh/toxigen_roberta, the paper's).")
@click.option("--toxicity-tokenizer", default=None, metavar="DIR|HUB_ID", help="Its tokenizer (default: the model's).")
@click.option("--device", default=None, help="auto | cpu | cuda | cuda:N (ToxiGen classifier).")
@click.option("--toxicity-self-test/--no-toxicity-self-test", "self_test", default=None,
              help="Check the classifier on built-in sentences first (default: on).")
@click.option("--truthfulqa-judge", default=None, metavar="DIR",
              help="TruthfulQA truth judge: a local causal LM in GPT-judge format (e.g. "
                   "allenai/truthfulqa-truth-judge-llama2-7B); without it TruthfulQA is skipped.")
@click.option("--truthfulqa-info-judge", default=None, metavar="DIR",
              help="TruthfulQA informativeness judge (GPT-info format): needed for Table 11's % true+info.")
@click.option("--question-field", default="meta.question", show_default=True, metavar="FIELD",
              help="TruthfulQA: field path of the question the judges read.")
@click.option("--generate-with", "generate_with", default=None, metavar="MODEL_DIR",
              help="Generate the --benchmark's bundled prompts with this local causal LM first (into "
                   "OUT/generations/BENCHMARK; no GENERATIONS then), then score them; rerun to resume.")
@generation_options
@click.option("--workers", default=1, type=click.IntRange(min=1), show_default=True, help="Local worker processes.")
@click.option("--overwrite/--no-overwrite", default=False, help="Discard an OUT written with another configuration.")
@click.option("--strict/--no-strict", default=False, help="Stop at the first bad record (exit code 2).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def eval_cmd(generations, out, benchmark, generation_field, prompt_field, group_field, domain_field, id_field,
             toxicity_model, toxicity_tokenizer, device, self_test, truthfulqa_judge, truthfulqa_info_judge,
             question_field, generate_with, seed, max_new_tokens, batch_size, limit, workers, overwrite, strict,
             quiet) -> None:
    """Score a model's generations with ToxiGen, BOLD and/or TruthfulQA (Llama 2 Table 11); resumable
    and mergeable like scan. GENERATIONS: JSONL/Parquet files or directories (any input scan reads);
    or none, with --generate-with MODEL_DIR: generate the benchmark first, then score it."""
    from pathlib import Path

    from llama_audit.eval.run import EvalRequest, run_eval

    more = {k: v for k, v in (("device", device), ("self_test", self_test)) if v is not None}
    generate = {**generation_settings(generate_with, seed=seed, max_new_tokens=max_new_tokens,
                                      batch_size=batch_size, limit=limit), "device": device or "auto"}
    req = EvalRequest(paths=generations, out=out, benchmark=benchmark, generation_field=generation_field,
                      prompt_field=prompt_field, group_field=group_field, domain_field=domain_field,
                      id_field=id_field, toxicity_model=toxicity_model, toxicity_tokenizer=toxicity_tokenizer,
                      toxicity_options=more, truthfulqa_judge=truthfulqa_judge,
                      truthfulqa_info_judge=truthfulqa_info_judge, question_field=question_field,
                      truthfulqa_options={"device": device} if device is not None else {},
                      generate_with=generate_with, generate_options=generate, workers=workers,
                      overwrite=overwrite, strict=strict)
    hooks = ProgressHooks(quiet, out_is_new=overwrite or not (Path(out) / "config.json").is_file())
    hooks.text_field_flag = "--generation-field"
    with scan_errors_as_exit_codes(hooks):
        result = run_eval(req, hooks)
    if result.documents == 0 and result.bad_records > 0:
        say(("error:", "bold red"), f" no generation was read: all {result.bad_records:,} records are bad "
            f"(is --generation-field {generation_field!r} right? see bad_samples in {out}/manifest.json)")
        raise click.exceptions.Exit(EXIT_FAILED_SHARDS)
    # a user mistake, not a failure to retry: no input holds the generation field, or no record at all
    absent = [r for r in result.failed.values() if "no record has " in r]  # corpus.fields.absent_everywhere
    if result.documents == 0 and result.failed and len(absent) == len(result.failed):
        fail(f"--generation-field {generation_field!r}: no record of the {len(absent)} input shard(s) has it "
             "(fields seen are listed above); pass the field that holds the model's generations")
    if result.documents == 0 and not result.failed and not result.bad_records and not result.nothing_to_do:
        fail(f"no generation in {', '.join(generations)} (empty input?): nothing was scored")
    if not quiet and not result.nothing_to_do:
        err.print(f"{result.documents:,} generations scored, {result.bad_records:,} bad records, "
                  f"{result.shards_run} shard(s), {result.shards_skipped} resumed, {len(result.failed)} failed "
                  f"in {result.seconds:.1f}s -> {out} (llama-audit report {out})", markup=False, highlight=False)
    if result.failed:
        say((f"{len(result.failed)} shard(s) failed", "red"), f"; see {out}/manifest.json. Rerun to retry them.")
    raise click.exceptions.Exit(result.exit_code)


@app.command("analyzers")
@click.argument("name", required=False, shell_complete=_complete_analyzer_names)
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
    from llama_audit.analyzers.registry import OPT_IN

    for analyzer, target in available_names(opt_in=True).items():
        try:
            cls = load_class(analyzer)
            reason = cls.unavailable_reason(cls.options_from())
        except Exception as exc:  # a broken plugin must not break the listing
            reason = f"cannot load: {type(exc).__name__}: {exc}"
        run_by = "  [run by llama-audit eval, not in the default scan]" if analyzer in OPT_IN else ""
        print(f"{analyzer:12s} {'available' if not reason else 'unavailable: ' + reason}  ({target}){run_by}")


# -- analyzer options on the command line ----------------------------------------------------------
# Analyzers declare their options (Analyzer.Options / ReportOptions); a declared ``flag`` becomes a
# flag of ``scan`` / ``report`` here, and every option is reachable as ``--option NAME.KEY=VALUE``.

ANALYZER_FLAG_COMMANDS = ("scan", "report")  # where declared flags of Options / ReportOptions go
FLAG_PARAM_PREFIX = "analyzer_option__"  # click parameter names of analyzer flags: PREFIX + name__key
ANALYZER_OPTIONS_META = "llama_audit.analyzer_options"  # where the flags' values wait for the command


def _declared_flags(kind: str, taken: set[str]) -> list:
    """(click.Option, OptionSpec) for every declared flag of every loadable analyzer. A flag that
    another option already uses is not added (that option stays reachable through --option), except
    that analyzers declaring the very same flag share it: one ``--identity-mode`` sets each of them
    (the option's ``analyzer_targets``: ``[(analyzer, key), ...]``)."""
    from llama_audit.analyzers.options import specs
    from llama_audit.analyzers.registry import available_names, load_class
    from llama_audit.types import ConfigError

    params = []
    declared: dict[str, click.Option] = {}  # a declared flag -> its option (shared by who declares it too)
    for name in available_names():
        try:
            cls = load_class(name)
        except ConfigError:
            continue  # a broken plugin is reported when it is used
        options_cls = cls.Options if kind == "scan" else getattr(cls, "ReportOptions", None)
        for spec in specs(options_cls, name) if options_cls is not None else []:
            if spec.flag in declared:
                declared[spec.flag].analyzer_targets.append((name, spec.key))
                continue
            if not spec.flag or any(f in taken for f in spec.flag.split("/")):
                continue
            taken.update(spec.flag.split("/"))
            default = "" if spec.default is None else f"; default: {spec.default}"
            help_text = f"{spec.help} [{name}{default}]"
            param_name = f"{FLAG_PARAM_PREFIX}{name}__{spec.key}"
            if "/" in spec.flag:
                params.append(click.Option([spec.flag, param_name], default=None, help=help_text))
            elif spec.choices and all(isinstance(c, str) for c in spec.choices):  # e.g. --lid-engine
                params.append(click.Option([spec.flag, param_name], default=None, type=click.Choice(spec.choices),
                                           help=help_text))
            else:
                params.append(click.Option([spec.flag, param_name], default=None, type=str, help=help_text,
                                           metavar=spec.metavar_text))
            params[-1].analyzer_targets = [(name, spec.key)]
            declared[spec.flag] = params[-1]
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
    targets = {p.name: p.analyzer_targets for p in flags}
    callback = command.core_callback

    def with_flags(**kwargs):
        given: dict[str, dict] = {}
        for param, analyzer_keys in targets.items():
            value = kwargs.pop(param)
            if value is not None:
                for analyzer, key in analyzer_keys:
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


class OneLineLogs(logging.Handler):
    """Libraries' log records as one ``warning:`` line each. Storage backends (gcsfs, s3fs,
    aiobotocore) log their retries with a full traceback, which Python's last-resort handler
    prints whole: 40 lines before our own one-line error. The first line of the message is kept."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            lines = record.getMessage().strip().splitlines()
        except Exception:  # noqa: BLE001 - a record whose arguments do not format
            lines = [str(record.msg)]
        warn(f"{record.name}: {lines[0][:300] if lines else '(no message)'}")


def quiet_library_logs() -> None:
    """Route records that no handler takes (WARNING and above) through :class:`OneLineLogs`."""
    if not logging.root.handlers:
        handler = OneLineLogs(logging.WARNING)
        logging.root.addHandler(handler)


def main() -> None:
    import signal

    from llama_audit.signals import exit_code_for, received_signal, stop_on_signals

    stop_on_signals()  # SIGTERM (Slurm's time limit, kill, timeout) stops a run as Ctrl-C does
    quiet_library_logs()
    try:
        code = command().main(prog_name="llama-audit", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except click.Abort:  # Ctrl-C / SIGTERM in a command that does not report it itself (filter, merge)
        how = f" by {signal.Signals(signum).name}" if (signum := received_signal()) else ""
        err.print(f"interrupted{how}: finished work is kept; rerun the same command to resume",
                  markup=False, highlight=False)
        code = EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `report ... | head`: stop quietly, like any Unix filter
        _silence_stdout()
        code = EXIT_PIPE_CLOSED
    # 130 after SIGINT, 143 after SIGTERM (128 + the signal, as the shell reports a killed process)
    sys.exit(exit_code_for(code if isinstance(code, int) else EXIT_OK))


if __name__ == "__main__":
    main()
