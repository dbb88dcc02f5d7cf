"""Shard discovery: files, directories, globs, saved datasets, unknown types, dedupe, determinism."""

from __future__ import annotations

import gzip
import os
import re

import pytest

from llama_audit.corpus import (
    FORMATS,
    Shard,
    UnsupportedFormat,
    detect_format,
    discover,
    make_shard,
    shard_key,
)


def touch(path, content: bytes = b'{"text": "x"}\n'):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    touch(root / "a.jsonl")
    touch(root / "b.jsonl.gz", gzip.compress(b'{"text": "x"}\n'))
    touch(root / "sub" / "c.json.gz", gzip.compress(b'{"text": "x"}\n'))
    touch(root / "sub" / "deeper" / "d.txt", b"hello")
    touch(root / "sub" / "e.ndjson")
    return root


class Warnings(list):
    def __call__(self, msg: str) -> None:
        self.append(msg)


def test_detect_format():
    assert detect_format("x.jsonl") == "jsonl"
    assert detect_format("x.JSONL") == "jsonl"
    assert detect_format("x.ndjson") == "jsonl"
    assert detect_format("x.json") == "jsonl"
    assert detect_format("x.jsonl.gz") == "jsonl.gz"
    assert detect_format("x.json.gz") == "jsonl.gz"
    assert detect_format("x.jsonl.zst") == "jsonl.zst"
    assert detect_format("x.jsonl.zstd") == "jsonl.zst"
    assert detect_format("x.json.zst") == "jsonl.zst"
    assert detect_format("x.parquet") == "parquet"
    assert detect_format("x.pq") == "parquet"
    assert detect_format("x.txt") == "txt"
    assert detect_format("x.arrow") == "hf_arrow"
    assert detect_format("x.csv") is None
    assert detect_format("x.txt.gz") == "txt.gz"
    assert detect_format("x.TXT.ZST") == "txt.zst"
    assert detect_format("x.txt.zstd") == "txt.zst"
    assert detect_format("x.txt.bz2") is None
    assert detect_format("jsonl") is None


def test_directory_recursive(corpus):
    shards = discover([str(corpus)])
    assert [s.rel for s in shards] == ["a.jsonl", "b.jsonl.gz", "sub/c.json.gz", "sub/deeper/d.txt", "sub/e.ndjson"]
    assert [s.format for s in shards] == ["jsonl", "jsonl.gz", "jsonl.gz", "txt", "jsonl"]
    for s in shards:
        assert isinstance(s, Shard)
        assert s.root == str(corpus) and os.path.isabs(s.root)
        assert s.path == os.path.join(str(corpus), *s.rel.split("/"))
        st = os.stat(s.path)
        assert s.size == st.st_size and s.mtime_ns == st.st_mtime_ns
        assert s.format in FORMATS


def test_single_file_root_is_parent(corpus):
    (s,) = discover([str(corpus / "sub" / "c.json.gz")])
    assert s.root == str(corpus / "sub")
    assert s.rel == "c.json.gz"
    assert s.format == "jsonl.gz"


def test_relative_arguments_become_absolute(corpus, monkeypatch):
    monkeypatch.chdir(corpus.parent)
    shards = discover(["corpus"])
    assert shards[0].root == str(corpus)
    assert all(os.path.isabs(s.path) for s in shards)


def test_glob_patterns(corpus):
    shards = discover([str(corpus / "**" / "*.json.gz")])
    assert [s.rel for s in shards] == ["sub/c.json.gz"]
    assert shards[0].root == str(corpus)
    shards = discover([str(corpus / "*.jsonl*")])
    assert [s.rel for s in shards] == ["a.jsonl", "b.jsonl.gz"]
    # a glob matching a directory expands it, relative to the glob's base
    shards = discover([str(corpus / "s*")])
    assert [s.rel for s in shards] == ["sub/c.json.gz", "sub/deeper/d.txt", "sub/e.ndjson"]
    assert shards[0].root == str(corpus)


