"""Per-source breakdowns (``scan --group-by FIELD``, ``report --group-by FIELD``).

Why: real pretraining corpora are mixtures (web, code, books, forums), and the people deciding
what goes into a model ask which *source* brings the toxic text or the personal data; the Llama 2
paper (Touvron et al. 2023, section 4.1) removed data from *sites* known to hold much personal
information. One corpus-wide number cannot answer either question.

How: every analyzer's ``fold`` is called once more per group of a batch, on that group's rows
(taken once per batch in group order, then zero-copy slices), so its counts are kept per group
as well as overall, in the same additive partial tables (:mod:`llama_audit.partials`, a
separate ``group`` column: plain keys are untouched). Groups are not capped: per-group counts
sum exactly across shards, workers and machines, and a shard's partial grows with the groups it
holds, not with the corpus. The analyzers do not change and the core names none of them.

Group values are user data: a missing or null field is the group :data:`MISSING`, a value is
compared by its text (``5`` and ``"5"`` are one group), and a value longer than
:data:`MAX_VALUE_CHARS` characters is cut there and marked with :data:`TRUNCATED` (a shard's
partial stays bounded by its number of distinct values, never by their length). Control
characters are kept in the partials and escaped wherever a report shows them
(:func:`llama_audit.report.section.printable`).
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llama_audit import partials
from llama_audit.types import ConfigError

#: the group of a document whose record has no value at the --group-by field (absent or null)
MISSING = "(none)"
#: host(FIELD): the group of a document whose field holds no URL with a host name
NO_HOST = "(no host)"
#: a group value longer than this many characters is cut (and marked with TRUNCATED)
MAX_VALUE_CHARS = 200
TRUNCATED = "\u2026"
#: the counts the core keeps per group besides the analyzers' (begin_batch's corpus counts)
CORPUS = partials.CORPUS
#: report --top-groups default: groups shown by name; the rest are summed into "other"
DEFAULT_TOP_GROUPS = 20

_HOST_SPEC = re.compile(r"host\((?P<path>[^()\s]+)\)")
#: what a host name may hold (letters of any script for IDNs, digits, '-', '_', '.', an IPv6's ':')
_HOST_NAME = re.compile(r"[\w.:-]+")


@dataclasses.dataclass(frozen=True)
class GroupBy:
    """What ``--group-by`` names: a record field path (``source``, ``meta.source``), or
    ``host(PATH)``: the host name of the URL at PATH, lower-cased, without a trailing dot and
    without one leading ``www.`` (``https://WWW.Example.org/a`` groups as ``example.org``)."""

    spec: str
    path: str
    host: bool = False

    @classmethod
    def parse(cls, spec: str) -> "GroupBy":
        text = (spec or "").strip()
        m = _HOST_SPEC.fullmatch(text)
        if m:
            return cls(text, m.group("path"), host=True)
        if not text or any(c in text for c in "()") or any(c.isspace() for c in text) or text.startswith(".") \
                or text.endswith(".") or ".." in text:
            raise ConfigError(f"--group-by {spec!r}: give a record field path (source, meta.source) or host(FIELD)")
        return cls(text, text)

    def value(self, raw: Any) -> str:
        """The group of one record's value at :attr:`path` (None: absent or null)."""
        if raw is None:
            return MISSING
        text = raw if isinstance(raw, str) else _text_of(raw)
        if self.host:
            text = host_of(text)
        return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + TRUNCATED


def _text_of(raw: Any) -> str:
    from llama_audit.corpus.fields import id_text  # integers as digits, anything else as JSON

    return id_text(raw)


def host_of(url: str) -> str:
    """The host name of ``url`` (with or without a scheme), lower-cased, without a trailing dot
    and one leading ``www.``; :data:`NO_HOST` when there is none."""
    text = url.strip()
    if "//" not in text:
        text = "//" + text
    try:
        host = urlsplit(text).hostname
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        host = None
    host = (host or "").rstrip(".")
    if not _HOST_NAME.fullmatch(host):  # "no host here", a bare word's spaces, control characters
        return NO_HOST
    if host.startswith("www."):
        host = host[4:]
    return host or NO_HOST


# -- scanning: the per-group fold ---------------------------------------------------------------

GroupCounts = dict  # group value -> {analyzer (or "corpus") -> Counter}


class BatchGroups:
    """One batch's documents by group: the permutation that puts each group's rows together
    (stable, so rows keep their order inside a group) and each group's slice of it."""

    __slots__ = ("names", "order", "starts", "lengths", "_taken")

    def __init__(self, values: Sequence[str]):
        codes: dict[str, int] = {}
        per_row = np.fromiter((codes.setdefault(v, len(codes)) for v in values), dtype=np.int64, count=len(values))
        self.names = list(codes)
        sizes = np.bincount(per_row, minlength=len(codes))
        self.order = np.argsort(per_row, kind="stable") if len(codes) > 1 else None
        self.starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist()
        self.lengths = sizes.tolist()
        self._taken: dict[int, Any] = {}  # id(original column) -> (original, column in group order)

    @classmethod
    def of(cls, fields: Mapping[str, list], grouping: GroupBy, n: int) -> "BatchGroups":
        raw = fields.get(grouping.path)
        return cls([MISSING] * n if raw is None else [grouping.value(v) for v in raw])

    def _in_group_order(self, column: Any) -> Any:
        if self.order is None:
            return column
        hit = self._taken.get(id(column))
        if hit is not None and hit[0] is column:
            return hit[1]
        if isinstance(column, np.ndarray):
            taken = column[self.order]
        else:
            taken = pc.take(column, pa.array(self.order))
            if isinstance(taken, pa.ChunkedArray):
                taken = taken.combine_chunks()
        self._taken[id(column)] = (column, taken)
        return taken

    def slices(self, column: Any) -> list[Any]:
        """``column`` (an Arrow array or a numpy array) cut into one piece per group."""
        ordered = self._in_group_order(column)
        if self.order is None:
            return [column]
        if isinstance(ordered, np.ndarray):
            return [ordered[s:s + k] for s, k in zip(self.starts, self.lengths)]
        return [ordered.slice(s, k) for s, k in zip(self.starts, self.lengths)]

    def fold(self, analyzer: Any, new: Mapping[str, Any], ctx: Any, group_counts: GroupCounts) -> None:
        """``analyzer.fold`` of each group's rows of ``new`` (its columns) and ``ctx`` (the scope
        gate and the earlier columns, cut the same way), added to ``group_counts``. Call it after
        the overall fold: counts an analyzer keeps beside its columns go to the overall counts."""
        context_type = type(ctx)
        in_scope = self.slices(ctx.in_scope)
        mine = {name: self.slices(col) for name, col in new.items()}
        earlier = _LazySlices(self, ctx.columns)
        for g, name in enumerate(self.names):
            cut = {k: v[g] for k, v in mine.items()}
            sub_ctx = context_type(in_scope=in_scope[g], columns=earlier.group(g))
            folded = analyzer.fold(cut, sub_ctx)
            group_counts.setdefault(name, {}).setdefault(analyzer.name, Counter()).update(folded)

    def count_corpus(self, chars: pa.Array, byte_sizes: Sequence[int], in_scope: np.ndarray,
                     group_counts: GroupCounts) -> None:
        """The core's corpus counts of each group: documents, characters, UTF-8 bytes, in scope."""
        chars_np = np.asarray(chars.to_numpy(zero_copy_only=False), dtype=np.int64)
        sizes = np.asarray(byte_sizes, dtype=np.int64)
        cut_chars, cut_bytes, cut_scope = self.slices(chars_np), self.slices(sizes), self.slices(np.asarray(in_scope))
        for g, name in enumerate(self.names):
            c = group_counts.setdefault(name, {}).setdefault(CORPUS, Counter())
            c["documents"] += self.lengths[g]
            c["chars"] += int(cut_chars[g].sum())
            c["bytes"] += int(cut_bytes[g].sum())
            c["in_scope_documents"] += int(cut_scope[g].sum())


class _LazySlices:
    """``ctx.columns`` cut per group only for the columns a fold reads."""

    def __init__(self, groups: BatchGroups, columns: Mapping[str, Any]):
        self.groups, self.columns, self.cut = groups, columns, {}

    def group(self, g: int) -> "_GroupColumns":
        return _GroupColumns(self, g)

    def get_cut(self, name: str) -> list[Any]:
        if name not in self.cut:
            self.cut[name] = self.groups.slices(self.columns[name])
        return self.cut[name]


class _GroupColumns(Mapping):
    def __init__(self, lazy: _LazySlices, g: int):
        self.lazy, self.g = lazy, g

    def __getitem__(self, name: str) -> Any:
        return self.lazy.get_cut(name)[self.g]

    def __iter__(self):
        return iter(self.lazy.columns)

    def __len__(self) -> int:
        return len(self.lazy.columns)

    def __contains__(self, name: object) -> bool:
        return name in self.lazy.columns


def merge_into(target: GroupCounts, source: GroupCounts) -> None:
    for group, by_analyzer in source.items():
        into = target.setdefault(group, {})
        for name, c in by_analyzer.items():
            into.setdefault(name, Counter()).update(c)


# -- reporting ----------------------------------------------------------------------------------

def check_report_request(recorded: str | None, asked: str | None) -> None:
    """``report --group-by FIELD`` must name the field the scan grouped by (one-line error)."""
    if asked is None:
        return
    if recorded is None:
        raise ConfigError(f"--group-by {asked!r}: this OUT was scanned without --group-by; "
                          f"scan again with --group-by {asked} to see per-group tables")
    if GroupBy.parse(asked).spec != recorded:
        raise ConfigError(f"--group-by {asked!r}: this OUT was scanned with --group-by {recorded!r}; "
                          f"pass --group-by {recorded!r}")


# -- report --top-hosts: the sites a cleaning job drops ----------------------------------------------

NOT_HOSTS = (MISSING, NO_HOST)  # groups that name no site: never ranked


def density_analyzer(config: Mapping[str, Any]) -> tuple[str, tuple[str, str, str]]:
    """The scanned analyzer that declares ``density_counts`` (built in: the personal-data analyzer), with
    its declaration; a one-line error when none ran."""
    from llama_audit.report.tables import analyzer_class

    for name in config.get("analyzers", {}):
        declared = getattr(analyzer_class(name), "density_counts", None)
        if declared:
            return name, declared
    raise ConfigError("--top-hosts ranks hosts by the density of flagged documents: scan with an analyzer that "
                      "declares it (built in: personal data)")


def top_hosts(group_rows: Any, config: Mapping[str, Any], n: int) -> dict:
    """The ``n`` hosts with the highest density of flagged documents (the analyzer's
    ``density_counts``; built in: documents with personal data), ranked by the low end of the 95%
    Wilson interval of that share (so that a host of three documents, one flagged, does not
    outrank a host of 10,000 with 8% -- the list a cleaning job drops whole sites from, as the
    Llama 2 paper did); ties by density, then documents, then name. Needs a scan grouped by
    ``host(FIELD)`` (one-line errors otherwise)."""
    recorded = config.get("group_by")
    if not recorded or not GroupBy.parse(recorded).host:
        raise ConfigError("--top-hosts needs a scan grouped by host name: scan with --group-by 'host(url)' "
                          "(or host(FIELD) for the field that holds the URL)"
                          + (f"; this OUT is grouped by {recorded!r}" if recorded else ""))
    analyzer, (documents_key, flagged_key, label) = density_analyzer(config)
    rows = group_rows.filter(pc.equal(group_rows["analyzer"], analyzer))
    per_host: dict[str, Counter] = {}
    for g, k, v in zip(rows["group"].to_pylist(), rows["key"].to_pylist(), rows["value"].to_pylist()):
        if k in (documents_key, flagged_key) and g not in NOT_HOSTS:
            per_host.setdefault(g, Counter())[k] += v
    from llama_audit.report.section import pct, wilson_ci95

    ranked = []
    for host, c in per_host.items():
        docs, flagged = c[documents_key], c[flagged_key]
        if not docs:
            continue
        ci = wilson_ci95(flagged, docs)
        ranked.append({"host": host, "documents": docs, "flagged": flagged,
                       "per_thousand": round(1000.0 * flagged / docs, 6),
                       "per_thousand_ci95": [round(10.0 * ci[0], 6), round(10.0 * ci[1], 6)],
                       "pct_flagged": pct(flagged, docs), "pct_flagged_ci95": ci})
    ranked.sort(key=lambda h: (-h["per_thousand_ci95"][0], -h["per_thousand"], -h["documents"], h["host"]))
    return {"field": recorded, "analyzer": analyzer, "flagged": label, "rank_by": "per_thousand_ci95 low",
            "hosts_ranked": len(ranked), "hosts": ranked[:n]}


def top_hosts_table(ranking: dict, key: str) -> Any:
    """``report --top-hosts``'s table in the human formats."""
    from llama_audit.report.section import DisplayTable

    label = ranking["flagged"]
    rows = [[h["host"], h["documents"], h["flagged"],
             f"{h['per_thousand']:.1f} ({h['per_thousand_ci95'][0]:.1f}\u2013{h['per_thousand_ci95'][1]:.1f})"]
            for h in ranking["hosts"]]
    note = (f"{len(rows)} of {ranking['hosts_ranked']:,} hosts, by the low end of the 95% Wilson interval of "
            f"documents with {label} per 1,000 ({ranking['field']})")
    return DisplayTable(key, f"Hosts by {label} density", ["host", "documents", f"with {label}", "per 1,000 (95% CI)"],
                        rows, note, text_columns=("host",), row_documents=[h["documents"] for h in ranking["hosts"]])


def top_hosts_csv(ranking: dict, table: str) -> list[list]:
    """``report --top-hosts``'s CSV rows: ``pct`` and its interval in percent, like every row."""
    from llama_audit.report.section import printable

    return [[table, "", printable(h["host"]), h["documents"], h["pct_flagged"], "",
             *h["pct_flagged_ci95"]] for h in ranking["hosts"]]
