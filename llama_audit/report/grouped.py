"""The per-group report of a scan made with ``--group-by`` (``report --group-by FIELD``,
``--top-groups N``, ``--top-hosts N``): every section of the plain report, once per group.

Why: which source (or site) brings what a table counts is what a team cleaning a mixed corpus
decides from; the Llama 2 paper removed whole sites (Touvron et al. 2023, section 4.1). See
:mod:`llama_audit.groups` for how groups are counted, and for ``--top-hosts`` (which names the
analyzer it ranks by, so it lives outside the core).

The groups shown by name are the ``top_groups`` with the most documents (ties: by value); all
the others are summed, exactly, into one ``other`` part at report time (their counts are added
before any share is computed, so ``other``'s shares are those of the union of those groups).
The report object gains ``group_by`` (what was grouped and how many groups), ``groups`` (value ->
the sections, as in the plain report) and ``other`` (the same, or null when no group is left).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from llama_audit import groups as grouping
from llama_audit import partials, review_samples
from llama_audit.report.section import DisplayTable, printable
from llama_audit.types import ConfigError

GROUP_BY = "group_by"  # the report's description of the grouping
GROUPS = "groups"  # value -> sections
OTHER = "other"  # the groups beyond the top N, summed
TOP_HOSTS = "top_hosts"  # report --top-hosts N
REPORT_KEYS = (GROUP_BY, GROUPS, OTHER, TOP_HOSTS)  # not analyzer sections: renderers skip them
CORPUS = grouping.CORPUS
#: how CSV rows of the groups beyond the top N name their group
OTHER_LABEL = "(other)"
#: the CSV's extra last column in a grouped report: the group a row is of ("" overall)
CSV_GROUP_COLUMN = "group_value"


def add_groups(report: dict, table: pa.Table, manifest: dict, report_options: Any, reference: Any, *,
               group_by: str | None, top_groups: int | None, top_hosts: int | None,
               classes: dict | None = None) -> None:
    """Add ``group_by``, ``groups``, ``other`` (``group_by`` given) and ``top_hosts``
    (``top_hosts`` given) to ``report``, from the merged partial ``table``. ``classes``: the
    analyzer classes the whole corpus's sections loaded (by name)."""
    from llama_audit.report.tables import analyzer_sections

    config = manifest["config"]
    recorded = config.get("group_by")
    if group_by is not None:
        grouping.check_report_request(recorded, group_by)
        top = grouping.DEFAULT_TOP_GROUPS if top_groups is None else top_groups
        if top < 0:
            raise ConfigError("--top-groups must be 0 or more")
        rows = partials.group_rows(table)
        shown, other, total, names_in_other = split_groups(rows, top)
        no_samples = review_samples.SCHEMA.empty_table()
        classes = {} if classes is None else classes  # analyzer classes, loaded once for every group

        def sections(counts: Mapping[str, Counter]) -> dict:
            corpus = group_corpus(counts.get(CORPUS, Counter()), report[CORPUS])
            part: dict[str, Any] = {CORPUS: corpus}
            analyzer_sections(part, counts, corpus, config, report_options, no_samples, reference, classes)
            return part

        report[GROUP_BY] = {"field": recorded, "groups": total, "top_groups": top, "shown": len(shown),
                            "in_other": names_in_other}
        report[GROUPS] = {name: sections(counts) for name, counts in shown}
        report[OTHER] = sections(other) if other is not None else None
    if top_hosts is not None:
        if top_hosts < 1:
            raise ConfigError("--top-hosts must be 1 or more")
        report[TOP_HOSTS] = grouping.top_hosts(partials.group_rows(table), config, top_hosts)


def split_groups(rows: pa.Table, top: int) -> tuple[list[tuple[str, dict[str, Counter]]], dict[str, Counter] | None,
                                                    int, int]:
    """(the ``top`` groups with the most documents and their counts, the others' counts summed
    or None, how many groups, how many in ``other``). Vectorised: 10,000 groups are read once."""
    docs = rows.filter(pc.and_(pc.equal(rows["analyzer"], CORPUS), pc.equal(rows["key"], "documents")))
    ranked = docs.select([partials.GROUP, "value"]).sort_by([("value", "descending"), (partials.GROUP, "ascending")])
    names = ranked[partials.GROUP].to_pylist()
    every = set(rows[partials.GROUP].unique().to_pylist())
    names += sorted(every - set(names))  # a group without documents (never written; kept for safety)
    shown_names = names[:top]
    chosen = pc.is_in(rows[partials.GROUP], value_set=pa.array(shown_names, pa.string()))
    mine = partials.groups_from_table(rows.filter(chosen))
    shown = [(name, mine.get(name, {})) for name in shown_names]
    rest = rows.filter(pc.invert(chosen))
    if rest.num_rows == 0 and len(names) <= top:
        return shown, None, len(names), 0
    summed = rest.group_by(["analyzer", "key"]).aggregate([("value", "sum")])
    other: dict[str, Counter] = {}
    for a, k, v in zip(summed["analyzer"].to_pylist(), summed["key"].to_pylist(), summed["value_sum"].to_pylist()):
        other.setdefault(a, Counter())[k] += v
    return shown, other, len(names), len(names) - len(shown_names)


