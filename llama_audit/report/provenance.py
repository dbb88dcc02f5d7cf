"""The report's provenance: which corpus, when, with which tool, configuration, lexicons and models
its numbers were made.

An audit is read by people who decide what goes into a model; a number they cannot trace to a
corpus, a configuration and the exact lexicon and model files is a number they cannot act on (the
"datasheets for datasets" argument, Gebru et al. 2021, and the Llama 2 paper's own section 4.1,
which names its classifier, its sample and its threshold beside each figure).

Everything here is read from OUT — the manifest's run records (tool, Python and dependency
versions, start and end times, written at scan time), the plan (the shard list and the corpus
roots), the configuration recorded at scan time (lexicon and model hashes, thresholds, sampling)
and the corpus counts — never from the machine that renders the report, so the same OUT gives the
same bytes on every render. The one exception, ``report``, says which tool version rendered it
(no time: that would change the bytes).

Analyzers are not named here: their recorded ``config()`` is read by key convention
(:func:`artifacts`, :func:`thresholds`, :func:`sampling`), so a plugin's lexicon or model is cited
like a built-in's.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Mapping

from llama_audit import __version__
from llama_audit.report.section import DisplayTable

PROVENANCE = "provenance"  # the report object's key (beside the sections), the CSV's table name
SHORT_HASH = 12  # hex digits of a sha256 the human formats show
SHA256_SUFFIX = "_sha256"  # a recorded-config key holding the sha256 of the file named by the key before it
SHA256_KEY = "sha256"  # a recorded-config key holding {artifact key: sha256}
LEXICON_SUFFIX = "lexicon"  # an analyzer's own lexicon is cited by the analyzer's name
MODEL_SUFFIX = "_model"  # artifacts named model or *_model are models (see artifacts())
COMMIT_SUFFIX = "_commit"  # a recorded-config key holding the resolved revision of an artifact
THRESHOLD_KEY, THRESHOLD_SUFFIX = "threshold", "_threshold"
SAMPLING_KEYS = ("sample_rate", "seed")  # a sample rate below 1 makes a number an estimate


def artifacts(name: str, config: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, dict]]:
    """``(lexicons, models)`` an analyzer's recorded configuration names with a sha256.

    Convention: ``K_sha256`` (or ``sha256: {K: ...}``) is the hash of what ``K`` names
    (``config[K]``: a path or a model id): one file's sha256, or ``{file name: sha256}`` for a
    model made of several files — then ``sha256`` is :func:`files_digest` of them and ``files``
    lists them. A model is ``model`` or ``*_model``, one with a recorded revision (``K_commit``)
    or one made of several files (a tokenizer folder); every other hashed file is a lexicon (word
    lists, sense lists: the data text is matched against). An analyzer's own artifact
    (``lexicon``, ``model``) is cited by the analyzer's name, any other as ``name.K``."""
    found: dict[str, Any] = {}
    for key, value in config.items():
        if key.endswith(SHA256_SUFFIX) and _is_hash(value):
            found[key.removesuffix(SHA256_SUFFIX)] = value
    nested = config.get(SHA256_KEY)
    if isinstance(nested, Mapping):
        found.update({k: v for k, v in nested.items() if _is_hash(v) and k not in found})
    lexicons: dict[str, str] = {}
    models: dict[str, dict] = {}
    for key, value in found.items():
        label = name if key in ("model", LEXICON_SUFFIX) else f"{name}.{key}"
        sha = value if isinstance(value, str) else files_digest(value)
        if not (key == "model" or key.endswith(MODEL_SUFFIX) or isinstance(value, Mapping)
                or key + COMMIT_SUFFIX in config):
            lexicons[label] = sha
            continue
        ident = config.get(key)
        model: dict[str, Any] = {"id": ident if isinstance(ident, str) else None, "sha256": sha}
        if isinstance(value, Mapping):
            model["files"] = dict(sorted(value.items()))
        if isinstance(config.get(key + COMMIT_SUFFIX), str):
            model["revision"] = config[key + COMMIT_SUFFIX]
        models[label] = model
    return lexicons, models


