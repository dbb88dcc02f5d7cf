"""Report: the corpus section and every analyzer's own section -> terminal, markdown, csv, html, json."""