def test_glob_relative_to_cwd(corpus, monkeypatch):
    monkeypatch.chdir(corpus)
    shards = discover(["*.jsonl"])
    assert [(s.root, s.rel) for s in shards] == [(str(corpus), "a.jsonl")]


def test_glob_without_match(corpus):
    with pytest.raises(FileNotFoundError, match="no files match"):
        discover([str(corpus / "*.parquet")])


def test_mixed_arguments_and_dedupe(corpus, tmp_path):
    other = touch(tmp_path / "other" / "z.jsonl")
    shards = discover([str(other), str(corpus / "sub"), str(corpus / "a.jsonl"), str(corpus / "sub" / "e.ndjson"),
                       str(corpus / "*.jsonl")])
    paths = [s.path for s in shards]
    assert len(paths) == len(set(paths))
    assert sorted(os.path.basename(p) for p in paths) == ["a.jsonl", "c.json.gz", "d.txt", "e.ndjson", "z.jsonl"]
    # e.ndjson was reached through the sub/ directory and as a file: kept once
    (e,) = [s for s in shards if s.path.endswith("e.ndjson")]
    assert e.rel == "e.ndjson" and e.root == str(corpus / "sub")


def test_symlinked_file_listed_once(corpus):
    os.symlink(corpus / "a.jsonl", corpus / "link.jsonl")
    shards = discover([str(corpus)])
    assert sum(1 for s in shards if os.path.realpath(s.path) == str(corpus / "a.jsonl")) == 1


def test_order_independent_and_deterministic(corpus, tmp_path):
    other = touch(tmp_path / "other" / "z.jsonl")
    a = discover([str(corpus), str(other)])
    b = discover([str(other), str(corpus)])
    c = discover([str(corpus), str(other)])
    assert a == b == c
    assert [(s.root, s.rel) for s in a] == sorted((s.root, s.rel) for s in a)


def test_unknown_types(corpus):
    touch(corpus / "sub" / "notes.md", b"# readme")
    with pytest.raises(UnsupportedFormat) as ei:
        discover([str(corpus)])
    msg = str(ei.value)
    assert "notes.md" in msg and ".jsonl" in msg and ".parquet" in msg and ".txt" in msg
    assert "\n" not in msg
    warned = Warnings()
    shards = discover([str(corpus)], skip_unknown=True, warn=warned)
    assert len(shards) == 5
    assert len(warned) == 1 and "notes.md" in warned[0]


def test_explicit_unknown_file(tmp_path):
    f = touch(tmp_path / "data.csv", b"a,b\n")
    with pytest.raises(UnsupportedFormat, match="data.csv"):
        discover([str(f)])
    warned = Warnings()
    assert discover([str(f)], skip_unknown=True, warn=warned) == []
    assert warned


def test_hidden_and_marker_files_skipped_silently(corpus):
    touch(corpus / ".hidden.jsonl")
    touch(corpus / ".git" / "objects" / "x.jsonl")
    touch(corpus / "sub" / "_SUCCESS", b"")
    touch(corpus / "sub" / ".c.json.gz.crc", b"crc")
    touch(corpus / "sub" / "part-0.parquet.crc", b"crc")
    touch(corpus / "_metadata", b"x")
    warned = Warnings()
    shards = discover([str(corpus)], warn=warned)
    assert [s.rel for s in shards] == ["a.jsonl", "b.jsonl.gz", "sub/c.json.gz", "sub/deeper/d.txt", "sub/e.ndjson"]
    assert warned == []
    # named explicitly, a hidden file is taken
    (s,) = discover([str(corpus / ".hidden.jsonl")])
    assert s.rel == ".hidden.jsonl"


def test_missing_path(tmp_path):
    missing = tmp_path / "nope" / "x.jsonl"
    with pytest.raises(FileNotFoundError) as ei:
        discover([str(missing)])
    assert str(missing) in str(ei.value) and "\n" not in str(ei.value)


