"""A complete third-party analyzer (docs/writing-analyzers.md walks through it).

Counts documents that contain a URL, and adds a per-document ``urls`` column. Its report section
gives the share of documents with a URL, drawn in every report format. Registered in a package's
pyproject.toml as::

    [project.entry-points."llama_audit.analyzers"]
    urls = "url_counter:UrlAnalyzer"
"""

from __future__ import annotations

import re
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from llama_audit.analyzers.base import Analyzer, DisplayTable
from llama_audit.report.section import pct, two_decimals

URL_RE = re.compile(r"https?://\S+")


class UrlAnalyzer(Analyzer):
    name = "urls"
    scoped = False  # every document, whatever its language

    def config(self):
        return {"pattern": URL_RE.pattern}

    def fields(self):
        return [pa.field("urls", pa.int32())]

    def annotate(self, batch, ctx):
        return {"urls": pa.array([len(URL_RE.findall(t)) for t in batch.texts], pa.int32())}

    def fold(self, columns, ctx):
        urls = columns["urls"]
        return Counter({"documents_with_urls": pc.sum(pc.greater(urls, 0)).as_py() or 0,
                        "urls": pc.sum(urls).as_py() or 0})

    # The report (optional: without these methods the counts are shown as they are).

    @classmethod
    def report_section(cls, counts, ctx):  # the JSON, from the counts summed over all shards
        with_urls = counts["documents_with_urls"]
        return {"documents_with_urls": with_urls, "pct_documents": pct(with_urls, ctx.corpus["documents"]),
                "urls": counts["urls"]}

    @classmethod
    def report_tables(cls, section, ctx):  # terminal, markdown and html
        rows = [["documents with a URL", section["documents_with_urls"]],
                ["% documents", two_decimals(section["pct_documents"])], ["URLs", section["urls"]]]
        return [DisplayTable(cls.report_json_key(), "URLs", ["", "value"], rows)]

    @classmethod
    def report_csv(cls, section, ctx):  # columns: table, group, label, documents, pct, matches
        return [[cls.report_json_key(), "", "documents_with_urls", section["documents_with_urls"],
                 section["pct_documents"], section["urls"]]]
