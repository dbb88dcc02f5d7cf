"""Corpus discovery and the input formats: paths -> shards -> DocBatches (+ bad records).

One module per format (``jsonl``, ``parquet``, ``arrow``, ``text``) implements :class:`Format`
(read, raw records, format-preserving rewrite); :func:`format_for` finds it for a shard, and
:func:`read_shard` reads a shard as a :class:`ReadSpec` says, with field paths into nested records.
"""

from .base import Format, Redactions
from .discover import detect_format, discover, make_shard, shard_key
from .records import (BAD_REASONS, STDIN_ARG, STDIN_FORMATS, TEXT_FIELD_COUNT_PREFIX, BadRecord, Item, ReadSpec, Shard, ShardUnreadable,
                      UnsupportedFormat, is_stdin, stdin_request, stdin_shard)
from .streams import stdin_read
from .registry import FORMATS, SUPPORTED_FORMATS_TEXT, format_for, read_shard

__all__ = [
    "BAD_REASONS",
    "FORMATS",
    "STDIN_ARG",
    "STDIN_FORMATS",
    "TEXT_FIELD_COUNT_PREFIX",
    "SUPPORTED_FORMATS_TEXT",
    "BadRecord",
    "Format",
    "Item",
    "ReadSpec",
    "Redactions",
    "Shard",
    "ShardUnreadable",
    "UnsupportedFormat",
    "detect_format",
    "discover",
    "format_for",
    "is_stdin",
    "make_shard",
    "read_shard",
    "shard_key",
    "stdin_read",
    "stdin_request",
    "stdin_shard",
]
