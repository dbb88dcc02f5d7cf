"""The report's numbers, computed once from the summary counts (never from analyzers' internals).

``build_report(out_dir)`` returns the ``report --format json`` object of DESIGN.md; every renderer
(terminal, markdown, csv, json) draws from it.
"""

from __future__ import annotations

import json
from collections import Counter
from importlib import resources
from typing import Any

from llama_audit import partials
from llama_audit.types import ConfigError
from llama_audit.store import OutDir

AXES = ["religion", "gender_and_sex", "nationality", "race_ethnicity", "sexual_orientation"]
AXIS_LABELS = {"religion": "Religion", "gender_and_sex": "Gender and Sex", "nationality": "Nationality",
               "race_ethnicity": "Race and Ethnicity", "sexual_orientation": "Sexual Orientation"}
PII_TYPE_ORDER = ["EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "SECRET",
                  "IP_ADDRESS_PRIVATE"]
NOT_PERSONAL = {"IP_ADDRESS_PRIVATE"}  # flagged and redactable, but not counted as personal data


def pct(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 6) if whole else 0.0


def paper_reference() -> dict:
    return json.loads((resources.files("llama_audit") / "report" / "llama2_reference.json").read_text())


def load_counts(out: OutDir) -> tuple[dict[str, Counter], dict]:
    """Summary counts (or, while shards are pending, the sum of the finished shards) + manifest."""
    manifest = out.read_manifest()
    if manifest["summary"]["complete"] and out.summary_path().is_file():
        table = partials.merge_files([out.summary_path()])
    else:
        done = [e["key"] for e in manifest["shards"] if e["status"] == "done"]
        table = partials.merge_files(out.partial_path(k) for k in done)
    return partials.from_table(table), manifest


def corpus_section(c: Counter, manifest: dict) -> dict:
    totals = manifest["totals"]
    section = {
        "documents": c["documents"], "bytes": c["bytes"], "shards": totals["shards"],
        "bad_records": c["bad_records"], "in_scope_documents": c["in_scope_documents"],
        "chars": c["chars"], "languages_in_scope": manifest["config"].get("languages", []),
        "complete": bool(manifest["summary"]["complete"]), "shards_done": totals["shards_done"],
        "shards_failed": totals["shards_failed"],
        "bad_records_by_reason": {k[4:]: v for k, v in sorted(c.items()) if k.startswith("bad/")},
    }
    return section


def pronouns_section(c: Counter) -> dict:
    n, gender, person = c["documents"], c["documents/gender"], c["documents/person"]
    return {
        "documents": n,
        "gender": {"pct": pct(gender, n), "documents": gender,
                   "rows": {g: pct(c["documents/" + g], gender) for g in ("she", "he", "unspecified")}},
        "person": {"pct": pct(person, n), "documents": person,
                   "rows": {g: pct(c["documents/" + g], person) for g in ("1st", "2nd", "3rd")}},
    }


def identities_section(c: Counter, axes: list[str]) -> dict:
    n = c["documents"]
    terms: dict[str, list[tuple[str, int]]] = {}
    for key, v in c.items():
        if key.startswith("term/"):
            _, axis, term = key.split("/", 2)
            terms.setdefault(axis, []).append((term, v))
    section: dict[str, Any] = {}
    for axis in axes:
        docs = c["axis/" + axis]
        rows = sorted(terms.get(axis, []), key=lambda tv: (-tv[1], tv[0]))
        section[axis] = {"pct": pct(docs, n), "documents": docs,
                         "descriptors": [{"term": t, "documents": v, "pct": pct(v, docs)} for t, v in rows]}
    return section


def languages_section(c: Counter, total_docs: int, threshold: float) -> dict:
    rows = sorted(((k[10:], v) for k, v in c.items() if k.startswith("documents/")), key=lambda lv: (-lv[1], lv[0]))
    return {"threshold": threshold, "documents": total_docs,
            "rows": [{"lang": lang, "documents": v, "pct": pct(v, total_docs),
                      "chars": c.get("chars/" + lang, 0)} for lang, v in rows]}


def pii_section(c: Counter, corpus_chars: int) -> dict:
    types = sorted({k.split("/", 1)[1] for k in c if k.startswith(("matches/", "documents/"))},
                   key=lambda t: (PII_TYPE_ORDER.index(t) if t in PII_TYPE_ORDER else 99, t))
    n = c["documents"]
    matches = sum(v for k, v in c.items() if k.startswith("matches/") and k[8:] not in NOT_PERSONAL)
    return {
        "documents": n, "documents_with_pii": c["documents_with_pii"], "pct_documents": pct(c["documents_with_pii"], n),
        "matches": matches,
        "matches_per_million_chars": round(matches * 1e6 / corpus_chars, 6) if corpus_chars else 0.0,
        "by_type": [{"type": t, "matches": c["matches/" + t], "documents": c["documents/" + t],
                     "pct_documents": pct(c["documents/" + t], n), "personal": t not in NOT_PERSONAL}
                    for t in types],
    }


def toxicity_section(c: Counter, cfg: dict) -> dict:
    from llama_audit.analyzers.toxicity.summary import summarize_toxicity  # pure; no torch import

    from llama_audit.analyzers.toxicity.summary import wilson_interval

    section = {"model": cfg.get("model", "tomh/toxigen_hatebert"), "sample_rate": cfg.get("sample_rate")}
    section.update(summarize_toxicity(c))
    rate = cfg.get("sample_rate")
    if rate is not None and rate < 1.0:  # a sample estimates the corpus share: say how precisely
        ci = wilson_interval(section["documents_ge_0_5"], section["documents_scored"])
        section["pct_ge_0_5_ci95"] = [100.0 * ci[0], 100.0 * ci[1]] if ci else None
    return section


def build_report(out_root: str) -> dict:
    out = OutDir(out_root)
    counts, manifest = load_counts(out)
    config = manifest["config"]
    analyzers_cfg = config.get("analyzers", {})
    corpus = counts.get("corpus", Counter())
    report: dict[str, Any] = {"corpus": corpus_section(corpus, manifest)}
    for name, reason in config.get("skipped_analyzers", {}).items():
        report[{"language": "languages"}.get(name, name)] = {"status": "skipped", "reason": reason}
    for name, cfg in analyzers_cfg.items():
        c = counts.get(name, Counter())
        if name == "language":
            report["languages"] = languages_section(c, corpus["documents"], cfg.get("threshold", 0.5))
        elif name == "pronouns":
            report["pronouns"] = pronouns_section(c)
        elif name == "identities":
            report["identities"] = identities_section(c, cfg.get("axes") or AXES)
        elif name == "pii":
            report["pii"] = pii_section(c, corpus["chars"])
        elif name == "toxicity":
            report["toxicity"] = toxicity_section(c, cfg)
        else:  # third-party analyzers: their counts as they are
            report[name] = {"counts": dict(sorted(c.items()))}
    return report


def require_out(out_root: str) -> None:
    if not OutDir(out_root).manifest_path.is_file():
        raise ConfigError(f"{out_root}: no manifest.json (run `llama-audit scan ... --out {out_root}` first)")
