"""Helpers of the eval tests: generation files and the CLI runner."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from llama_audit.cli import command


def invoke(*args):
    return CliRunner().invoke(command(), [str(a) for a in args])


def write_generations(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def report_json(out: Path) -> dict:
    res = invoke("report", out, "--format", "json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def render(out: Path, fmt: str) -> str:
    """``llama-audit report OUT --format FMT --no-figures``: its standard output (exit code 0 checked)."""
    res = invoke("report", out, "--format", fmt, "--no-figures")
    assert res.exit_code == 0, res.output
    return res.stdout
