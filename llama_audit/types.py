"""The ground floor: types every layer shares (errors, the document batch). Imports nothing of
llama-audit, so that ``corpus/``, ``lexicon.py``, ``store.py`` and the analyzers can all use it
without importing upward."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

Counts = Counter  # str -> int; merged with ``+`` / ``update``


class ConfigError(Exception):
    """A user-facing configuration problem, reported as one line (exit code 2)."""


def ensure_under(root: "str | os.PathLike[str]", path: "str | os.PathLike[str]") -> Path:
    """``root / path``, refused with a one-line ConfigError unless it lies strictly inside ``root``.

    Every write under OUT or CLEAN goes through names taken from files (shard names, manifest
    entries a person may have edited); this keeps one hostile or mistaken name (``../``, an
    absolute path, a symlink leading out) from writing anywhere else. Symlinks already on disk are
    resolved on both sides, so a root that is itself a symlink still works."""
    root_path = Path(root)
    joined = root_path / path
    real_root = os.path.realpath(root_path)
    real = os.path.realpath(joined)
    if real == real_root or os.path.commonpath([real_root, real]) != real_root:
        raise ConfigError(f"refusing to write {os.fspath(joined)!r}: outside {os.fspath(root_path)!r}")
    return joined


class AnalyzerUnavailable(Exception):
    """The analyzer cannot run here (missing extra, missing model). The message says how to fix it."""


@dataclasses.dataclass
class DocBatch:
    """A batch of documents from one shard. ``rows`` are record indices inside the shard.

    ``fields`` holds, for every record field path an analyzer or option asked for (dotted paths
    into nested records, e.g. ``meta.source``), one value per document (None where absent)."""

    shard: str
    rows: np.ndarray  # int64
    doc_ids: list[str]
    texts: list[str]
    fields: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    # --text-field fallbacks (``text,content``): how many documents took their text from each
    # field path (empty with one text field); the scan counts them as corpus ``text_field/<path>``
    text_fields: dict[str, int] = dataclasses.field(default_factory=dict)
    # per-batch work shared between analyzers (e.g. the one tokenisation pass); not data
    cache: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.texts)
