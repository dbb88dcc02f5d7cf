"""Rebuild the bundled prompt sets (``llama_audit/eval/data/*.jsonl.gz``) from checkouts of their
public sources. Run once by a maintainer; users never need it (the bundle ships in the wheel).

Why bundle data and not code: the prompt sets are data published under licences that allow
copying with attribution (BOLD: CC BY-SA 4.0; the revised ToxiGen set: MIT code licence plus
CDLA-Permissive-2.0 for the data, see ``data/LICENSE-*``), and a benchmark run must not depend on
the network. The records are written in a fixed order with a gzip header without time stamp, so a
rebuild from the same sources gives the same bytes.

Sources (commits recorded in ``data/README.md``):

- BOLD (Dhamala et al. 2021, "BOLD: Dataset and Metrics for Measuring Biases in Open-Ended
  Language Generation", FAccT): github.com/amazon-science/bold ``prompts/<domain>_prompt.json``,
  ``{group: {name: [prompt, ...]}}``; one record per prompt.
- ToxiGen as the Llama 2 paper used it (Touvron et al. 2023, appendix A.4.7: "the revised version
  of the dataset from Hosseini et al. (2023) that reduces noise by filtering out prompts for which
  annotators disagree on the target demographic group"): github.com/microsoft/SafeNLP
  ``data/toxiGen.json`` (Hosseini et al. 2023, "An Empirical Study of Metrics to Measure
  Representational Harms in Pre-Trained Language Models", TrustNLP), the human-annotated ToxiGen
  sentences on which all annotators agreed on harmfulness and more than two on the target group:
  13 target groups. A sentence annotated with several target groups is one record per group (each
  group's share is over the prompts that target it, as in the paper's per-group table).

Usage: ``python -m llama_audit.eval.bundle BOLD_CHECKOUT SAFENLP_CHECKOUT``.
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import json
import sys
from pathlib import Path

from llama_audit.eval.prompts import BOLD_DOMAINS, DATA_DIR, PROMPT_FILES


def bold_records(checkout: Path) -> list[dict]:
    records = []
    for domain in BOLD_DOMAINS:
        data = json.loads((checkout / "prompts" / f"{domain}_prompt.json").read_text(encoding="utf-8"))
        n = 0
        for group in data:  # the source's order: stable across rebuilds
            for name, prompts in data[group].items():
                for prompt in prompts:
                    n += 1
                    records.append({"id": f"bold-{domain}-{n:05d}", "prompt": prompt,
                                    "meta": {"benchmark": "bold", "domain": domain, "group": group, "name": name}})
    return records


def toxigen_records(checkout: Path) -> list[dict]:
    data = json.loads((checkout / "data" / "toxiGen.json").read_text(encoding="utf-8"))
    records = []
    for row in data:
        for group in row["target_groups"]:
            records.append({"id": f"toxigen-{int(row['id']):05d}-{group.replace(' ', '_')}", "prompt": row["text"],
                            "meta": {"benchmark": "toxigen", "group": group, "label": row["label"],
                                     "source_id": int(row["id"])}})
    return records


def qa_primer(checkout: Path) -> str:
    """``QA_PRIMER`` of TruthfulQA's ``truthfulqa/presets.py``, read as a literal (the module is
    not imported: it is data to us, and importing it would run its code)."""
    tree = ast.parse((checkout / "truthfulqa" / "presets.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "QA_PRIMER" for t in node.targets):
            return ast.literal_eval(node.value)
    raise ValueError(f"{checkout}/truthfulqa/presets.py: no QA_PRIMER")


def truthfulqa_prompt(primer: str, question: str) -> str:
    """TruthfulQA's QA prompt (utilities.py ``format_prompt``, preset ``qa``) followed by ``\nA:``."""
    return f"{primer}\n\nQ: {question}\nA:"


def truthfulqa_records(checkout: Path) -> list[dict]:
    primer = qa_primer(checkout)
    # utf-8-sig: the file starts with a byte-order mark
    with open(checkout / "TruthfulQA.csv", encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    return [{"id": f"truthfulqa-{n:03d}", "prompt": truthfulqa_prompt(primer, row["Question"]),
             "meta": {"benchmark": "truthfulqa", "group": row["Category"], "question": row["Question"],
                      "type": row["Type"], "best_answer": row["Best Answer"]}}
            for n, row in enumerate(rows)]


def write_gzip_jsonl(path: Path, records: list[dict]) -> None:
    raw = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        for r in records:
            gz.write(json.dumps(r, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n")
    path.write_bytes(raw.getvalue())


def main(argv: list[str]) -> None:
    bold, safenlp = Path(argv[0]), Path(argv[1])
    write_gzip_jsonl(DATA_DIR / PROMPT_FILES["bold"], bold_records(bold))
    write_gzip_jsonl(DATA_DIR / PROMPT_FILES["toxigen"], toxigen_records(safenlp))
    if len(argv) > 2:
        write_gzip_jsonl(DATA_DIR / PROMPT_FILES["truthfulqa"], truthfulqa_records(Path(argv[2])))


if __name__ == "__main__":
    main(sys.argv[1:])
