"""llama-audit: audit LLM pretraining corpora the way Llama 2 section 4.1 did."""

__version__ = "0.1.0"
