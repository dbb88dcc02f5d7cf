"""``scan --emit jsonl``: one JSON object per document on stdout, as the scan goes, for ``| jq``
or a downstream job reading stdin. Carries the annotation columns only (never the text, and PII
only as typed offsets)."""

from __future__ import annotations

from typing import BinaryIO

import orjson
import pyarrow as pa


class EmitClosed(Exception):
    """The reader of stdout went away (``| head``): the scan stops; finished shards are kept."""


class JsonlEmitter:
    def __init__(self, stream: BinaryIO):
        self.stream = stream

    def __call__(self, table: pa.Table) -> None:
        lines = [orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY) for row in table.to_pylist()]
        if lines:
            try:
                self.stream.write(b"\n".join(lines) + b"\n")
                self.stream.flush()
            except BrokenPipeError:
                raise EmitClosed() from None
