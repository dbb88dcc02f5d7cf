"""The report's numbers, computed once from the summary counts (no analyzer instance, no model).

``build_report(out_dir)`` returns the ``report --format json`` object of docs/outputs.md; every renderer
(terminal, markdown, csv, html, json) draws from it. The core computes the corpus section; every
other section belongs to the analyzer that counted it (its ``report_section``), so a third-party
analyzer's section is built, and drawn, exactly like a built-in's.
"""

from __future__ import annotations

import json
from collections import Counter
from importlib import resources
from typing import Any, Iterable, Mapping

from llama_audit import partials, review_samples
from llama_audit.analyzers.base import Analyzer
from llama_audit.analyzers.options import AnalyzerOptions
from llama_audit.analyzers.registry import available_names, load_class
from llama_audit.corpus.records import TEXT_FIELD_COUNT_PREFIX
from llama_audit.report.provenance import PROVENANCE, build_provenance
from llama_audit.report.section import ReportContext, report_options_for
from llama_audit.store import OutDir
from llama_audit.types import ConfigError

CORPUS = partials.CORPUS  # the core's own section (and the counts it is computed from)
BAD_RECORD_PREFIX = "bad/"  # corpus counts bad/<reason>: records that could not be read, by reason


def paper_reference() -> dict:
    """The Llama 2 paper's numbers (``report --paper``); each analyzer reads its own table."""
    return json.loads((resources.files("llama_audit") / "report" / "llama2_reference.json").read_text())


def load_counts(out: OutDir) -> tuple[dict[str, Counter], dict]:
    """Counts + the manifest as the disk says it is now (:func:`llama_audit.manifest.current`:
    shard states derived afresh from the plan and the done markers, so a killed scan or an
    unmerged slice is never reported complete). The summary is used while it matches the done
    markers it was merged from; otherwise the finished shards' partials are summed."""
    table, manifest = load_counts_table(out)
    return partials.from_table(table), manifest


def load_counts_table(out: OutDir) -> tuple[Any, dict]:
    """The merged partial table (with its per-group rows, when grouped) + the manifest: see
    :func:`load_counts`."""
    from llama_audit.manifest import current  # report/ reads OUT; the manifest module knows how

    manifest = current(out)
    if manifest["summary"]["path"] and out.summary_path().is_file():
        table = partials.read_merged(out.summary_path())  # merged when written
    else:
        done = [e["key"] for e in manifest["shards"] if e["status"] == "done"]
        table = partials.merge_files(out.partial_path(k) for k in done)
    return table, manifest


def load_samples(out: OutDir, manifest: dict) -> Any:
    """The review samples merged over the done shards (:mod:`llama_audit.review_samples`): the
    summary's while it is current (as for the counts), else the done shards' bottom-k merged now.
    An empty table when the scan kept none."""
    limits = review_samples.limits_of(manifest["config"])
    if not limits:
        return review_samples.SCHEMA.empty_table()
    if manifest["summary"]["path"] and out.summary_samples_path().is_file():
        return review_samples.merge_files([out.summary_samples_path()], limits)
    done = [e["key"] for e in manifest["shards"] if e["status"] == "done"]
    return review_samples.merge_files((out.samples_path(k) for k in done), limits)


def corpus_section(c: Counter, manifest: dict) -> dict:
    totals = manifest["totals"]
    section = {
        "documents": c["documents"], "bytes": c["bytes"], "shards": totals["shards"],
        "bad_records": c["bad_records"], "in_scope_documents": c["in_scope_documents"],
        "chars": c["chars"], "languages_in_scope": manifest["config"].get("languages", []),
        "complete": bool(manifest["summary"]["complete"]), "shards_done": totals["shards_done"],
        "shards_failed": totals["shards_failed"],
        "bad_records_by_reason": {k.removeprefix(BAD_RECORD_PREFIX): v for k, v in sorted(c.items())
                                  if k.startswith(BAD_RECORD_PREFIX)},
    }
    used = {k.removeprefix(TEXT_FIELD_COUNT_PREFIX): v for k, v in sorted(c.items())
            if k.startswith(TEXT_FIELD_COUNT_PREFIX)}
    if used:  # --text-field with fallbacks: documents per field their text came from; absent otherwise
        section["text_field_used"] = used
    failed = [e["shard"] for e in manifest["shards"] if e["status"] == "error"]
    if failed:  # which shards the numbers leave out (after `merge --allow-failed` too); absent when none
        section["failed_shards"] = failed
        section["summary_partial"] = bool(manifest["summary"].get("partial"))
    return section


def is_skipped(section: Any) -> bool:
    """A section standing for an analyzer that did not run (``{"status": "skipped", ...}``)."""
    return isinstance(section, dict) and section.get("status") == "skipped"


def stand_in(name: str) -> type[Analyzer]:
    """For an analyzer whose class cannot be loaded at report time (a plugin uninstalled since the
    scan): the base class's default section, table and CSV rows, under the analyzer's name."""
    return type(f"Unloadable_{name}", (Analyzer,), {"name": name})


