"""The ground floor's path guard: every write under OUT or CLEAN can check it stays there."""

from __future__ import annotations

import os

import pytest

from llama_audit.types import ConfigError, ensure_under


def test_ensure_under_accepts_paths_inside_the_root(tmp_path):
    assert ensure_under(tmp_path, "a/b.jsonl") == tmp_path / "a" / "b.jsonl"
    assert ensure_under(str(tmp_path), tmp_path / "x.parquet") == tmp_path / "x.parquet"


@pytest.mark.parametrize("rel", ["../x.jsonl", "a/../../x.jsonl", "/etc/passwd", "", ".", "a/.."])
def test_ensure_under_refuses_escapes_in_one_line(tmp_path, rel):
    with pytest.raises(ConfigError) as ei:
        ensure_under(tmp_path / "clean", rel)
    assert str(tmp_path / "clean") in str(ei.value) and "\n" not in str(ei.value)


def test_ensure_under_refuses_a_symlink_leading_out(tmp_path):
    (tmp_path / "clean").mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "clean" / "sub")
    with pytest.raises(ConfigError, match="outside"):
        ensure_under(tmp_path / "clean", "sub/f.jsonl")
