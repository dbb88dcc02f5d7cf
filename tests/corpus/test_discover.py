"""Shard discovery: files, directories, globs, saved datasets, unknown types, dedupe, determinism."""

from __future__ import annotations

import gzip
import json
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
from llama_audit.types import ConfigError


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


# --- shard names are safe relative paths (issue 9, item 5) --------------------------------------


def _safe(rel: str) -> bool:
    parts = rel.split("/")
    return (not rel.startswith("/") and all(p not in ("", ".", "..") for p in parts)
            and not any(ord(c) < 32 or ord(c) == 127 for c in rel))


def test_glob_climbing_out_of_its_base_names_shards_inside_their_root(tmp_path, monkeypatch):
    touch(tmp_path / "x" / "a" / "keep.jsonl")
    touch(tmp_path / "y" / "f.jsonl")
    monkeypatch.chdir(tmp_path)
    (s,) = discover(["x/*/../../y/*.jsonl"])
    assert _safe(s.rel) and s.rel == "y/f.jsonl"
    assert s.root == str(tmp_path) and os.path.join(s.root, s.rel) == s.path
    # the same files reached from elsewhere are named the same way (relative, so stable across machines)
    monkeypatch.chdir(tmp_path / "x")
    (t,) = discover([str(tmp_path / "x" / "*" / ".." / ".." / "y" / "*.jsonl")])
    assert (t.root, t.rel, t.key) == (s.root, s.rel, s.key)


def test_make_shard_refuses_a_file_outside_its_root(tmp_path):
    f = touch(tmp_path / "y" / "f.jsonl")
    with pytest.raises(ValueError, match="not under"):
        make_shard(str(f), root=str(tmp_path / "x"))


def test_same_name_under_two_inputs_gets_two_names(tmp_path):
    touch(tmp_path / "a" / "part-0.jsonl")
    touch(tmp_path / "b" / "part-0.jsonl")
    touch(tmp_path / "b" / "only-b.jsonl")
    shards = discover([str(tmp_path / "a"), str(tmp_path / "b")])
    assert [s.rel for s in shards] == ["a/part-0.jsonl", "b/only-b.jsonl", "b/part-0.jsonl"]
    assert all(s.root == str(tmp_path) and os.path.join(s.root, s.rel) == s.path for s in shards)
    assert len({s.key for s in shards}) == 3
    # without a clash, each input keeps its own root (names unchanged from before)
    (lone,) = discover([str(tmp_path / "a")])
    assert lone.rel == "part-0.jsonl"


def test_control_characters_and_undecodable_bytes_in_names(tmp_path):
    touch(tmp_path / "c" / "line\nbreak.jsonl")
    touch(tmp_path / "c" / "esc\x1b[31m.jsonl")
    raw = os.path.join(os.fsencode(tmp_path / "c"), b"bad-\xff.jsonl")
    with open(raw, "wb") as f:
        f.write(b'{"text": "x"}\n')
    shards = discover([str(tmp_path / "c")])
    assert sorted(s.rel for s in shards) == ["bad-%FF.jsonl", "esc%1B[31m.jsonl", "line%0Abreak.jsonl"]
    for s in shards:
        assert _safe(s.rel) and os.path.exists(s.path)
        s.rel.encode("utf-8")  # no lone surrogates: the name can be written to Parquet and JSON


@pytest.mark.parametrize("record, what", [
    ({"shard": "../../../etc/f.jsonl"}, "shard"),
    ({"shard": "/etc/f.jsonl"}, "shard"),
    ({"shard": "a/./b.jsonl"}, "shard"),
    ({"shard": "a//b.jsonl"}, "shard"),
    ({"shard": "a\nb.jsonl"}, "shard"),
    ({"key": "../../x"}, "key"),
    ({"key": "a/b"}, "key"),
    ({"key": ".hidden"}, "key"),
    ({"key": ""}, "key"),
])
def test_from_record_refuses_unsafe_names(tmp_path, record, what):
    s = make_shard(str(touch(tmp_path / "c" / "a.jsonl")))
    rec = {**s.to_record(), **record}
    with pytest.raises(ConfigError, match=what) as ei:
        Shard.from_record(rec)
    assert "\n" not in str(ei.value)
    assert Shard.from_record(s.to_record()) == s


