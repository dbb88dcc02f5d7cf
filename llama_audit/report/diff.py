"""Audit diff: ``llama-audit report NEW --against OLD``. What a step between two audits (a
``filter`` run, a new crawl, a dedup pass) changed in every table, and, per identity axis, whether
it removed mentions of the axis out of proportion to the documents it removed.

Why: the Llama 2 paper did not filter its pretraining data for harmful content partly "to avoid the
accidental demographic erasure sometimes seen in other datasets" (Touvron et al. 2023, section
4.1, citing Dodge et al. 2021, "Documenting large webtext corpora", where a blocklist
filter removed text about and by minority groups out of proportion). A cleaning step is
judged by what it took away from whom: the *erasure ratio* (docs/methodology.md, "Demographic
erasure ratio") puts a number on it for every axis.

Like the rest of report/, this module names no analyzer: it diffs the two report objects
generically (numbers subtract, lists of records are matched by their text fields), draws every
analyzer's own display tables with old / new / Δ columns matched by their label cells, and finds
the axes of identity mentions by the shape of a section (:func:`mention_groups`).
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from llama_audit.report.provenance import PROVENANCE
from llama_audit.report.section import CSV_COLUMNS, PAPER_COLUMN, DisplayTable, pct
from llama_audit.report.tables import CORPUS, build_report, is_skipped, require_out, section_owners
from llama_audit.store import OutDir
from llama_audit.types import ConfigError

#: keys (and CSV columns) of confidence intervals: ``ci95``, ``rows_ci95``, ``pct_ge_0_5_ci95``,
#: ``ci95_low``. An interval's ends do not subtract into an interval of the change, so the delta
#: leaves them out (the old and new reports keep them).
INTERVAL_KEY = re.compile(r"(^|_)ci95(_|$)")
#: decimals a difference of two floats is rounded to: the report's own numbers have 6 (``pct``),
#: so this removes float noise (33.333333 - 50.0) without hiding a digit, and keeps bytes stable
DELTA_DECIMALS = 9
#: a cell of a human table for a row the other audit's table does not have (absent, or below its
#: top N: the table cannot say which; the JSON delta has every row)
NOT_SHOWN = "\u2014"
DELTA_MARK = "\u0394"
INTERVAL_HEADING = re.compile(r"\s*\(\d+% CI\)")  # "% docs (95% CI)": the Δ column has no interval
DIFF_TABLE_KEY = "diff"  # the key of the diff's own display tables (header, warnings, erasure)
SIDES = ("OLD", "NEW")
ERASURE_NOTE = ("OLD, NEW = documents mentioning the axis; % removed = of them; % docs removed = of all documents "
                "counted (in scope); ratio 1 = mentions removed in proportion to the "
                "documents removed; above 1 = out of proportion (demographic erasure); below 1 = kept more than "
                "other documents (docs/methodology.md)")
CSV_KEY_COLUMNS = CSV_COLUMNS[:3]  # table, group, label: what matches a CSV row of OLD with one of NEW
ERASURE_CSV_TABLE = "erasure"

_MISSING = object()
# a number as a table cell shows it: 1234, 1,234, 18.00, or 18.00 (15.30–20.90) with its interval
_NUMBER_CELL = re.compile(r"^\s*([+-]?\d[\d,]*(?:\.\d+)?)\s*(?:\(.*\))?\s*%?\s*$")


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def subtract(new: float, old: float) -> float:
    d = new - old
    return d if isinstance(d, int) else round(d, DELTA_DECIMALS)


def _shape(x: Any) -> str:
    return "an object" if isinstance(x, dict) else "a list" if isinstance(x, list) else "a value"


def record_label(item: Mapping[str, Any]) -> tuple:
    """What names a record of a list (a descriptor's term, a row's code): its text fields."""
    return tuple((k, v) for k, v in item.items() if isinstance(v, str))


def keyed(labels: Iterable[Any]) -> list[tuple]:
    """Labels made unique by their occurrence (two rows with one label stay two rows)."""
    seen: dict[Any, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append((label, seen[label]))
    return out


def merged_order(old_keys: list, new_keys: list) -> list:
    """NEW's keys in NEW's order; a key only OLD has goes right after the key that precedes it in
    OLD (a descriptor that is gone stays under its axis)."""
    order = list(new_keys)
    placed = set(order)
    after = None
    for key in old_keys:
        if key not in placed:
            order.insert(order.index(after) + 1 if after is not None else 0, key)
            placed.add(key)
        after = key
    return order


def diff_values(old: Any, new: Any, path: str = "") -> Any:
    """``new - old`` in the shape of the report: numbers subtract (a number one side lacks counts
    as 0, so a descriptor only in OLD shows ``-old``); objects by key; lists of records matched by
    their text fields (:func:`record_label`); lists of numbers element-wise (histogram counts;
    null when their lengths differ); intervals (:data:`INTERVAL_KEY`) are left out; text, flags
    and nulls are copied from NEW (from OLD when only OLD has them). An object on one side and a
    list or a value on the other is a different layout: ConfigError."""
    if old is _MISSING and new is _MISSING:
        return None
    o = {} if old is _MISSING and isinstance(new, dict) else [] if old is _MISSING and isinstance(new, list) else old
    n = {} if new is _MISSING and isinstance(old, dict) else [] if new is _MISSING and isinstance(old, list) else new
    containers = (isinstance(o, dict), isinstance(n, dict), isinstance(o, list), isinstance(n, list))
    if (containers[0] != containers[1] or containers[2] != containers[3]) and o is not None and n is not None:
        raise ConfigError(f"report {path or 'object'} has different layouts in OLD ({_shape(o)}) and NEW "
                          f"({_shape(n)}): the audits cannot be compared (rescan OLD with this llama-audit)")
    if isinstance(n, dict):
        return {k: diff_values(o.get(k, _MISSING), n.get(k, _MISSING), f"{path}.{k}" if path else k)
                for k in merged_order(list(o), list(n)) if not INTERVAL_KEY.search(k)}
    if isinstance(n, list):
        if all(is_number(x) for x in o + n) and (o or n):
            if o and n and len(o) != len(n):
                return None
            return [subtract(a, b) for a, b in zip(n or [0] * len(o), o or [0] * len(n))]
        if all(isinstance(x, dict) for x in o + n) and (o or n):
            old_by = dict(zip(keyed(map(record_label, o)), o))
            new_by = dict(zip(keyed(map(record_label, n)), n))
            return [diff_values(old_by.get(k, _MISSING), new_by.get(k, _MISSING), f"{path}[{k[0]}]")
                    for k in merged_order(list(old_by), list(new_by))]
        return n if new is not _MISSING else o
    if is_number(n) or is_number(o):
        if (is_number(n) or new is _MISSING) and (is_number(o) or old is _MISSING):
            return subtract(n if new is not _MISSING else 0, o if old is not _MISSING else 0)
        return None if n is None or o is None else (n if new is not _MISSING else o)
    return n if new is not _MISSING else o


# -- comparability --------------------------------------------------------------------------------

def _present(report: Mapping[str, Any]) -> list[str]:
    return [k for k, v in report.items() if k not in (CORPUS, PROVENANCE) and v is not None and not is_skipped(v)]


def _shown(value: Any) -> str:
    """A recorded configuration value in a warning: hashes shortened, long values not repeated."""
    text = ",".join(map(str, value)) if isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value) \
        else json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
    if re.fullmatch(r"[0-9a-f]{64}", text):
        return text[:12] + "\u2026"
    return text if len(text) <= 60 else text[:57] + "..."


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``key (OLD x; NEW y)`` for each recorded setting that differs."""
    return [f"{k} (OLD {_shown(old.get(k))}; NEW {_shown(new.get(k))})" for k in sorted(old.keys() | new.keys())
            if old.get(k) != new.get(k)]


