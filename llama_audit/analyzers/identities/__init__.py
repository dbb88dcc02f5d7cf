"""Identity descriptors (Llama 2 Table 9b): the analyzer, its word-sense rules and its review samples."""

from llama_audit.analyzers.identities.analyzer import (AXES, AXIS_LABELS, IdentityAnalyzer, IdentityOptions,
                                                    IdentityReportOptions)

__all__ = ["AXES", "AXIS_LABELS", "IdentityAnalyzer", "IdentityOptions", "IdentityReportOptions"]
