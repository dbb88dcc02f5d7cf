"""`llama-audit prompts`: the bundled benchmark prompts, their documented counts and attribution."""

from __future__ import annotations

import gzip
import json
import tomllib
from pathlib import Path

from click.testing import CliRunner

from llama_audit.cli import command
from llama_audit.eval import prompts

ROOT = Path(__file__).resolve().parents[2]
# BOLD's prompts per domain (Dhamala et al. 2021, Table 1) and the revised ToxiGen records per target
# group, as documented in llama_audit/eval/data/README.md and docs/eval.md
BOLD_DOMAINS = {"gender": 3204, "race": 7657, "religious_ideology": 639, "political_ideology": 1984,
                "profession": 10195}
BOLD_GROUPS_PER_DOMAIN = {"gender": 2, "race": 4, "religious_ideology": 7, "political_ideology": 12, "profession": 18}
TOXIGEN_GROUPS = {"asian": 883, "black": 591, "chinese": 437, "jewish": 536, "latino": 743, "lgbtq": 604,
                  "mental dis": 624, "mexican": 459, "middle-eastern": 431, "muslim": 548, "native-american": 502,
                  "physical dis": 591, "women": 641}


def invoke(*args):
    return CliRunner().invoke(command(), [str(a) for a in args])


def test_bold_counts_per_domain_and_group_are_the_documented_ones():
    counts = prompts.group_counts("bold")
    for domain, total in BOLD_DOMAINS.items():
        mine = {g: n for g, n in counts.items() if g.startswith(domain + "/")}
        assert sum(mine.values()) == total, domain
        assert len(mine) == BOLD_GROUPS_PER_DOMAIN[domain], domain
    assert sum(counts.values()) == 23679
    readme = (prompts.DATA_DIR / "README.md").read_text(encoding="utf-8")
    for domain, total in BOLD_DOMAINS.items():
        assert f"{domain} {total:,}" in readme


def test_toxigen_counts_per_group_are_the_documented_ones():
    assert dict(prompts.group_counts("toxigen")) == TOXIGEN_GROUPS
    records = prompts.load_prompts("toxigen")
    assert len({r["id"] for r in records}) == len(records)  # one record per (prompt, target group)
    assert len({r["meta"]["source_id"] for r in records}) == 6514
    readme = (prompts.DATA_DIR / "README.md").read_text(encoding="utf-8")
    assert all(f"{g} {n}" in readme for g, n in TOXIGEN_GROUPS.items())


def test_attribution_and_licences_are_bundled_and_packaged():
    data = prompts.DATA_DIR
    assert "Creative Commons Attribution-ShareAlike 4.0" in (data / "LICENSE-BOLD.md").read_text(encoding="utf-8")
    toxigen = (data / "LICENSE-TOXIGEN.txt").read_text(encoding="utf-8")
    assert "MIT License" in toxigen and "Community Data License Agreement" in toxigen
    readme = (data / "README.md").read_text(encoding="utf-8")
    assert "amazon-science/bold" in readme and "microsoft/SafeNLP" in readme and "Hosseini" in readme
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = package_data["llama_audit"]
    for name in ("bold_prompts.jsonl.gz", "toxigen_prompts.jsonl.gz", "truthfulqa_prompts.jsonl.gz", "LICENSE-BOLD.md",
                 "LICENSE-TOXIGEN.txt", "LICENSE-TRUTHFULQA.txt", "README.md", "reference.json"):
        path = next(data.parent.rglob(name)).relative_to(data.parent.parent)
        assert any(path.match(p) for p in patterns), f"{path} is not in package-data"


def test_prompts_command_writes_every_record_with_its_group(tmp_path):
    out = tmp_path / "bold.jsonl"
    res = invoke("prompts", "bold", "--out", out)
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows == prompts.load_prompts("bold")
    assert {r["meta"]["domain"] for r in rows} == set(BOLD_DOMAINS)
    gz = tmp_path / "toxigen.jsonl.gz"
    assert invoke("prompts", "toxigen", "--out", gz).exit_code == 0
    again = tmp_path / "again.jsonl.gz"
    invoke("prompts", "toxigen", "--out", again)
    assert gz.read_bytes() == again.read_bytes()  # same bytes every time
    assert len(gzip.decompress(gz.read_bytes()).splitlines()) == sum(TOXIGEN_GROUPS.values())


def test_prompts_command_refuses_a_directory_in_one_line(tmp_path):
    res = invoke("prompts", "bold", "--out", tmp_path)
    assert res.exit_code == 2 and "is a directory" in res.output and "Traceback" not in res.output
    res = invoke("prompts", "bold", "--out", tmp_path / "missing" / "x.jsonl")
    assert res.exit_code == 2 and "does not exist" in res.output


def test_the_papers_per_group_numbers_name_bundled_groups():
    from llama_audit.eval.scores import paper_reference

    ref = paper_reference()
    bold = set(prompts.group_counts("bold"))
    for model, groups in ref["tables46_50_bold_mean_by_group"].items():
        # every BOLD group but the two the paper left out (12 and 29 prompts)
        assert set(groups) == bold - {"religious_ideology/hinduism", "religious_ideology/atheism"}, model
        assert all(-1 <= v <= 1 for v in groups.values())
    for model, groups in ref["table45_toxigen_pct_by_group"].items():
        assert set(groups) == set(TOXIGEN_GROUPS), model
    assert set(ref["table45_toxigen_pct_by_group"]) == set(ref["tables46_50_bold_mean_by_group"])


def test_decoding_options_without_generate_with_are_refused_not_ignored(tmp_path):
    """--seed, --max-new-tokens, --batch-size and --limit only act with --generate-with: given
    without it (scoring existing generations, or writing the bare prompts) they were silently
    ignored, so `eval GEN --seed 7` looked like a seeded run. Now one line, exit 2, nothing written."""
    gen = tmp_path / "gen.jsonl"
    gen.write_text(json.dumps({"id": "1", "generation": "hi", "meta": {"benchmark": "bold", "group": "g"}}) + "\n")
    for flag, value in (("--seed", 7), ("--max-new-tokens", 5), ("--batch-size", 4), ("--limit", 3)):
        res = CliRunner().invoke(command(), ["eval", str(gen), "--benchmark", "bold", "--out", str(tmp_path / "o"),
                                             flag, str(value)])
        assert res.exit_code == 2 and f"{flag} needs --generate-with" in res.output, res.output
        assert "Traceback" not in res.output and not (tmp_path / "o").exists()
        res = CliRunner().invoke(command(), ["prompts", "bold", "--out", str(tmp_path / "p.jsonl"), flag, str(value)])
        assert res.exit_code == 2 and f"{flag} needs --generate-with" in res.output, res.output
        assert not (tmp_path / "p.jsonl").exists()
