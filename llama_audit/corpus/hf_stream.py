"""``scan --hf-dataset NAME [--hf-config C] --hf-split S``: a dataset read through ``datasets``
streaming, for datasets that are no plain data files (loading scripts, ``configs`` in the dataset
card, local folders ``datasets`` knows how to load, Hub datasets whose files llama-audit does not
read). Plain jsonl/parquet files on the Hub are better scanned as ``hf://datasets/...``
(:mod:`llama_audit.corpus.hub`): one shard per file, so resume, slices and workers work per file.

One (dataset, config, split) is one pseudo-shard: ``datasets.load_dataset(NAME, C, split=S,
streaming=True)`` read in Arrow batches (``with_format("arrow")``), so nothing is downloaded
whole or kept in memory beyond a batch. Records go through the same column code as Parquet and
Arrow (:mod:`~llama_audit.corpus.columnar`): field paths, ``--text-field`` fallbacks and
bad-record reasons are the same. A stream cannot be rewritten in place, so ``filter`` refuses
these shards (one line); resume is per split.

The shard's ``path`` is ``hf-dataset:NAME?config=C&split=S`` (URL-quoted): what to open, never a
file name. ``datasets`` is the extra ``datasets``, imported when such a shard is made or read;
``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE`` and the Hugging Face cache apply as ``datasets``
applies them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Mapping
from urllib.parse import parse_qs, quote, unquote, urlsplit

import numpy as np
import pyarrow as pa

from ..types import ConfigError
from . import columnar
from .base import Format, Redactions
from .fields import SpecPaths
from .parquet import _ROWS_PER_BATCH  # rows per batch when enumerating every column, as Parquet does
from .records import BadRecord, Item, ReadSpec, Shard, ShardUnreadable
from .streams import error_text

#: the :attr:`Shard.format` of a streamed dataset split
STREAM_FORMAT = "hf_stream"
#: how a streamed split's :attr:`Shard.path` starts (no file is ever opened by that name)
STREAM_SCHEME = "hf-dataset:"
#: the configuration name ``datasets`` gives a dataset that has only one
DEFAULT_CONFIG = "default"


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise ConfigError("--hf-dataset needs the datasets library: pip install 'llama-audit[datasets]'") from None
    return datasets


def is_stream_shard(shard: Shard) -> bool:
    """Whether ``shard`` is a streamed dataset split (no file: no fingerprint, no rewrite)."""
    return shard.format == STREAM_FORMAT


def _location(shard: Shard) -> tuple[str, str | None, str]:
    """(dataset name, config or None, split) of a streamed shard's path."""
    parts = urlsplit(shard.path)
    query = parse_qs(parts.query)
    config = query.get("config", [None])[0]
    return unquote(shard.path[len(STREAM_SCHEME):].split("?", 1)[0]), config, query["split"][0]


def stream_shard(name: str, config: str | None, split: str | None) -> Shard:
    """The pseudo-shard of ``--hf-dataset NAME --hf-config C --hf-split S``, checked before any
    work: a dataset, config or split that ``datasets`` does not know is a one-line ConfigError.

    Its name (``rel``, the ``shard`` column) is ``CONFIG/SPLIT``; its key comes from name, config
    and split only, so it is the same on every machine. ``size`` is 0 (unknown before the stream
    is read) and ``mtime_ns`` 0: a rerun into the same OUT resumes the split as done."""
    if not name or not name.strip():
        raise ConfigError("--hf-dataset takes a dataset name (OWNER/NAME on the Hub, or a local folder)")
    if split is None:
        raise ConfigError(f"--hf-dataset {name}: give --hf-split (e.g. --hf-split train)")
    datasets = _datasets()
    try:
        splits = datasets.get_dataset_split_names(name, config)
    except ValueError as e:  # an unknown config lists the known ones
        raise ConfigError(f"--hf-dataset {name}: {error_text(e)}") from None
    except Exception as e:  # noqa: BLE001 - datasets raises many kinds (not found, offline, gated, script)
        raise ConfigError(f"--hf-dataset {name}: cannot load it with datasets ({error_text(e)})") from None
    if split not in splits:
        raise ConfigError(f"--hf-dataset {name}: no split {split!r}"
                          f"{f' in config {config!r}' if config else ''} (splits: {', '.join(map(str, splits))})")
    conf = config or DEFAULT_CONFIG
    rel = f"{_name_part(conf)}/{_name_part(split)}"
    if os.path.isdir(name):  # a local folder (datasets prefers it over a Hub name too): any cwd may read it
        name = os.path.abspath(name)
    path = f"{STREAM_SCHEME}{quote(name, safe='/')}?" + (f"config={quote(config, safe='')}&" if config else "") \
        + f"split={quote(split, safe='')}"
    from .discover import shard_key  # discover imports the registry, which imports this module

    # shard_key hashes an absolute path: a leading "/" keeps the working directory out of it
    return Shard(path=path, root=f"{STREAM_SCHEME}{name}", rel=rel, format=STREAM_FORMAT, size=0, mtime_ns=0,
                 key=shard_key(rel, "/" + path))


