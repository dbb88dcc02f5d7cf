"""llama-audit: audit LLM pretraining corpora the way Llama 2 section 4.1 did."""

__version__ = "0.1.0"

#: what ``from llama_audit import ...`` gives lazily: the notebook API (llama_audit/notebook.py),
#: imported on first use so that importing llama_audit imports neither it nor pandas
LAZY_EXPORTS = {"load_audit": "llama_audit.notebook", "Audit": "llama_audit.notebook"}


def __getattr__(name: str):
    if name in LAZY_EXPORTS:
        import importlib

        return getattr(importlib.import_module(LAZY_EXPORTS[name]), name)
    raise AttributeError(f"module 'llama_audit' has no attribute {name!r}")