def analyzer_class(name: str) -> type[Analyzer]:
    """The class of the analyzer ``name``, or its :func:`stand_in` when it cannot be loaded."""
    try:
        return load_class(name)
    except ConfigError:
        return stand_in(name)


_analyzer_class = analyzer_class  # (analyzer_sections shadows the name with its cached lookup)


def section_owners(keys: Iterable[str]) -> dict[str, type[Analyzer]]:
    """The analyzer class that draws each report section, by section key (``report_json_key``).
    A key no loadable analyzer claims gets the :func:`stand_in` of that name."""
    owners: dict[str, type[Analyzer]] = {}
    wanted = set(keys)
    for name in available_names(opt_in=True):
        if wanted <= owners.keys():
            break
        try:
            cls = load_class(name)
        except ConfigError:
            continue
        key = cls.report_json_key()
        if key in wanted and key not in owners:
            owners[key] = cls
    return {key: owners.get(key) or stand_in(key) for key in wanted}


def build_report(out_root: str, report_options: Mapping[str, AnalyzerOptions] | None = None, *,
                 paper: bool = False, group_by: str | None = None, top_groups: int | None = None,
                 top_hosts: int | None = None) -> dict:
    """The report object: the corpus section, the ``provenance`` (which corpus, when, with which
    tool, configuration, lexicons and models: :mod:`llama_audit.report.provenance`), one
    ``{"status": "skipped", "reason": ...}`` per analyzer that could not run, then each analyzer's
    ``report_section`` of its merged counts, in the order of the scan's configuration.
    ``report_options``: report options by analyzer name (defaults for the others). ``paper``
    (``report --paper``): each section puts the Llama 2 paper's numbers beside its own
    (``paper_pct``, docs/outputs.md); without it the object holds none of them.
    ``group_by`` / ``top_groups`` (``report --group-by FIELD --top-groups N``) and ``top_hosts``
    (``report --top-hosts N``) add the per-group sections of a grouped scan
    (:mod:`llama_audit.report.grouped`)."""
    out = OutDir(out_root)
    reference = paper_reference() if paper else None
    table, manifest = load_counts_table(out)
    counts = partials.from_table(table)
    samples = load_samples(out, manifest)
    config = manifest["config"]
    corpus = corpus_section(counts.get(CORPUS, Counter()), manifest)
    report: dict[str, Any] = {CORPUS: corpus, PROVENANCE: None}  # provenance: beside the corpus, filled below
    for name, reason in config.get("skipped_analyzers", {}).items():
        report[analyzer_class(name).report_json_key()] = {"status": "skipped", "reason": reason}
    classes: dict[str, type[Analyzer]] = {}  # loaded once for the report and its groups
    ran = analyzer_sections(report, counts, corpus, config, report_options, samples, reference, classes)
    report[PROVENANCE] = build_provenance(manifest, corpus, ran)
    if group_by is not None or top_hosts is not None:
        from llama_audit.report import grouped

        grouped.add_groups(report, table, manifest, report_options, reference, group_by=group_by,
                           top_groups=top_groups, top_hosts=top_hosts, classes=classes)
    return report


def analyzer_sections(report: dict, counts: Mapping[str, Counter], corpus: dict, config: dict,
                      report_options: Mapping[str, AnalyzerOptions] | None, samples: Any,
                      reference: Any, classes: dict[str, type[Analyzer]] | None = None) -> dict[str, tuple[dict, Any]]:
    """Each analyzer's ``report_section`` of ``counts`` added to ``report``, in the order of the
    scan's configuration (the whole corpus, or one group's: :mod:`llama_audit.report.grouped`);
    returns analyzer name -> (recorded config, its section). ``classes``: analyzer classes
    already loaded, by name, filled as they load (loading looks up entry points: once per report)."""
    classes = {} if classes is None else classes

    def analyzer_class(name: str) -> type[Analyzer]:
        if name not in classes:
            classes[name] = _analyzer_class(name)
        return classes[name]

    ran: dict[str, tuple[dict, Any]] = {}  # analyzer name -> (recorded config, its section)
    items = list(config.get("analyzers", {}).items())
    read = {dep for name, _ in items for dep in analyzer_class(name).reads_sections}
    items.sort(key=lambda item: item[0] not in read)  # sections that others read first; else as configured
    for name, recorded in items:
        cls = analyzer_class(name)
        ctx = ReportContext(config=recorded, corpus=corpus,
                            options=report_options_for(cls, (report_options or {}).get(name)),
                            samples=review_samples.by_group(samples, name), paper=reference,
                            required={dep: report.get(analyzer_class(dep).report_json_key())
                                      for dep in (*cls.requires, *cls.reads_sections)})
        report[cls.report_json_key()] = cls.report_section(counts.get(name, Counter()), ctx)
        ran[name] = (recorded, report[cls.report_json_key()])
    return ran


def require_out(out_root: str) -> None:
    """OUT must hold a manifest, or a configuration and a plan (a scan killed before it wrote its
    manifest: reported as partial)."""
    out = OutDir(out_root)
    if not out.manifest_path.is_file() and not (out.config_path.is_file() and out.plan_path.is_file()):
        raise ConfigError(f"{out_root}: no manifest.json (run `llama-audit scan ... --out {out_root}` first)")
