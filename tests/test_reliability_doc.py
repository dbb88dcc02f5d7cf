"""docs/reliability.md names, for each fault, the test that proves what the tool does about it: every
test it names must exist, so the table cannot point at a test that was renamed or removed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def named_tests(doc: str) -> list[tuple[str, str]]:
    """(test file, function) for every ``tests/x.py::name`` and every ``::name`` after it in a cell."""
    found = []
    for cell in re.findall(r"\|([^|\n]*tests/[^|\n]*)\|\s*$", doc, flags=re.M):
        current = None
        for m in re.finditer(r"(tests/[\w/]+\.py)?::(\w+)", cell):
            current = m.group(1) or current
            found.append((current, m.group(2)))
    return found


def test_every_test_named_in_reliability_doc_exists():
    doc = (ROOT / "docs" / "reliability.md").read_text()
    named = named_tests(doc)
    assert len(named) > 60
    missing = [f"{f}::{name}" for f, name in named if f is None or not (ROOT / f).is_file()
               or name not in _functions(ROOT / f)]
    assert not missing, missing


def test_the_checker_sees_a_missing_test():
    doc = "| fault | does | tests/test_cli.py::no_such_test_here, ::test_markup_in_paths_is_printed_literally |\n"
    named = named_tests(doc)
    assert named == [("tests/test_cli.py", "no_such_test_here"), ("tests/test_cli.py", "test_markup_in_paths_is_printed_literally")]
    assert "no_such_test_here" not in _functions(ROOT / "tests/test_cli.py")
