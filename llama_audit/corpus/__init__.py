"""Corpus discovery and streaming readers: paths -> shards -> DocBatches (+ bad records)."""

from .discover import detect_format, discover, make_shard, shard_key
from .readers import read_shard
from .records import (
    BAD_REASONS,
    FORMATS,
    SUPPORTED_FORMATS_TEXT,
    BadRecord,
    Shard,
    ShardUnreadable,
    UnsupportedFormat,
)

__all__ = [
    "BAD_REASONS",
    "FORMATS",
    "SUPPORTED_FORMATS_TEXT",
    "BadRecord",
    "Shard",
    "ShardUnreadable",
    "UnsupportedFormat",
    "detect_format",
    "discover",
    "make_shard",
    "read_shard",
    "shard_key",
]
