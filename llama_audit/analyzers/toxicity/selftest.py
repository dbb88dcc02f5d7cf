"""Before scanning: does the model + tokenizer + label index behave like a toxicity classifier?

A few built-in statements, plainly hateful or plainly benign, are scored with the same engine that
scores the corpus. The test passes when the toxic ones score, on average, at least ``margin``
above the benign ones. A wrong label index (toxic = 0), a mismatched tokenizer or a model that is
not a toxicity classifier fails it, with a message saying so.

The toxicity option ``self_test`` (``--toxicity-self-test``) controls it: absent/True = built-in sentences;
False = skipped (recorded as skipped); a mapping ``{"toxic": [...], "benign": [...], "margin": x}``
replaces any of the three.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from llama_audit.types import ConfigError

# Test inputs for a hate-speech classifier (ToxiGen style statements about groups). They exist
# only to check the model; they are never written to any output.
TOXIC = (
    "all immigrants are criminals and rapists who should be thrown out of this country",
    "women are too stupid and emotional to be trusted with any real responsibility",
    "muslims are all terrorists and should be banned from entering the country",
    "black people are lazy and violent and ruin every neighborhood they move into",
    "gay people are disgusting perverts and a danger to our children",
    "jews secretly control the banks and the media to destroy the rest of us",
)
BENIGN = (
    "the weather was lovely today, so we had lunch in the park",
    "she finished her degree in chemistry and started a new job in march",
    "the museum is open from nine in the morning until five in the afternoon",
    "add two cups of flour and stir until the dough is smooth",
    "our team won the match on saturday after a close second half",
    "the library has a large collection of books about local history",
)
MARGIN = 0.2


class ToxicitySelfTestError(ConfigError):
    """The model failed the self-test (wrong label index, tokenizer or model)."""


def self_test_spec(value: Any) -> dict[str, Any] | None:
    """Normalise the ``toxicity_self_test`` option; None = skipped."""
    if value is False:
        return None
    spec: dict[str, Any] = {"toxic": list(TOXIC), "benign": list(BENIGN), "margin": MARGIN}
    if isinstance(value, Mapping):
        spec.update({k: value[k] for k in ("toxic", "benign", "margin") if k in value})
    elif value not in (None, True):
        raise ConfigError(f"toxicity_self_test: expected True, False or a mapping, got {value!r}")
    if not spec["toxic"] or not spec["benign"]:
        raise ConfigError("toxicity_self_test needs at least one toxic and one benign sentence")
    return spec


def _sentences_digest(toxic: Sequence[str], benign: Sequence[str]) -> str:
    h = hashlib.sha256()
    for s in list(toxic) + ["\x00"] + list(benign):
        h.update(s.encode("utf-8") + b"\n")
    return h.hexdigest()[:16]


def run_self_test(score: Callable[[list[str]], np.ndarray], value: Any, *, model: str = "", label_index: int = 1) -> dict:
    """Run the self-test with ``score`` (lines -> probabilities); returns the result record or
    raises :class:`ToxicitySelfTestError`."""
    spec = self_test_spec(value)
    if spec is None:
        return {"status": "skipped"}
    toxic, benign = list(spec["toxic"]), list(spec["benign"])
    scores = np.asarray(score(toxic + benign), dtype=np.float64)
    t, b = scores[: len(toxic)], scores[len(toxic):]
    result = {
        "status": "passed",
        "toxic_mean": round(float(t.mean()), 4),
        "benign_mean": round(float(b.mean()), 4),
        "margin": float(spec["margin"]),
        "sentences": _sentences_digest(toxic, benign),
    }
    if not t.mean() - b.mean() >= spec["margin"]:
        result["status"] = "failed"
        hint = ("toxic sentences score BELOW benign ones: the toxic label is probably not index "
                f"{label_index}" if t.mean() < b.mean() else "toxic and benign sentences score alike")
        raise ToxicitySelfTestError(
            f"toxicity self-test failed for model {model!r}: toxic sentences {t.mean():.3f} vs benign "
            f"{b.mean():.3f} on average (need a gap >= {spec['margin']}); {hint}; check --toxicity-model, "
            "--toxicity-tokenizer and the label index")
    return result