def recorded_config(out_root: str) -> dict:
    return (OutDir(out_root).read_config() or {}).get("config", {})


def partial_note(side: str, corpus: Mapping[str, Any]) -> str | None:
    if corpus.get("complete", True):
        return None
    return f"{side} is partial ({corpus.get('shards_done')} of {corpus.get('shards')} shards done)"


def comparability_warnings(old_cfg: dict, new_cfg: dict, old: dict, new: dict) -> list[str]:
    """What differs between the two audits besides their corpora: the language scope, the core's
    settings, each shared analyzer's recorded configuration (a lexicon, a model, a threshold), and
    whether either is partial. Said in every format's header; none of it stops the diff."""
    warnings = []
    if old_cfg.get("languages") != new_cfg.get("languages"):
        warnings.append(f"the language scope differs (OLD {_shown(old_cfg.get('languages'))}; NEW "
                        f"{_shown(new_cfg.get('languages'))}): shares of in-scope documents have other denominators")
    core = {k: v for k, v in old_cfg.items() if k not in ("analyzers", "languages")}
    core_new = {k: v for k, v in new_cfg.items() if k not in ("analyzers", "languages")}
    warnings += [f"scan setting {d} differs" for d in config_differences(core, core_new)]
    old_an, new_an = old_cfg.get("analyzers", {}), new_cfg.get("analyzers", {})
    for name in [n for n in new_an if n in old_an]:
        differs = config_differences(old_an[name], new_an[name])
        if differs:
            warnings.append(f"{name}: recorded configuration differs: {'; '.join(differs)}")
    warnings += [w for w in (partial_note(s, r[CORPUS]) for s, r in zip(SIDES, (old, new))) if w]
    return warnings


