"""Corpus discovery and the input formats: paths -> shards -> DocBatches (+ bad records).

One module per format (``jsonl``, ``parquet``, ``arrow``, ``text``) implements :class:`Format`
(read, raw records, format-preserving rewrite); :func:`format_for` finds it for a shard, and
:func:`read_shard` reads a shard as a :class:`ReadSpec` says, with field paths into nested records.
"""

from .base import Format, Redactions
from .discover import detect_format, discover, make_shard, shard_key
from .records import BAD_REASONS, BadRecord, Item, ReadSpec, Shard, ShardUnreadable, UnsupportedFormat
from .registry import FORMATS, SUPPORTED_FORMATS_TEXT, format_for, read_shard

__all__ = [
    "BAD_REASONS",
    "FORMATS",
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
    "make_shard",
    "read_shard",
    "shard_key",
]
