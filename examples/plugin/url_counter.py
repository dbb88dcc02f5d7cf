"""A complete third-party analyzer (docs/writing-analyzers.md walks through it).

Counts documents that contain a URL, and adds a per-document ``urls`` column. Registered in a
package's pyproject.toml as::

    [project.entry-points."llama_audit.analyzers"]
    urls = "url_counter:UrlAnalyzer"
"""

from __future__ import annotations

import re
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from llama_audit.analyzers.base import Analyzer

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