# -- demographic erasure --------------------------------------------------------------------------

def mention_groups(section: Any) -> dict[str, int]:
    """Documents mentioning each group of a *mention section*: one whose entries are groups
    ``{"documents": int, "descriptors": [...], ...}`` (the identity axes of Table 9b, or a plugin's
    section shaped alike). Empty for any other section."""
    if not isinstance(section, dict):
        return {}
    return {k: v["documents"] for k, v in section.items()
            if isinstance(v, dict) and isinstance(v.get("documents"), int) and isinstance(v.get("descriptors"), list)}


def erasure_ratio(m_before: int, m_after: int, d_before: int, d_after: int) -> float:
    """(share of the group's mentioning documents removed) / (share of documents removed)."""
    return round(((m_before - m_after) / m_before) / ((d_before - d_after) / d_before), 6)


def section_erasure(old_groups: dict[str, int], new_groups: dict[str, int], d_before: int, d_after: int,
                    blocked: str | None) -> dict[str, dict]:
    """Per group: the ratio, what it is computed from, and why it is undefined (null) when it is."""
    out = {}
    for axis in merged_order(list(old_groups), list(new_groups)):
        m_before, m_after = old_groups.get(axis, 0), new_groups.get(axis, 0)
        reason = blocked
        if reason is None and d_before == 0:
            reason = "OLD has no in-scope document"
        if reason is None and d_after > d_before:
            reason = "NEW has more in-scope documents than OLD: not a removal (are OLD and NEW swapped?)"
        if reason is None and d_after == d_before:
            reason = "no in-scope document was removed" + (
                f" (yet {m_before - m_after:+d} documents mention it: text was changed, e.g. redacted)"
                if m_after != m_before else "")
        if reason is None and m_before == 0:
            reason = "no document mentioned the axis in OLD: nothing to remove"
        out[axis] = {
            "ratio": None if reason else erasure_ratio(m_before, m_after, d_before, d_after),
            "mentioning_before": m_before, "mentioning_after": m_after,
            "documents_before": d_before, "documents_after": d_after,
            "pct_mentioning_removed": pct(m_before - m_after, m_before),
            "pct_documents_removed": pct(d_before - d_after, d_before),
            "reason": reason,
        }
    return out


def erasure(old: dict, new: dict, compared: list[str], old_cfg: dict, new_cfg: dict) -> dict[str, dict]:
    """``{section: {axis: detail}}`` for every mention section both audits have. The documents are
    the in-scope ones when the section's analyzer is scoped (its shares are of them), else all.
    Undefined for every axis when the two audits counted differently (the section's analyzer or
    the language scope recorded otherwise) or either is partial: a change in mentions would then
    mix the step with that difference."""
    keys = [k for k in compared if mention_groups(old[k]) and mention_groups(new[k])]
    owners = section_owners(keys)
    out = {}
    for key in keys:
        cls = owners[key]
        docs = "in_scope_documents" if cls.scoped else "documents"
        old_an, new_an = old_cfg.get("analyzers", {}).get(cls.name, {}), new_cfg.get("analyzers", {}).get(cls.name, {})
        blocked = None
        if old_an != new_an:
            blocked = f"{cls.name} was configured differently ({'; '.join(config_differences(old_an, new_an))})"
        elif cls.scoped and old_cfg.get("languages") != new_cfg.get("languages"):
            blocked = "the language scope differs"
        else:
            blocked = next((w for w in (partial_note(s, r[CORPUS]) for s, r in zip(SIDES, (old, new))) if w), None)
        out[key] = section_erasure(mention_groups(old[key]), mention_groups(new[key]),
                                   old[CORPUS][docs], new[CORPUS][docs], blocked)
    return out


def flat_erasure(detail: dict[str, dict]) -> dict[str, float | None]:
    """``{axis: ratio}``; an axis named by two mention sections is ``section/axis`` in both."""
    names = [axis for groups in detail.values() for axis in groups]
    return {(axis if names.count(axis) == 1 else f"{key}/{axis}"): d["ratio"]
            for key, groups in detail.items() for axis, d in groups.items()}