def test_empty_directory_warns(tmp_path):
    (tmp_path / "empty").mkdir()
    warned = Warnings()
    assert discover([str(tmp_path / "empty")], warn=warned) == []
    assert warned and "empty" in warned[0]


def test_keys_unique_safe_deterministic(tmp_path):
    touch(tmp_path / "c" / "a b.jsonl")
    touch(tmp_path / "c" / "a_b.jsonl")
    touch(tmp_path / "c" / "x" / "y.jsonl")
    touch(tmp_path / "c" / "x__y.jsonl")
    touch(tmp_path / "c" / ("long" * 60 + ".jsonl"))
    touch(tmp_path / "c" / "ünï cødé.jsonl")
    shards = discover([str(tmp_path / "c")])
    keys = [s.key for s in shards]
    assert len(set(keys)) == len(keys)
    for s in shards:
        assert re.fullmatch(r"[A-Za-z0-9._~-]+-[0-9a-f]{8}", s.key), s.key
        assert len(s.key) <= 180
        assert not s.key.startswith(".")
        assert s.key == shard_key(s.rel, s.path)
    assert keys == [s.key for s in discover([str(tmp_path / "c")])]
    assert [s for s in shards if s.rel == "x/y.jsonl"][0].key.startswith("x__y.jsonl-")


def test_make_shard(tmp_path):
    f = touch(tmp_path / "d" / "one.jsonl")
    s = make_shard(str(f))
    assert (s.root, s.rel, s.format) == (str(tmp_path / "d"), "one.jsonl", "jsonl")
    s = make_shard(str(f), root=str(tmp_path))
    assert s.rel == "d/one.jsonl"
    with pytest.raises(UnsupportedFormat):
        make_shard(str(touch(tmp_path / "x.bin")))


# --- directories written by datasets.save_to_disk ---------------------------------------------

datasets = pytest.importorskip("datasets")


def _save(ds, path, **kw):
    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()):
        ds.save_to_disk(str(path), **kw)


def test_saved_dataset_dir(tmp_path):
    ds = datasets.Dataset.from_dict({"text": [f"doc {i}" for i in range(10)], "id": list(range(10))})
    _save(ds, tmp_path / "hf", num_shards=2)
    # datasets may leave cache files next to the data: they are not part of the saved dataset
    (tmp_path / "hf" / "cache-0123456789abcdef.arrow").write_bytes(b"junk")
    shards = discover([str(tmp_path / "hf")])
    assert [s.rel for s in shards] == ["data-00000-of-00002.arrow", "data-00001-of-00002.arrow"]
    assert all(s.format == "hf_arrow" and s.root == str(tmp_path / "hf") for s in shards)


def test_dataset_dict_dir_and_nesting(tmp_path):
    ds = datasets.Dataset.from_dict({"text": ["a", "b", "c"]})
    dd = datasets.DatasetDict(train=ds, test=ds.select([0]))
    _save(dd, tmp_path / "corpus" / "hfdict")
    touch(tmp_path / "corpus" / "plain.jsonl")
    shards = discover([str(tmp_path / "corpus")])
    assert [s.rel for s in shards] == [
        "hfdict/test/data-00000-of-00001.arrow",
        "hfdict/train/data-00000-of-00001.arrow",
        "plain.jsonl",
    ]
    direct = discover([str(tmp_path / "corpus" / "hfdict")])
    assert [s.rel for s in direct] == ["test/data-00000-of-00001.arrow", "train/data-00000-of-00001.arrow"]


def test_glob_into_saved_dataset_skips_its_metadata(tmp_path):
    ds = datasets.Dataset.from_dict({"text": ["a", "b"]})
    _save(ds, tmp_path / "c" / "hf")
    shards = discover([str(tmp_path / "c" / "**")])
    assert [(s.rel, s.format) for s in shards] == [("hf/data-00000-of-00001.arrow", "hf_arrow")]
