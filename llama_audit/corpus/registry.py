"""Every input format, in one place: the format of a shard, the file name endings discovery
recognises, the supported-files message, and :func:`read_shard`."""

from __future__ import annotations

from typing import Iterator

from . import arrow, hf_stream, jsonl, parquet, text
from .base import Format
from .records import Item, ReadSpec, Shard, UnsupportedFormat

_ALL: tuple[Format, ...] = (jsonl.FORMAT, parquet.FORMAT, text.FORMAT, arrow.FORMAT)
#: formats no file name maps to (so not in SUFFIXES or the supported-files message): --hf-dataset
_STREAMS: tuple[Format, ...] = (hf_stream.FORMAT,)
_BY_NAME: dict[str, Format] = {name: f for f in (*_ALL, *_STREAMS) for name in f.names}

#: Shard formats of files, as found in :attr:`Shard.format` (and ``hf_stream``, a --hf-dataset
#: split: a shard format that no file is, which :func:`format_for` knows too).
FORMATS: tuple[str, ...] = tuple(name for f in _ALL for name in f.names)

#: File name endings recognised by :func:`~llama_audit.corpus.discover` and the format each maps
#: to, longest first (so ``.jsonl.gz`` wins over ``.gz``-less endings). Matched case-insensitively.
SUFFIXES: tuple[tuple[str, str], ...] = tuple(sorted((s for f in _ALL for s in f.suffixes),
                                                     key=lambda s: -len(s[0])))

SUPPORTED_FORMATS_TEXT = ", ".join(f.description for f in _ALL)


def format_for(name: str) -> Format:
    """The :class:`Format` that handles shards of format ``name`` (a :attr:`Shard.format`)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnsupportedFormat(f"unknown shard format {name!r} (known: {', '.join(FORMATS)})") from None


def read_shard(shard: Shard, spec: ReadSpec = ReadSpec()) -> Iterator[Item]:
    """Stream ``shard`` as ``(batch | None, bad_records_since_last_item, input_bytes_consumed)``.

    The file is opened when this is called: ShardUnreadable is raised here, not while iterating,
    with one exception: JSON lines learn only at the end of the shard that no record has the text
    field, and raise ShardUnreadable in place of their last item (Parquet and Arrow know it from
    their schema and raise it here). Otherwise nothing is raised for bad input while iterating; it
    becomes BadRecords. Every record ends up either in a yielded batch or as a BadRecord, never
    both, never neither; a stream that ends
    early (truncated ``.gz``/``.zst``/``.arrow``, an I/O error) is one bad record at the next row
    and ends the shard. Memory is bounded by the batch limits of ``spec`` (and, for Parquet, by
    one row group's columns), except for plain text, whose whole file is one document. The last
    item's third value is the input position at the end (compressed bytes for .gz/.zst); an item
    may carry neither documents nor bad records (progress only).
    """
    return format_for(shard.format).read(shard, spec)
