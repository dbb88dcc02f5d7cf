"""Toxicity analyzer (HateBERT fine-tuned on ToxiGen, Llama 2 section 4.1, Figure 13).

Cheap to import: torch and transformers load only when the analyzer is set up.
"""

from llama_audit.analyzers.toxicity.analyzer import ToxicityAnalyzer
from llama_audit.analyzers.toxicity.summary import summarize_toxicity

__all__ = ["ToxicityAnalyzer", "summarize_toxicity"]