# -- the diff object ------------------------------------------------------------------------------

def build_diff(new_root: str, old_root: str, report_options: Mapping[str, Any] | None = None,
               names: tuple[str, str] | None = None) -> dict:
    """The ``report NEW --against OLD --format json`` object (docs/outputs.md, "Audit diff"):
    ``old`` and ``new`` (the two reports), ``delta`` (:func:`diff_values` of the corpus and every
    section both have), ``erasure`` (``{axis: ratio or null}``), ``erasure_detail``, ``sections``
    (compared, only in one), ``warnings`` and ``against`` (the two OUT paths as given). ``names``:
    ``(new, old)`` as the user gave them, where the roots are other (an OUT at a URL is read from
    its staging directory, which no message names)."""
    new_name, old_name = names if names is not None else (new_root, old_root)
    for root in (new_root, old_root):
        require_out(root)
    if Path(new_root).resolve() == Path(old_root).resolve():
        raise ConfigError(f"{new_name} and {old_name} are the same audit: give --against the OUT of the audit "
                          "before the step (e.g. the scan that `filter` read)")
    old, new = build_report(old_root, report_options), build_report(new_root, report_options)
    old_cfg, new_cfg = recorded_config(old_root), recorded_config(new_root)
    in_old, in_new = _present(old), _present(new)
    compared = [k for k in in_new if k in in_old]
    delta = {CORPUS: diff_values(old[CORPUS], new[CORPUS], CORPUS)}
    delta.update({k: diff_values(old[k], new[k], k) for k in compared})
    detail = erasure(old, new, compared, old_cfg, new_cfg)
    return {
        "old": old, "new": new, "delta": delta, "erasure": flat_erasure(detail), "erasure_detail": detail,
        "sections": {"compared": compared, "only_in_old": [k for k in in_old if k not in in_new],
                     "only_in_new": [k for k in in_new if k not in in_old]},
        "warnings": comparability_warnings(old_cfg, new_cfg, old, new),
        "against": {"old": old_name, "new": new_name},
    }


# -- human formats --------------------------------------------------------------------------------

def parse_number(cell: Any) -> tuple[float, int, bool] | None:
    """(value, decimals, thousands separators) of a numeric table cell, or None for a label."""
    if is_number(cell):
        if isinstance(cell, int):
            return cell, 0, False
        text = repr(float(cell))
        return cell, min(len(text.split(".")[1]), 6) if "." in text and "e" not in text else 6, False
    m = _NUMBER_CELL.match(str(cell)) if isinstance(cell, str) else None
    if not m:
        return None
    digits = m.group(1)
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    value = float(digits.replace(",", ""))
    return (value if decimals else int(value)), decimals, "," in digits


def delta_cell(old: Any, new: Any) -> str:
    a, b = parse_number(old), parse_number(new)
    if a is None or b is None:
        return ""
    decimals, grouped = max(a[1], b[1]), a[2] or b[2]
    d = b[0] - a[0]
    if round(d, decimals) == 0:
        return f"{0:.{decimals}f}"
    return f"{d:+,.{decimals}f}" if grouped else f"{d:+.{decimals}f}"


LABEL_MARKER = re.compile(r"\s+[\u2020\u2021*]+$")  # †, ‡, * after a label


def row_keys(rows: list[list[Any]], label_cols: list[int]) -> list[tuple]:
    """Each row's label cells; a sub-row's empty leading labels are taken from the row above it
    (a descriptor under its axis), so ``(axis, descriptor)`` names it."""
    keys, last = [], ()
    for row in rows:
        # a marker an analyzer appends to a label (Table 9b's "†") is no part of the row's name
        cells = [LABEL_MARKER.sub("", str(row[i]).strip()) if i < len(row) else "" for i in label_cols]
        first = next((j for j, c in enumerate(cells) if c), len(cells))
        key = tuple(last[:first]) + tuple(cells[first:]) if len(last) >= first else tuple(cells)
        keys.append(key)
        last = key
    return keyed(keys)