def test_saved_dataset_file_list_cannot_name_files_outside_it(tmp_path):
    d = tmp_path / "c" / "hf"
    touch(d / "data-0.arrow", b"x")
    touch(tmp_path / "c" / "evil.arrow", b"x")
    touch(d / "dataset_info.json", b"{}")
    touch(d / "state.json", json.dumps({"_data_files": [{"filename": "../evil.arrow"}, {"filename": "/etc/x.arrow"},
                                                        {"filename": "data-0.arrow"}]}).encode())
    warned = Warnings()
    assert [s.rel for s in discover([str(d)], warn=warned)] == ["data-0.arrow"]
    assert len(warned) == 1 and "2 file name(s)" in warned[0]


# --- llama-audit's own bookkeeping is no corpus (issue 9, item 13) ------------------------------


def test_bookkeeping_is_not_discovered(tmp_path):
    c = tmp_path / "clean"
    touch(c / "a.jsonl")
    touch(c / "sub" / "b.jsonl")
    touch(c / "_llama_audit" / "filter_log.parquet", b"PAR1")
    touch(c / "_llama_audit" / "done" / "x.json", b"{}")
    touch(c / ".filter" / "done" / "x.json", b"{}")
    touch(c / "filter_log.parquet", b"PAR1")
    touch(c / "filter_manifest.json", b"{}")
    touch(c / "sub" / ".b.jsonl.abc123.tmp", b"partial")
    warned = Warnings()
    for arg in (str(c), str(c / "*"), str(c / "**")):
        assert [s.rel for s in discover([arg], warn=warned)] == ["a.jsonl", "sub/b.jsonl"], arg
    assert warned == []
    # named explicitly, it is read
    (s,) = discover([str(c / "filter_manifest.json")])
    assert s.rel == "filter_manifest.json"


def test_filter_log_name_alone_is_data(tmp_path):
    touch(tmp_path / "c" / "filter_manifest.json")  # no bookkeeping folder next to it: a corpus file
    assert [s.rel for s in discover([str(tmp_path / "c")])] == ["filter_manifest.json"]


def test_a_scan_output_inside_the_corpus_is_skipped(tmp_path):
    from llama_audit.job import ScanRequest, run_scan

    c = tmp_path / "c"
    touch(c / "a.jsonl", b'{"text": "The committee met on Tuesday."}\n')
    run_scan(ScanRequest(paths=[str(c)], out=str(c / "audit"), analyzers=["language"], languages=("all",)))
    warned = Warnings()
    assert [s.rel for s in discover([str(c)], warn=warned)] == ["a.jsonl"]
    assert len(warned) == 1 and "audit" in warned[0] and "scan output" in warned[0]


def test_scan_of_a_filtered_corpus_reads_only_its_shards(tmp_path):
    from llama_audit.filter import FilterRequest, run_filter
    from llama_audit.job import ScanRequest, run_scan

    c = tmp_path / "c"
    touch(c / "a.jsonl", b'{"text": "The committee met on Tuesday to discuss the budget."}\n'
                         b'{"text": "Le comite s\'est reuni mardi pour discuter du budget."}\n')
    touch(c / "sub" / "b.jsonl", b'{"text": "She said the school would open next year."}\n')
    run_scan(ScanRequest(paths=[str(c)], out=str(tmp_path / "out"), analyzers=["language"], languages=("all",)))
    run_filter(FilterRequest(out=str(tmp_path / "out"), clean=str(tmp_path / "clean"), drop=["lang == 'fr'"]))
    assert [s.rel for s in discover([str(tmp_path / "clean")])] == ["a.jsonl", "sub/b.jsonl"]
    res = run_scan(ScanRequest(paths=[str(tmp_path / "clean")], out=str(tmp_path / "out2"), analyzers=["language"],
                               languages=("all",)))
    manifest = json.loads((tmp_path / "out2" / "manifest.json").read_text())
    assert sorted(e["shard"] for e in manifest["shards"]) == ["a.jsonl", "sub/b.jsonl"]
    assert all(e["status"] == "done" for e in manifest["shards"]), manifest["shards"]
    assert res is not None
