"""``llama-audit filter``: annotations + corpus -> a cleaned copy of the corpus and a drop log."""

from llama_audit.filter.run import FilterRequest, FilterResult, run_filter

__all__ = ["FilterRequest", "FilterResult", "run_filter"]
