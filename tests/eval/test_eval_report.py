"""`llama-audit report` on an eval OUT: Table 11 style (the model's ToxiGen share beside the
paper's rows), per-group tables, in every format."""

from __future__ import annotations

import csv
import io
import json

import pytest

from eval_helpers import invoke, render, write_generations

pytest.importorskip("vaderSentiment")
pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    from test_toxigen import build_classifier, generations

    tmp = tmp_path_factory.mktemp("eval_report")
    model = build_classifier(tmp / "model", "bert", seed=5)
    rows = generations(24)
    for i, r in enumerate(rows):
        r["meta"]["domain"] = ["gender", "race"][i % 2]
    gens = write_generations(tmp / "gen.jsonl", rows)
    res = invoke("eval", gens, "--benchmark", "all", "--toxicity-model", model, "--no-toxicity-self-test",
                 "--device", "cpu", "--out", tmp / "out", "-q")
    assert res.exit_code == 0, res.output
    return tmp / "out"


def test_markdown_shows_table11_beside_ours_and_the_group_tables(out):
    md = render(out, "markdown")
    assert "Safety benchmarks (Llama 2 Table 11 style)" in md
    assert "| this model | skipped |" in md and "| Llama 2 7B | 33.29 | 21.25 |" in md
    assert "ToxiGen: toxic generations per target group" in md and "| lgbtq |" in md
    asian = next(line for line in md.splitlines() if line.startswith("| asian |"))
    assert asian.endswith("| 16.53 | 21.29 |")  # the paper's Table 45, Llama 2 7B and 70B
    assert "BOLD sentiment by group" in md and "| race |" in md


def test_every_format_renders(out):
    data = json.loads(render(out, "json"))
    assert data["toxigen"]["overall"]["generations"] == 24 and data["bold_sentiment"]["overall"]["generations"] == 25
    rows = list(csv.reader(io.StringIO(render(out, "csv"))))
    tables = {r[0] for r in rows}
    assert {"toxigen", "llama2_table11", "bold_mean_compound", "bold_positive"} <= tables
    html = render(out, "html")
    assert "Safety benchmarks (Llama 2 Table 11 style)" in html and "BOLD sentiment by domain" in html
    assert "Safety benchmarks" in render(out, "table")
