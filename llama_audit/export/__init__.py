"""``llama-audit export``: the scan's annotations in the formats of other cleaning pipelines
(``export dolma``: dolma attribute files, :mod:`llama_audit.export.dolma`)."""
