"""The analyzer contract: what every analyzer (built-in or third-party) provides.

An analyzer sees a whole :class:`DocBatch` at a time (so GPU analyzers can batch), returns
Arrow columns aligned with the batch, and folds those columns into additive integer counts.
Because partials are plain counts, a corpus summary is the sum of its shards' partials, in any
order, on any number of machines.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections import Counter
from typing import Any, ClassVar, Mapping

import numpy as np
import pyarrow as pa

from llama_audit.types import AnalyzerUnavailable, ConfigError, Counts, DocBatch  # noqa: F401 - re-exported for plugins

@dataclasses.dataclass
class BatchContext:
    """What an analyzer may read besides the texts.

    ``in_scope``: the language gate (True = document is in the selected languages).
    ``columns``: annotation columns produced earlier in this batch by the analyzers it requires.
    """

    in_scope: np.ndarray  # bool, len == len(batch)
    columns: dict[str, pa.Array]


@dataclasses.dataclass
class ScanOptions:
    """Options shared by all analyzers; analyzers read what concerns them."""

    languages: tuple[str, ...] = ("en",)  # ("all",) disables the gate
    lid_threshold: float = 0.5
    lid_model: str | None = None
    lid_engine: str = "auto"  # auto (numpy FastLid, else the fastText binding) | fastlid | fasttext
    lexicon: str | None = None
    pii_types: tuple[str, ...] | None = None  # None = all types
    pii_region: str = "US"  # default region for phone numbers without a leading +
    toxicity_model: str = "tomh/toxigen_hatebert"  # hub id or local directory
    toxicity_revision: str | None = None
    toxicity_tokenizer: str = "bert-base-uncased"  # hub id or local directory
    toxicity_sample: float = 1.0  # fraction of in-scope documents scored (paper: 0.1)
    toxicity_batch_tokens: int | None = None  # None = chosen from device memory
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0
    # analyzer names the user asked for explicitly (unavailable -> error instead of skip)
    explicit: tuple[str, ...] = ()
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # third-party analyzer options

    @property
    def gate_all(self) -> bool:
        return "all" in self.languages


class Analyzer(ABC):
    """One pluggable unit of the audit.

    Subclasses set ``name`` (the ``--analyzers`` name), ``requires`` (names of analyzers whose
    columns they read, run first), and ``scoped`` (True: only in-scope documents are analysed;
    out-of-scope rows get nulls/empties and are not counted).
    """

    name: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()
    scoped: ClassVar[bool] = False

    def __init__(self, options: ScanOptions):
        self.options = options

    @classmethod
    def unavailable_reason(cls, options: ScanOptions) -> str | None:
        """Why this analyzer cannot run here (missing extra or model), or None. Must be cheap."""
        return None

    def setup(self) -> None:
        """Load models etc. Called once per worker process before the first batch."""

    def overlaps(self) -> bool:
        """True: ``annotate`` may run in a background thread after the other analyzers, while the
        scan reads and analyzes the next batch (a GPU model). Asked after ``setup()``."""
        return False

    def start_shard(self, key: str) -> None:
        """Called before each shard's first batch. State carried from shard to shard (caches) is
        reset here, so that a shard's output depends on the shard alone: on a rerun, a resume, or
        whichever worker scans it."""

    def config(self) -> dict[str, Any]:
        """Everything that changes this analyzer's output (recorded in the manifest and hashed)."""
        return {}

    @abstractmethod
    def fields(self) -> list[pa.Field]:
        """The annotation columns this analyzer adds, in order."""

    @abstractmethod
    def annotate(self, batch: DocBatch, ctx: BatchContext) -> dict[str, pa.Array]:
        """Vectorised over the batch: one value per document for each field."""

    @abstractmethod
    def fold(self, columns: Mapping[str, pa.Array], ctx: BatchContext) -> Counts:
        """Additive counts for this batch, computed from this analyzer's own columns."""

    def close(self) -> None:
        """Release resources (GPU workers, threads)."""