def _is_hash(value: Any) -> bool:
    """One file's sha256 (text), or ``{file name: sha256}``."""
    return isinstance(value, str) or (isinstance(value, Mapping) and bool(value)
                                      and all(isinstance(v, str) for v in value.values()))


def files_digest(files: Mapping[str, str]) -> str:
    """One sha256 for a model made of several files: over the sorted ``name<TAB>sha256`` lines of
    its files (``sha256sum``'s digests, so a reader can recompute it from ``files``)."""
    lines = "".join(f"{name}\t{sha}\n" for name, sha in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def thresholds(name: str, config: Mapping[str, Any], section: Any) -> dict[str, Any]:
    """``threshold`` / ``*_threshold`` values of an analyzer's recorded configuration, then of its
    report section (a constant the analyzer states there rather than in its configuration)."""
    out: dict[str, Any] = {}
    for source in (config, section if isinstance(section, Mapping) else {}):
        for key, value in source.items():
            if key == THRESHOLD_KEY or key.endswith(THRESHOLD_SUFFIX):
                label = name if key == THRESHOLD_KEY else f"{name}.{key.removesuffix(THRESHOLD_SUFFIX)}"
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    out.setdefault(label, value)
    return out


def sampling(config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The sample an analyzer scored (its recorded ``sample_rate`` and ``seed``), or None."""
    if "sample_rate" not in config:
        return None
    return {k: config[k] for k in SAMPLING_KEYS if k in config}


def _joined(values: Iterable[Any]) -> str | None:
    """One string for what the scan runs recorded: the value, or the distinct values in the order
    of the runs (``0.1.0, 0.2.0``: the shards were scanned by two versions), or None."""
    distinct = list(dict.fromkeys(str(v) for v in values if v is not None))
    return ", ".join(distinct) if distinct else None


def corpus_roots(shards: Iterable[Mapping[str, Any]]) -> list[str]:
    """The roots the shards were found under (a shard's path less its name), in plan order."""
    roots = []
    for entry in shards:
        path, rel = str(entry.get("path") or ""), str(entry.get("shard") or "")
        root = path[: -len(rel) - 1] if rel and path.endswith("/" + rel) else path.rpartition("/")[0]
        roots.append(root)
    return list(dict.fromkeys(roots))


def shard_counts(entries: list[Mapping[str, Any]]) -> dict[str, Any]:
    """How many shards the plan lists and what became of them, and the ``fingerprint`` of the
    done ones: sha256 over their names, sizes and content fingerprints, the same for the same
    files however and whenever they were scanned (None while none is done)."""
    done = sorted((e for e in entries if e.get("status") == "done"), key=lambda e: str(e.get("shard")))
    digest = hashlib.sha256()
    for e in done:
        digest.update(f"{e.get('shard')}\0{e.get('size')}\0{e.get('fingerprint')}\n".encode())
    return {"total": len(entries), "done": len(done),
            "failed": sum(e.get("status") == "error" for e in entries),
            "pending": sum(e.get("status") == "pending" for e in entries),
            "fingerprint": digest.hexdigest() if done else None}


def build_provenance(manifest: Mapping[str, Any], corpus: Mapping[str, Any],
                     analyzers: Mapping[str, tuple[Mapping[str, Any], Any]]) -> dict[str, Any]:
    """The ``provenance`` object of the report (docs/outputs.md). ``manifest``: as
    :func:`llama_audit.manifest.current` derives it from OUT; ``corpus``: the report's corpus
    section; ``analyzers``: ``{name: (recorded config, report section)}`` of each analyzer that ran.

    Times and versions come from the scan runs that scanned shards (``shards_scanned`` > 0);
    ``started`` is the first one's start, ``finished`` the last one's end. An OUT whose runs did
    not record them (older versions; a scan killed before its manifest) gives None."""
    config = manifest.get("config", {})
    runs = [r for r in manifest.get("runs", []) if isinstance(r, Mapping) and r.get("shards_scanned")]
    names = list(dict.fromkeys(k for r in runs for k in (r.get("dependencies") or {})))
    lexicons: dict[str, str] = {}
    models: dict[str, dict] = {}
    limits: dict[str, Any] = {}
    samples: dict[str, Any] = {}
    for name, (recorded, section) in analyzers.items():
        lex, mod = artifacts(name, recorded)
        lexicons.update(lex)
        models.update(mod)
        limits.update(thresholds(name, recorded, section))
        if (sample := sampling(recorded)) is not None:
            samples[name] = sample
    started = [r["started"] for r in runs if r.get("started")]
    finished = [r["finished"] for r in runs if r.get("finished")]
    return {
        "tool_version": _joined(r.get("tool_version") for r in runs),
        "python": _joined(r.get("python") for r in runs),
        "dependencies": {n: _joined((r.get("dependencies") or {}).get(n) for r in runs) for n in sorted(names)},
        "config_hash": manifest.get("config_hash"),
        "corpus_roots": corpus_roots(manifest.get("shards", [])),
        "shards": shard_counts(list(manifest.get("shards", []))),
        "started": min(started) if started else None,
        "finished": max(finished) if finished else None,
        "runs": len(runs),
        "lexicon_sha256": lexicons,
        "models": models,
        "languages": list(config.get("languages", [])),
        "thresholds": limits,
        "sampling": samples,
        "skipped": dict(config.get("skipped_analyzers", {})),
        "bad_records_by_reason": dict(corpus.get("bad_records_by_reason", {})),
        "complete": bool(manifest.get("summary", {}).get("complete")),
        "report": {"tool_version": __version__},
    }


def short(sha: str | None) -> str:
    return (sha or "")[:SHORT_HASH]


def provenance_table(p: Mapping[str, Any]) -> DisplayTable:
    """The header of the human formats: corpus, state, dates, tool and the hashes (shortened)."""
    shards = p.get("shards", {})
    state = "complete" if p.get("complete") else (
        f"PARTIAL: {shards.get('done', 0)} of {shards.get('total', 0)} shards done"
        + (f", {shards['failed']} failed" if shards.get("failed") else ""))
    rows: list[list[Any]] = [["corpus", "; ".join(p.get("corpus_roots", []))],
                             ["shards", f"{shards.get('total', 0)} ({state})"]]
    if shards.get("fingerprint"):
        rows.append(["  fingerprint", short(shards["fingerprint"])])
    when = " to ".join(t for t in (p.get("started"), p.get("finished")) if t) or "not recorded"
    rows.append(["scanned (UTC)", when])
    rows.append(["llama-audit", f"{p.get('tool_version') or 'not recorded'}"
                 + (f" (Python {p['python']})" if p.get("python") else "")])
    rows.append(["config hash", short(p.get("config_hash"))])
    rows.append(["languages in scope", ",".join(p.get("languages", []))])
    rows += [[f"lexicon {name}", short(sha)] for name, sha in p.get("lexicon_sha256", {}).items()]
    for name, model in p.get("models", {}).items():
        rows.append([f"model {name}", f"{model.get('id') or ''} ({short(model.get('sha256'))})".strip()])
    rows += [[f"threshold {name}", value] for name, value in p.get("thresholds", {}).items()]
    for name, sample in p.get("sampling", {}).items():
        rows.append([f"sample {name}", ", ".join(f"{k} {v}" for k, v in sample.items())])
    if p.get("skipped"):
        rows.append(["skipped", ", ".join(p["skipped"])])
    return DisplayTable(PROVENANCE, "Provenance", ["", "value"], rows, text_columns=("value",))


def csv_rows(p: Mapping[str, Any]) -> list[list[Any]]:
    """The provenance in the long CSV: one row per value, ``table`` = provenance, ``group`` = the
    key's dotted path (``models.NAME.sha256``), the value in ``label`` (the CSV's text column; the
    number columns stay empty). A list gives one row per item; true/false as in JSON."""
    rows: list[list[Any]] = []

    def walk(path: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{path}.{k}" if path else str(k), v)
        elif isinstance(value, list):
            for item in value:
                walk(path, item)
        else:
            text = "" if value is None else ("true" if value is True else "false" if value is False else value)
            rows.append([PROVENANCE, path, text])  # the renderer gives the other columns, empty

    walk("", p)
    return rows