def _name_part(value: str) -> str:
    """A config or split name as one part of a shard name (no '/', never '.' or '..')."""
    part = value.replace("/", "_")
    return part if part not in ("", ".", "..") else f"_{part}"


def _open(shard: Shard) -> Any:
    """The split as a streaming ``IterableDataset`` of Arrow tables; ShardUnreadable when it
    cannot be opened."""
    name, config, split = _location(shard)
    try:
        ds = _datasets().load_dataset(name, config, split=split, streaming=True)
    except ConfigError as e:
        raise ShardUnreadable(f"{shard.rel}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any failure of datasets to open the split is the shard's
        raise ShardUnreadable(f"{shard.rel}: cannot stream {name} ({error_text(e)})") from None
    return ds.with_format("arrow")


def _tables(shard: Shard, ds: Any, batch_docs: int) -> Iterator[pa.RecordBatch | Exception]:
    """The split's record batches; an error while streaming is yielded in place and ends it."""
    try:
        for table in ds.iter(batch_size=batch_docs):
            yield from table.to_batches()
    except Exception as e:  # noqa: BLE001 - a stream that breaks off is a bad record at the next row
        yield e


class HfStream(Format):
    names = (STREAM_FORMAT,)
    suffixes = ()  # no file name: made by --hf-dataset only
    description = "a split streamed by datasets (--hf-dataset)"

    def read(self, shard: Shard, spec: ReadSpec) -> Iterator[Item]:
        ds = _open(shard)
        paths = SpecPaths(spec)
        features = ds.features
        if features is not None:
            absent = paths.text_absent_from(features.arrow_schema)
            if absent is not None:  # every record of the split has this schema
                raise ShardUnreadable(f"{shard.rel}: {absent}")
        return _items(shard, ds, paths, spec.batch_docs, spec.batch_bytes)

    def records(self, shard: Shard) -> Iterator[tuple[int, dict]]:
        ds = _open(shard)

        def rows() -> Iterator[tuple[int, dict]]:
            row = 0
            for rb in _tables(shard, ds, _ROWS_PER_BATCH):
                if not isinstance(rb, pa.RecordBatch):
                    return
                yield from columnar.records_of(rb, row)
                row += rb.num_rows
        return rows()

    def rewrite(self, shard: Shard, dest: Path, keep: np.ndarray, redactions: Redactions,
                text_field: str, field_redactions: Mapping[str, Redactions] | None = None) -> None:
        name, _, _ = _location(shard)
        raise ShardUnreadable(f"{shard.rel}: filter needs file inputs, and --hf-dataset {name} is a stream; "
                              f"scan its data files (hf://datasets/... or a local copy) to filter them")


def _items(shard: Shard, ds: Any, paths: SpecPaths, batch_docs: int, batch_bytes: int) -> Iterator[Item]:
    row = 0
    pos = 0  # Arrow bytes read so far: the stream's size is not known ahead
    checked = ds.features is not None
    for k, rb in enumerate(_tables(shard, ds, batch_docs)):
        if not isinstance(rb, pa.RecordBatch):
            yield None, [BadRecord(row, "read_error", f"record batch {k}: {error_text(rb)}")], pos
            return
        if not checked:
            absent = paths.text_absent_from(rb.schema)
            if absent is not None:
                raise ShardUnreadable(f"{shard.rel}: {absent}")
            checked = True
        pos += rb.nbytes
        batches, bad = columnar.to_docs(rb, row, shard.rel, paths, batch_docs, batch_bytes, f"record batch {k}")
        yield from columnar.items(batches, bad, pos)
        row += rb.num_rows
    yield None, [], pos


FORMAT = HfStream()
