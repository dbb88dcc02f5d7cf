"""Report: summary counts -> tables -> terminal, markdown, csv, json."""
