"""The notebook API: an audit's report as pandas DataFrames.

Why: people who decide from an audit work in notebooks, and the files on disk are made for the
tool, not for them (``summary/counts.parquet`` holds slash-encoded keys such as
``term/religion/christian``; the report JSON nests every table differently). ``load_audit`` gives
each table of the report (the Llama 2 paper's Tables 9a, 9b and 10, Figure 13, the PII table,
a plugin's section) as one tidy DataFrame: one row per table row, the group or axis a column,
every share with its 95% Wilson interval (``ci_low``, ``ci_high``: the report's ``ci95``) and the
documents it counts (Wickham 2014, "Tidy data", J. Stat. Softw. 59(10): one observation per row,
so a frame filters, sorts and plots without reshaping).

Everything is read from the report object (:func:`llama_audit.report.tables.build_report`), so a
frame's numbers are the JSON's, byte for byte; the annotations are a lazily read
``pyarrow.dataset`` (nothing is loaded until the user asks), and ``diff`` draws on
:mod:`llama_audit.report.diff`. pandas is an optional extra (``pip install 'llama-audit[notebook]'``):
importing ``llama_audit`` never imports it.

    >>> from llama_audit import load_audit
    >>> a = load_audit("OUT")
    >>> a.identities().query("descriptor != '(any)'").nlargest(10, "documents")
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from llama_audit.report import grouped
from llama_audit.report.provenance import PROVENANCE
from llama_audit.report.section import PAPER_JSON_KEY, pct, section_counts, wilson_ci95
from llama_audit.report.tables import CORPUS, build_report, is_skipped, require_out
from llama_audit.store import OutDir

if TYPE_CHECKING:  # pandas and pyarrow.dataset are imported when a frame or a dataset is asked for
    import pandas
    import pyarrow.dataset

#: the optional dependency group (pyproject.toml) that brings pandas
NOTEBOOK_EXTRA = "notebook"
INSTALL_HINT = (f"llama_audit.load_audit needs pandas: pip install 'llama-audit[{NOTEBOOK_EXTRA}]' "
                "(or pip install 'pandas>=2')")
#: the label of a table's total row: a pronoun header, an identity axis, all PII types (as in the CSV)
ANY = "(any)"
#: the columns every share has, from its ``pct`` and ``ci95``
SHARE_COLUMNS = ("documents", "denominator", "pct", "ci_low", "ci_high")
#: the group of a per-group report that sums the groups beyond the top ones (as in its CSV)
OTHER_GROUP = grouped.OTHER_LABEL
#: the methods of Audit that draw one table, by the analyzer they draw
TABLE_METHODS = ("pronouns", "identities", "languages", "toxicity", "pii")
#: the label of toxicity's row (as in the CSV): documents scoring at or above the threshold
TOXIC_SHARE = "ge_0_5"
#: the suffixes of ``Audit.diff``'s columns, as in ``report --against --format csv``
DIFF_SIDES = ("old", "new", "delta")


def require_pandas():
    """pandas, or one ImportError that names the extra that brings it."""
    try:
        import pandas
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return pandas


class SectionUnavailable(LookupError):
    """The audit has no such section: the analyzer was not asked for, or it did not run (the
    message says why)."""


def share(documents: Any, denominator: Any, value: Any, ci95: Any, paper: Any = None) -> dict[str, Any]:
    """One share's columns: its documents, what it is a share of, the percentage, its interval
    (None where the report has none: a difference of two audits), and the paper's number when
    the report has one (``load_audit(..., paper=True)``)."""
    lo, hi = ci95 if isinstance(ci95, (list, tuple)) and len(ci95) == 2 else (None, None)
    row = {"documents": documents, "denominator": denominator, "pct": value, "ci_low": lo, "ci_high": hi}
    if paper is not None:
        row[PAPER_JSON_KEY] = paper
    return row


# -- one table of a report section -> tidy rows ------------------------------------------------------
# Each function takes a section as the report JSON has it (docs/outputs.md) and the report's corpus
# section; a section of `report --against`'s delta has the same shape without intervals.

def pronoun_rows(section: Mapping, corpus: Mapping) -> list[dict]:
    """Table 9a: per header (``gender``, ``person``) its own row (group ``(any)``: a share of the
    in-scope documents) and one per group (a share of the header's documents)."""
    rows = []
    for header, sec in section.items():
        if not isinstance(sec, Mapping):
            continue  # "documents": the headers' denominator
        rows.append({"header": header, "group": ANY, **share(sec.get("documents"), section.get("documents"),
                                                               sec.get("pct"), sec.get("ci95"), sec.get(PAPER_JSON_KEY))})
        for group, value in (sec.get("rows") or {}).items():
            rows.append({"header": header, "group": group, **share(
                (sec.get("rows_documents") or {}).get(group), sec.get("documents"), value,
                (sec.get("rows_ci95") or {}).get(group), (sec.get("rows_paper_pct") or {}).get(group))})
    return rows


def identity_rows(section: Mapping, corpus: Mapping, mode: str = "paper") -> list[dict]:
    """Table 9b in one counting mode: per axis its own row (descriptor ``(any)``: a share of the
    in-scope documents), then every descriptor found (a share of the axis's documents), hidden
    ones included and marked (``hidden_from_top``, paper mode)."""
    from llama_audit.analyzers.identities.analyzer import AXIS_LABELS, axis_sections

    rows = []
    for axis, sec in axis_sections(section):
        shown = sec if mode == "paper" else sec.get(mode)
        if not isinstance(shown, Mapping):
            continue
        label = AXIS_LABELS.get(axis, axis)
        hidden = set(sec.get("hidden_from_top") or ()) if mode == "paper" else set()
        row = {"axis": axis, "axis_label": label, "descriptor": ANY,
               **share(shown.get("documents"), corpus.get("in_scope_documents"), shown.get("pct"),
                       shown.get("ci95"), shown.get(PAPER_JSON_KEY))}
        if mode == "paper":  # the axis itself is never hidden; sense mode's count of it beside paper mode's
            row["hidden_from_top"] = False
            if isinstance(sec.get("sense"), Mapping):
                row["sense_documents"] = sec["sense"].get("documents")
        rows.append(row)
        for d in shown.get("descriptors") or []:
            row = {"axis": axis, "axis_label": label, "descriptor": d["term"],
                   **share(d.get("documents"), shown.get("documents"), d.get("pct"), d.get("ci95"),
                           d.get(PAPER_JSON_KEY))}
            if mode == "paper":
                row["hidden_from_top"] = d["term"] in hidden
                if "sense_documents" in d:
                    row["sense_documents"] = d["sense_documents"]
            rows.append(row)
    return rows


def language_rows(section: Mapping, corpus: Mapping) -> list[dict]:
    """Table 10: one row per label (``unknown`` included), a share of all documents."""
    return [{"lang": r["lang"], **share(r.get("documents"), section.get("documents"), r.get("pct"), r.get("ci95"),
                                        r.get(PAPER_JSON_KEY)), "chars": r.get("chars")}
            for r in section.get("rows") or []]


def toxicity_rows(section: Mapping, corpus: Mapping) -> list[dict]:
    """Figure 13's number: the documents at or above the threshold among those scored (the
    sample's, with ``sample_rate`` < 1), then the lines and the score quantiles. One row, named
    by ``measure`` (a text: a number would be subtracted in a diff's delta)."""
    row = {"measure": TOXIC_SHARE, "threshold": section.get("threshold"),
           **share(section.get("documents_ge_0_5"), section.get("documents_scored"), section.get("pct_ge_0_5"),
                   section.get("pct_ge_0_5_ci95"), section.get("paper_pct_ge_0_5")),
           "model": section.get("model"), "sample_rate": section.get("sample_rate"),
           "lines_scored": section.get("lines_scored"), "pct_lines_ge_0_5": section.get("pct_lines_ge_0_5")}
    row.update(section.get("quantiles") or {})
    return [row]


def pii_rows(section: Mapping, corpus: Mapping) -> list[dict]:
    """The PII table: per span type (``where`` = ``text``) and their total (type ``(any)``, the
    documents with any personal span), shares of all documents; the same for ``--pii-fields``
    (``where`` = ``fields``) and documents whose id holds PII (``where`` = ``id``). Counts only:
    the report never holds a value."""
    from llama_audit.analyzers.pii.report import ID_DOCUMENTS_WITH_PII

    n = section.get("documents")
    rows = []
    for where, sec in (("text", section), ("fields", section.get("fields"))):
        if not isinstance(sec, Mapping):
            continue
        for r in sec.get("by_type") or []:
            rows.append({"where": where, "type": r["type"], "personal": r.get("personal"), "matches": r.get("matches"),
                         **share(r.get("documents"), n, r.get("pct_documents"), r.get("pct_documents_ci95"))})
        rows.append({"where": where, "type": ANY, "personal": True, "matches": sec.get("matches"),
                     **share(sec.get("documents_with_pii"), n, sec.get("pct_documents"), sec.get("pct_documents_ci95"))})
    if ID_DOCUMENTS_WITH_PII in section:
        in_id = section[ID_DOCUMENTS_WITH_PII]
        ci = wilson_ci95(in_id, n) if isinstance(in_id, int) and isinstance(n, int) and 0 <= in_id <= n else None
        rows.append({"where": "id", "type": ANY, "personal": True, "matches": None,
                     **share(in_id, n, pct(in_id, n) if ci else None, ci)})
    return rows


def flat_items(obj: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    """``(key, value)`` of every number, text and flag of a (nested) section, keys joined by ``.``
    (a list item of objects by its text fields, as the diff matches it -- ``descriptors[christian]``
    -- else by its index): a plugin's section, however it is shaped, as two columns."""
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from flat_items(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            label = ",".join(x for x in v.values() if isinstance(x, str)) if isinstance(v, Mapping) else ""
            yield from flat_items(v, f"{prefix}[{label or i}]")
    else:
        yield prefix, obj


def counts_rows(section: Mapping, corpus: Mapping) -> list[dict]:
    """A plugin's section: its counts (the default section's ``counts``, or the values of a
    section it shaped itself), one row per key."""
    return [{"key": k, "value": v} for k, v in flat_items(section_counts(section))]


#: the tables of the built-in sections: analyzer name -> (its rows, the columns that name a row)
TABLES = {
    "pronouns": (pronoun_rows, ("header", "group")),
    "identities": (identity_rows, ("axis", "descriptor")),
    "language": (language_rows, ("lang",)),
    "toxicity": (toxicity_rows, ("measure",)),
    "pii": (pii_rows, ("where", "type")),
}
COUNTS_KEYS = ("key",)  # the columns that name a row of a plugin's counts


def section_key(name: str) -> str:
    """The report key of the analyzer ``name`` (``language`` -> ``languages``); a name no
    installed analyzer has is taken as a report key as it is."""
    from llama_audit.analyzers.registry import available_names, load_class
    from llama_audit.types import ConfigError

    if name not in available_names(opt_in=True):
        return name
    try:
        return load_class(name).report_json_key()
    except ConfigError:  # a plugin that cannot be loaded here: its report key is its name
        return name


def builtin_table(key: str) -> tuple[str, Any, tuple[str, ...]] | None:
    """``(analyzer name, rows function, key columns)`` of the built-in table drawn from the
    report section ``key``, or None for a plugin's."""
    for name, (rows, keys) in TABLES.items():
        if section_key(name) == key:
            return name, rows, keys
    return None


def frame(rows: list[dict], first: Iterable[str] = ()) -> "pandas.DataFrame":
    pd = require_pandas()
    df = pd.DataFrame.from_records(rows)
    if df.empty:
        df = pd.DataFrame(columns=[*first, *SHARE_COLUMNS])
    return df.reset_index(drop=True)


class Audit:
    """One audit (a scan's OUT) read for a notebook: :attr:`report` (the ``report --format json``
    object), :attr:`provenance`, the tables as DataFrames, the annotations as a dataset, and
    :meth:`diff` against another audit. Made by :func:`load_audit`."""

    def __init__(self, out: str, report: dict, *, paper: bool = False,
                 report_options: Mapping[str, Any] | None = None, staged: str | None = None):
        self.out = str(out)
        #: where the bookkeeping is read: the OUT, or for an OUT at a URL its staging mirror
        self.root = str(staged) if staged is not None else self.out
        self.report = report
        self.paper = paper
        self.report_options = dict(report_options or {})

    def __repr__(self) -> str:
        c = self.report.get(CORPUS, {})
        return (f"<Audit {self.out}: {c.get('documents', 0):,} documents, sections: {', '.join(self.sections)}"
                f"{'' if c.get('complete', True) else ' (PARTIAL)'}>")

    # -- the report as it is ----------------------------------------------------------------------

    @property
    def provenance(self) -> dict:
        """Which corpus, when, with which tool, configuration, lexicons and models (docs/outputs.md)."""
        return self.report.get(PROVENANCE) or {}

    @property
    def corpus(self) -> dict:
        return self.report[CORPUS]

    @property
    def sections(self) -> list[str]:
        """The report keys of the analyzers' sections (skipped ones included)."""
        return [k for k in self.report if k not in (CORPUS, PROVENANCE, *grouped.REPORT_KEYS)]

    @property
    def groups(self) -> list[str]:
        """The groups shown by name in a per-group report (``load_audit(OUT, group_by=FIELD)`` of
        a ``scan --group-by FIELD``), most documents first, then :data:`OTHER_GROUP` when the
        others were summed; empty otherwise."""
        names = list(self.report.get(grouped.GROUPS) or {})
        return names + [OTHER_GROUP] if self.report.get(grouped.OTHER) is not None else names

    def _require_grouped(self) -> None:
        if self.report.get(grouped.GROUP_BY) is None:
            raise ValueError(f"{self.out}: not loaded per group: load_audit(OUT, group_by=FIELD) of a scan made "
                             "with --group-by FIELD")

    def _part(self, group: str | None) -> dict:
        """The whole report (``group`` None) or the sections of one group."""
        if group is None:
            return self.report
        self._require_grouped()
        if group in (self.report.get(grouped.GROUPS) or {}):
            return self.report[grouped.GROUPS][group]
        if group == OTHER_GROUP and self.report.get(grouped.OTHER) is not None:
            return self.report[grouped.OTHER]
        raise KeyError(f"no group {group!r} among the {len(self.groups)} shown (groups: "
                       f"{', '.join(map(repr, self.groups[:10]))}{', ...' if len(self.groups) > 10 else ''}; "
                       "load_audit(..., top_groups=N) shows more)")

    def _section(self, name: str, group: str | None = None) -> tuple[dict, dict]:
        """``(section, corpus)`` of the analyzer ``name`` (or the report key ``name``), overall or
        of one ``group`` (:data:`OTHER_GROUP`: the groups beyond the top ones, summed)."""
        part = self._part(group)
        key = section_key(name)
        section = part.get(key)
        if section is None:
            raise SectionUnavailable(f"{self.out}: no {key!r} section (sections: {', '.join(self.sections) or 'none'})")
        if is_skipped(section):
            raise SectionUnavailable(f"{self.out}: {key} did not run in this scan: {section.get('reason', '')}")
        return section, part.get(CORPUS) or self.report[CORPUS]

    def by_group(self, name: str, **kw: Any) -> "pandas.DataFrame":
        """The table of section ``name`` (``pronouns``, ``identities``, ``language``, a plugin's...)
        for every group of :attr:`groups`, stacked, with the group as the first column ``group``.
        Keywords: those of the section's method (``mode=`` of :meth:`identities`)."""
        pd = require_pandas()
        method = getattr(self, name) if name in TABLE_METHODS else None
        parts = []
        self._require_grouped()
        for group in self.groups:
            df = method(group=group, **kw) if method else self.section(name, group=group)
            parts.append(df.assign(group=group)[["group", *df.columns]])
        return pd.concat(parts, ignore_index=True) if parts else frame([])

    def pronouns(self, group: str | None = None) -> "pandas.DataFrame":
        """Table 9a: columns ``header, group, documents, denominator, pct, ci_low, ci_high``
        (``paper_pct`` with ``load_audit(..., paper=True)``)."""
        return self.section("pronouns", group=group)

    def identities(self, mode: str = "paper", group: str | None = None) -> "pandas.DataFrame":
        """Table 9b in counting mode ``paper`` (as Llama 2 counted) or ``sense`` (only occurrences
        that mention the identity; docs/methodology.md): columns ``axis, axis_label, descriptor,
        documents, denominator, pct, ci_low, ci_high`` and, in paper mode, ``hidden_from_top``,
        ``sense_documents``."""
        from llama_audit.analyzers.identities.analyzer import MODES, axis_sections

        if mode not in MODES:
            raise ValueError(f"identities(mode={mode!r}): one of {', '.join(MODES)}")
        section, corpus = self._section("identities", group)
        if mode != "paper" and not any(mode in sec for _, sec in axis_sections(section)):
            raise ValueError(f"{self.out}: this OUT holds no {mode}-mode identity counts (scanned before "
                             "sense mode existed: rescan it)")
        return frame(identity_rows(section, corpus, mode), TABLES["identities"][1])

    def languages(self, group: str | None = None) -> "pandas.DataFrame":
        """Table 10: columns ``lang, documents, denominator, pct, ci_low, ci_high, chars``."""
        return self.section("language", group=group)

    def toxicity(self, group: str | None = None) -> "pandas.DataFrame":
        """Figure 13's share: one row, ``measure`` (``ge_0_5``), ``threshold, documents`` (at or
        above it), ``denominator`` (scored), ``pct, ci_low, ci_high``, then the model, sample
        rate, lines and quantiles."""
        return self.section("toxicity", group=group)

    def toxicity_histogram(self, group: str | None = None) -> "pandas.DataFrame":
        """Figure 13's bars: ``bin_low, bin_high, documents, share`` (of the scored documents)."""
        section, _ = self._section("toxicity", group)
        histogram, n = section.get("histogram") or {}, section.get("documents_scored") or 0
        edges, counts = histogram.get("edges") or [], histogram.get("counts") or []
        return frame([{"bin_low": lo, "bin_high": hi, "documents": c, "share": c / n if n else 0.0}
                      for lo, hi, c in zip(edges, edges[1:], counts)])

    def pii(self, group: str | None = None) -> "pandas.DataFrame":
        """The PII table: columns ``where, type, personal, matches, documents, denominator, pct,
        ci_low, ci_high`` (counts only, never a value)."""
        return self.section("pii", group=group)

    def section(self, name: str, group: str | None = None) -> "pandas.DataFrame":
        """The table of any section by analyzer name or report key: a built-in's as its method
        gives it (``identities`` in paper mode), a plugin's as ``key, value`` rows of its counts."""
        require_pandas()
        section, corpus = self._section(name, group)
        table = builtin_table(section_key(name))
        rows, keys = (table[1], table[2]) if table else (counts_rows, COUNTS_KEYS)
        return frame(rows(section, corpus), keys)

    # -- the data behind it -----------------------------------------------------------------------

    def annotations(self, columns: Iterable[str] | None = None, filter: Any = None) -> "pyarrow.dataset.Dataset":
        """The per-document annotation columns (docs/outputs.md) of the finished shards as a
        lazily read ``pyarrow.dataset.Dataset``: nothing is read until ``.to_table()``,
        ``.head(n)``, ``.count_rows()`` or ``.to_batches()``; ``.to_table().to_pandas()`` for a
        DataFrame. ``columns``: only these (read from disk, the others never); ``filter``: a
        ``pyarrow.compute`` expression, e.g. ``pc.field("lang") == "en"``, pushed down to the reader."""
        import pyarrow as pa
        import pyarrow.dataset as ds

        from llama_audit.manifest import current

        out = OutDir(self.root)
        paths = [out.annotation_path(e["key"]) for e in current(out)["shards"] if e["status"] == "done"]
        files = [str(path) for path in paths if path.is_file()]  # staging: the bucket's footer stubs
        filesystem = None
        if self.root != self.out:  # an OUT at a URL: the objects themselves, read by range requests
            from pyarrow.fs import FSSpecHandler, PyFileSystem

            from llama_audit.corpus.remote import filesystem as url_filesystem

            fs, base = url_filesystem(self.out)
            filesystem = PyFileSystem(FSSpecHandler(fs))
            files = [base.rstrip("/") + "/" + Path(f).relative_to(out.root).as_posix() for f in files]
        if not files:
            raise SectionUnavailable(f"{self.out}: no finished shard has annotations")
        dataset = ds.dataset(files, format="parquet", filesystem=filesystem)
        if columns is not None:
            wanted = [columns] if isinstance(columns, str) else list(columns)
            unknown = [c for c in wanted if c not in dataset.schema.names]
            if unknown:
                raise KeyError(f"no annotation column {', '.join(map(repr, unknown))} "
                               f"(columns: {', '.join(dataset.schema.names)})")
            dataset = ds.dataset(files, format="parquet", filesystem=filesystem,
                                 schema=pa.schema([dataset.schema.field(c) for c in wanted]))
        return dataset if filter is None else dataset.filter(filter)

    # -- against another audit ----------------------------------------------------------------------

    def diff(self, other: "Audit | str") -> "AuditDiff":
        """This audit (NEW) against ``other`` (OLD: an :class:`Audit` or its OUT), as ``report
        NEW --against OLD`` computes it (:func:`llama_audit.report.diff.build_diff`): per table of
        the sections both have, the table's rows with each value column as ``X_old``, ``X_new`` and
        ``X_delta`` (NEW - OLD, a row one side lacks counting 0 there; intervals old and new
        only), plus ``erasure`` (the demographic erasure ratio per axis) and ``corpus``."""
        from llama_audit.report.diff import build_diff

        old_out = other.root if isinstance(other, Audit) else _readable(str(other))
        old_name = other.out if isinstance(other, Audit) else str(other)
        return AuditDiff(build_diff(self.root, old_out, self.report_options or None,
                                    names=(_shown(self.out), _shown(old_name))))


def diff_frame(old: list[dict], new: list[dict], delta: list[dict], keys: tuple[str, ...]) -> "pandas.DataFrame":
    """One table of two audits: rows matched by ``keys`` (NEW's order, then OLD's other rows),
    each other column as ``X_old``, ``X_new`` and, for numbers but intervals, ``X_delta``."""
    pd = require_pandas()
    sides = {side: pd.DataFrame.from_records(rows) for side, rows in zip(DIFF_SIDES, (old, new, delta))}
    order = list(dict.fromkeys(tuple(r.get(k) for k in keys) for rows in (new, old) for r in rows))
    values = [c for side in ("new", "old") for c in sides[side].columns if c not in keys]
    values = list(dict.fromkeys(values))
    out = pd.DataFrame.from_records([dict(zip(keys, k)) for k in order], columns=list(keys))
    for side, df in sides.items():
        if df.empty:
            continue
        if side == "delta":  # numbers only (a column mixing text and numbers keeps its numbers)
            df = df.assign(**{c: pd.to_numeric(df[c], errors="coerce") for c in df.columns
                              if c not in keys and not pd.api.types.is_bool_dtype(df[c])})
            df = df[[c for c in df.columns if c in keys or (c not in ("ci_low", "ci_high")
                                                            and pd.api.types.is_numeric_dtype(df[c])
                                                            and not pd.api.types.is_bool_dtype(df[c])
                                                            and df[c].notna().any())]]
        df = df.drop_duplicates(subset=list(keys)).rename(columns={c: f"{c}_{side}" for c in df.columns if c not in keys})
        out = out.merge(df, on=list(keys), how="left")
    ordered = [f"{c}_{s}" for c in values for s in DIFF_SIDES if f"{c}_{s}" in out.columns]
    return out[list(keys) + ordered]


class AuditDiff(dict):
    """``{table: DataFrame}`` of :meth:`Audit.diff`: ``corpus``, each section both audits have
    (``pronouns``, ``identities``, ``languages``, ``pii``, ``toxicity``, a plugin's), and
    ``erasure``; :attr:`raw` is the ``report --against --format json`` object, :attr:`warnings`
    what makes the two audits hard to compare (read them first)."""

    def __init__(self, raw: dict):
        super().__init__()
        pd = require_pandas()
        self.raw = raw
        self.warnings: list[str] = list(raw.get("warnings") or [])
        old, new, delta = raw["old"], raw["new"], raw["delta"]
        corpus_rows = [{"measure": k, "old": old[CORPUS].get(k), "new": new[CORPUS].get(k), "delta": v}
                       for k, v in delta[CORPUS].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        self[CORPUS] = pd.DataFrame.from_records(corpus_rows, columns=["measure", *("old", "new", "delta")])
        for key in raw["sections"]["compared"]:
            table = builtin_table(key)
            rows, keys = (table[1], table[2]) if table else (counts_rows, COUNTS_KEYS)
            self[key] = diff_frame(rows(old[key], old[CORPUS]), rows(new[key], new[CORPUS]),
                                   rows(delta[key], delta[CORPUS]), keys)
        erasure = [{"section": key, "axis": axis, **detail}
                   for key, groups in raw.get("erasure_detail", {}).items() for axis, detail in groups.items()]
        self["erasure"] = pd.DataFrame.from_records(erasure)


def load_audit(out: str, *, paper: bool = False, group_by: str | None = None, top_groups: int | None = None,
               report_options: Mapping[str, Any] | None = None) -> Audit:
    """The audit in ``out`` (a scan's OUT) for a notebook (:class:`Audit`). ``paper``: the Llama 2
    paper's numbers beside ours (a ``paper_pct`` column, as ``report --paper``); ``group_by``
    (the FIELD of ``scan --group-by FIELD``) and ``top_groups`` (default 20): every table per
    group as well (``a.identities(group="example.com")``, ``a.by_group("identities")``), as
    ``report --group-by FIELD --top-groups N``; ``report_options``: report options by analyzer
    name (``{"identities": {"examples": True}}``). Needs pandas (the ``notebook`` extra); an OUT
    that holds no audit, or a ``group_by`` its scan did not group by, is a ConfigError."""
    require_pandas()
    root = _readable(out)
    require_out(root)
    report = build_report(root, report_options, paper=paper, group_by=group_by, top_groups=top_groups)
    return Audit(out, report, paper=paper, report_options=report_options, staged=root if root != out else None)


def _shown(out: str) -> str:
    """An OUT as the diff names it: a URL without its credentials, a local path as given."""
    from llama_audit.remote_out import is_remote

    if not is_remote(out):
        return out
    from llama_audit.corpus.remote import public_url

    return public_url(out)


def _readable(out: str) -> str:
    """A local OUT as it is; an OUT at a URL (``s3://``, ...): its bookkeeping pulled into a staging
    directory, as ``llama-audit report URL`` does (llama_audit/remote_out.py)."""
    from llama_audit.remote_out import is_remote

    if not is_remote(out):
        return out
    from llama_audit.remote_out import stage_for_read

    return str(stage_for_read(out, purpose="notebook"))