def compared_table(old: DisplayTable, new: DisplayTable) -> DisplayTable:
    """One analyzer table of both audits: label columns once, the paper's column once, and each
    numeric column as ``old X``, ``new X``, ``Δ X``; rows matched by their label cells."""
    old_col = {c: i for i, c in enumerate(old.columns)}

    def cells(t: DisplayTable, col: str) -> list[Any]:
        i = t.columns.index(col) if col in t.columns else None
        return [] if i is None else [row[i] for row in t.rows if i < len(row)]

    numeric = [c for i, c in enumerate(new.columns) if i > 0 and c not in new.text_columns and c != PAPER_COLUMN
               and all(parse_number(x) is not None for x in cells(old, c) + cells(new, c) if str(x).strip())]
    labels = [i for i, c in enumerate(new.columns) if c not in numeric and c != PAPER_COLUMN]
    old_labels = [old_col[new.columns[i]] for i in labels if new.columns[i] in old_col]
    old_rows = dict(zip(row_keys(old.rows, old_labels), old.rows))
    new_rows = dict(zip(row_keys(new.rows, labels), new.rows))
    columns, text_columns = [], []
    for c in new.columns:
        if c in numeric:
            columns += [f"old {c}".strip(), f"new {c}".strip(), f"{DELTA_MARK} {INTERVAL_HEADING.sub('', c)}".strip()]
        else:
            columns.append(c)
            text_columns += [c] if c in new.text_columns else []
    rows = []
    for key in merged_order(list(old_rows), list(new_rows)):
        o, n = old_rows.get(key), new_rows.get(key)
        row = []
        for i, c in enumerate(new.columns):
            if c in numeric:
                oc = o[old_col[c]] if o is not None and c in old_col and old_col[c] < len(o) else NOT_SHOWN
                nc = n[i] if n is not None and i < len(n) else NOT_SHOWN
                row += [oc, nc, delta_cell(oc, nc)]
            else:
                row.append(n[i] if n is not None and i < len(n) else
                           o[old_col[c]] if o is not None and c in old_col and old_col[c] < len(o) else "")
        rows.append(row)
    note = new.note if new.note == old.note else "; ".join(
        f"{side}: {t.note}" for side, t in zip(SIDES, (old, new)) if t.note)
    if any(NOT_SHOWN in r for r in rows):
        note += ("; " if note else "") + (f"{NOT_SHOWN} = not in that audit's table (absent, or below its top N); "
                                          "the JSON delta has every row")
    return DisplayTable(new.key, new.title, columns, rows, note, tuple(text_columns))


def header_tables(diff: dict) -> list[DisplayTable]:
    """The diff's header: which audits, the comparability warnings, the sections compared or not,
    and the erasure ratio per axis."""
    old, new = diff["old"][CORPUS], diff["new"][CORPUS]
    rows = [["audit (OUT)", diff["against"]["old"], diff["against"]["new"]],
            ["documents", f"{old['documents']:,}", f"{new['documents']:,}"],
            ["in-scope documents", f"{old['in_scope_documents']:,}", f"{new['in_scope_documents']:,}"],
            ["language scope", ",".join(old.get("languages_in_scope", [])), ",".join(new.get("languages_in_scope", []))],
            ["complete", "yes" if old.get("complete", True) else "no", "yes" if new.get("complete", True) else "no"]]
    out = [DisplayTable(DIFF_TABLE_KEY, "Audit diff: NEW against OLD (every table: old, new and change)",
                        ["", *SIDES], rows, f"{DELTA_MARK} = NEW - OLD", SIDES)]
    if diff["warnings"]:
        out.append(DisplayTable(DIFF_TABLE_KEY, "Comparability warnings", ["warning"], [[w] for w in diff["warnings"]]))
    s = diff["sections"]
    missing = [[k, "OLD"] for k in s["only_in_old"]] + [[k, "NEW"] for k in s["only_in_new"]]
    if missing:
        out.append(DisplayTable(DIFF_TABLE_KEY, "Sections not compared (in one audit only)", ["section", "only in"],
                                missing, "their tables are left out below; the JSON keeps both reports whole",
                                ("only in",)))
    for key, groups in diff["erasure_detail"].items():
        rows = [[axis, d["mentioning_before"], d["mentioning_after"], f"{d['pct_mentioning_removed']:.2f}",
                 f"{d['pct_documents_removed']:.2f}", "n/a" if d["ratio"] is None else f"{d['ratio']:.2f}"]
                for axis, d in groups.items()]
        reasons: dict[str, list[str]] = {}
        for axis, d in groups.items():
            if d["reason"]:
                reasons.setdefault(d["reason"], []).append(axis)
        undefined = "; ".join(f"n/a for {'every axis' if len(axes) == len(groups) else ', '.join(axes)}: {why}"
                              for why, axes in reasons.items())
        out.append(DisplayTable(
            DIFF_TABLE_KEY, f"Demographic erasure ({key}): share of mentions removed / share of documents removed",
            ["axis", *SIDES, "% removed", "% docs removed", "erasure ratio"],
            rows, "; ".join(x for x in (ERASURE_NOTE, undefined) if x)))
    return out


