"""PII analyzer: validated detectors for emails, phone numbers, IP addresses, payment cards,
US SSNs, IBANs and secrets. Only ``(type, start, end)`` spans leave this package, never values."""

from llama_audit.analyzers.pii.analyzer import PiiAnalyzer, PiiDetectionError
from llama_audit.analyzers.pii.detector import PII_TYPES, RULES_VERSION, SPAN_TYPES, PiiDetector

__all__ = ["PII_TYPES", "RULES_VERSION", "SPAN_TYPES", "PiiAnalyzer", "PiiDetectionError", "PiiDetector"]
