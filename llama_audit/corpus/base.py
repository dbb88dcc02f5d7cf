"""The one interface every input format implements, so that scan, filter and raw access know
formats in one place (:mod:`llama_audit.corpus.registry`) instead of one branch per caller."""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from .records import Item, ReadSpec, Shard

#: Per row to redact, a function from its original text to the text to write instead.
Redactions = Mapping[int, Callable[[str], str]]


class Format(abc.ABC):
    """How to read, enumerate and rewrite the shards of some :attr:`Shard.format` values.

    Row numbers are the same everywhere: ``records`` and ``rewrite`` number records exactly as
    ``read`` does (bad records included), so annotation rows pair with raw records.
    ``read`` and ``records`` open the file when called: ShardUnreadable is raised there, and
    while iterating only where the whole shard is unusable (JSON lines learn only at the end that
    no record has the text field).
    """

    #: the :attr:`Shard.format` values this format reads
    names: tuple[str, ...]
    #: (file name ending, format name), matched case-insensitively by discovery
    suffixes: tuple[tuple[str, str], ...]
    #: how the supported-files list names this format
    description: str

    @abc.abstractmethod
    def read(self, shard: Shard, spec: ReadSpec) -> Iterator[Item]:
        """Stream ``shard`` as ``(batch | None, bad_records_since_last_item, input_bytes_consumed)``.

        While iterating bad input becomes BadRecords, never an exception, except a text field that
        no record of the shard has (ShardUnreadable naming the fields that exist). The last item's
        third value is the input position at the end; an item may carry neither documents nor
        bad records (progress only)."""

    @abc.abstractmethod
    def records(self, shard: Shard) -> Iterator[tuple[int, Any]]:
        """(row, raw record) for every record the reader numbers: the line's bytes for JSON lines,
        a dict of the row for Parquet and Arrow, the file's bytes for plain text. Stops quietly
        where the input breaks off (those rows were bad records of the scan)."""

    @abc.abstractmethod
    def rewrite(self, shard: Shard, dest: Path, keep: np.ndarray, redactions: Redactions,
                text_field: str, field_redactions: "Mapping[str, Redactions] | None" = None) -> None:
        """Write a copy of ``shard`` to ``dest`` atomically, in the same format and compression:
        only rows with ``keep[row]`` true (rows past its end are dropped), the text at the field
        path ``text_field`` of each row in ``redactions`` replaced (with fallbacks, ``text,content``: at the
        first listed path holding a string, where the scan read it), everything else untouched. A
        row with no string at that path has nothing to redact and is written as it is.

        ``field_redactions``: field path -> row -> function, for the string values at other field
        paths (``scan --pii-fields``); the filter passes it only when there is something to
        redact, and a format without other fields (plain text) may leave it out."""


def kept(keep: np.ndarray, row: int) -> bool:
    """Whether ``row`` survives a rewrite with the ``keep`` mask."""
    return row < len(keep) and bool(keep[row])