def diff_display_tables(diff: dict, **kw: Any) -> list[DisplayTable]:
    """The header, then every table of the corpus and of the compared sections, as each analyzer
    draws it (:func:`llama_audit.report.render.display_tables`), with old / new / Δ columns.
    Keywords: those of ``display_tables``."""
    from llama_audit.report.render import display_tables

    shown = {CORPUS, *diff["sections"]["compared"]}
    old_tables = [t for t in display_tables(diff["old"], **kw) if t.key in shown]
    new_tables = [t for t in display_tables(diff["new"], **kw) if t.key in shown]
    old_by = {k: t for k, t in zip(keyed(t.key for t in old_tables), old_tables)}
    out = header_tables(diff)
    for k, t in zip(keyed(t.key for t in new_tables), new_tables):
        if k in old_by:
            out.append(compared_table(old_by[k], t))
    return out


def csv_rows(report_csv: str) -> dict[tuple, dict[str, str]]:
    """The long CSV of one report as ``{(table, group, label) + occurrence: {column: cell}}``."""
    reader = csv.reader(io.StringIO(report_csv))
    header = next(reader)
    rows = [dict(zip(header, row)) for row in reader]
    return dict(zip(keyed(tuple(r.get(c, "") for c in CSV_KEY_COLUMNS) for r in rows), rows))


def csv_number(cell: str) -> float | int | None:
    try:
        return int(cell)
    except ValueError:
        try:
            return float(cell)
        except ValueError:
            return None


def render_diff_csv(diff: dict, **kw: Any) -> str:
    """The long CSV with each value column as ``X_old``, ``X_new``, ``X_delta`` (rows matched by
    table, group and label; a row one side lacks counts as 0 there, as in the JSON delta; no delta
    for intervals), then the erasure rows, the sections in one audit only and the warnings."""
    from llama_audit.report.render import SafeCsvWriter, render_csv

    values = [c for c in CSV_COLUMNS if c not in CSV_KEY_COLUMNS]
    sides = {c: ("old", "new") if INTERVAL_KEY.search(c) else ("old", "new", "delta") for c in values}
    header = [*CSV_KEY_COLUMNS] + [f"{c}_{s}" for c in values for s in sides[c]] + ["erasure_ratio", "note"]
    shown = {CORPUS, *diff["sections"]["compared"]}
    # each side drawn from the compared sections only (a section's CSV tables may be named otherwise:
    # "identities.sense", a plugin's own), so every row of those sections is kept
    old, new = (csv_rows(render_csv({k: v for k, v in diff[side].items() if k in shown}, **kw))
                for side in ("old", "new"))
    buf = io.StringIO()
    w = SafeCsvWriter(buf)
    w.writerow(header)
    for key in merged_order(list(old), list(new)):
        o, n = old.get(key), new.get(key)
        row = list(key[0])
        for c in values:
            oc, nc = (o or {}).get(c, ""), (n or {}).get(c, "")
            a, b = csv_number(oc) if o is not None else 0, csv_number(nc) if n is not None else 0
            d = "" if a is None or b is None or (oc == "" and nc == "") else subtract(b, a)
            row += [oc, nc, d][:len(sides[c])]
        w.writerow(row + ["", ""])
    blank = [""] * (len(header) - len(CSV_KEY_COLUMNS) - 2)
    for key, groups in diff["erasure_detail"].items():
        for axis, d in groups.items():
            docs = [d["mentioning_before"], d["mentioning_after"], d["mentioning_after"] - d["mentioning_before"]]
            w.writerow([ERASURE_CSV_TABLE, key, axis] + docs + blank[len(docs):]  # the documents_* columns
                       + ["" if d["ratio"] is None else d["ratio"], d["reason"] or ""])
    for side in ("only_in_old", "only_in_new"):
        for key in diff["sections"][side]:
            w.writerow(["sections", side, key] + blank + ["", "not compared"])
    for warning in diff["warnings"]:
        w.writerow(["warning", "", ""] + blank + ["", warning])
    return buf.getvalue()


def render_diff_json(diff: dict) -> str:
    return json.dumps(diff, indent=2, ensure_ascii=False) + "\n"