def group_corpus(c: Counter, overall: Mapping[str, Any]) -> dict:
    """A group's corpus section: what is counted per group (documents, characters, bytes, in
    scope); shards and bad records are counted over the whole corpus only (a bad record has no
    readable group)."""
    return {"documents": c["documents"], "bytes": c["bytes"], "chars": c["chars"],
            "in_scope_documents": c["in_scope_documents"],
            "languages_in_scope": overall.get("languages_in_scope", []), "complete": overall.get("complete", True)}


# -- drawing --------------------------------------------------------------------------------------

def _parts(report: dict) -> list[tuple[str, str, dict]]:
    """(label for titles, CSV group cell, sections) of each group shown, then of ``other``."""
    described = report.get(GROUP_BY)
    if not described:
        return []
    field = described["field"]
    parts = [(f"{field} = {printable(name)}", printable(name), sections) for name, sections in report[GROUPS].items()]
    if report.get(OTHER) is not None:
        n = described["in_other"]
        parts.append((f"{field}: other ({n:,} group{'' if n == 1 else 's'})", OTHER_LABEL, report[OTHER]))
    return parts


def _owners(report: dict) -> dict:
    """The owner of each analyzer section of the groups (they have the whole corpus's sections),
    looked up once: looking up goes through the installed entry points."""
    from llama_audit.report.tables import section_owners

    parts = _parts(report)
    return section_owners([k for k in parts[0][2] if k != CORPUS]) if parts else {}


def group_corpus_table(label: str, c: dict) -> DisplayTable:
    rows = [["documents", c["documents"]], ["bytes (UTF-8 text)", c["bytes"]],
            [f"in-scope documents ({','.join(c.get('languages_in_scope', []))})", c["in_scope_documents"]]]
    return DisplayTable(CORPUS, f"[{label}] Corpus", ["", "value"], rows)


def display_tables(report: dict, **kw: Any) -> list[DisplayTable]:
    """The ranked hosts (``--top-hosts``), then every group's tables (corpus, then
    each analyzer's), titled ``[FIELD = VALUE] ...`` (the value with control characters shown).
    Keywords: those of :func:`llama_audit.report.render.drawn_sections`. Group tables draw no figures."""
    from llama_audit.report.render import drawn_sections

    out = []
    if report.get(TOP_HOSTS):
        out.append(grouping.top_hosts_table(report[TOP_HOSTS], TOP_HOSTS))
    owners = _owners(report)
    for index, (label, _, sections) in enumerate(_parts(report)):
        for t in [group_corpus_table(label, sections[CORPUS])] + [
                t for cls, section, ctx in drawn_sections(sections, owners=owners, **kw)
                for t in cls.report_tables(section, ctx)]:
            title = t.title if t.key == CORPUS else f"[{label}] {t.title}"
            out.append(dataclasses.replace(t, key=f"{GROUPS}/{index}/{t.key}", title=title, figure_svg=""))
    return out


def csv_rows(report: dict, **kw: Any) -> list[tuple[list, str]]:
    """(row, group cell) of the grouped parts: the corpus counts and each analyzer's CSV rows."""
    from llama_audit.report.render import CORPUS_CSV_ROWS, drawn_sections

    rows: list[tuple[list, str]] = []
    owners = _owners(report)
    if report.get(TOP_HOSTS):
        rows += [(row, "") for row in grouping.top_hosts_csv(report[TOP_HOSTS], TOP_HOSTS)]
    for _, cell, sections in _parts(report):
        c = sections[CORPUS]
        rows += [([CORPUS, "", k, c[k]], cell) for k in CORPUS_CSV_ROWS if k in c]
        rows += [(list(row), cell) for cls, section, ctx in drawn_sections(sections, owners=owners, **kw)
                 for row in cls.report_csv(section, ctx)]
    return rows
