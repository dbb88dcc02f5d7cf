"""``scan -`` (issue 12 item 5): one shard read from standard input, streamed, in any of the JSON
lines compressions (``--input-format``), with the same annotations and summary as the same file
scanned by path; resume is per run (a rerun reads stdin again and replaces the shard's outputs,
whose done marker records what was read); misuse is a one-line error before work starts."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import zstandard

from conftest import EXAMPLES

SHARD = EXAMPLES / "part-00000.jsonl.gz"
FAST = ("--analyzers", "pronouns,identities", "--languages", "all", "--quiet")


def cli(*args, stdin: bytes | None = b""):
    return subprocess.run([sys.executable, "-m", "llama_audit.cli", *map(str, args)], input=stdin,
                          capture_output=True, timeout=300)


def only_file(folder):
    files = sorted(folder.iterdir())
    assert len(files) == 1, files
    return files[0]


def annotations(out):
    return pq.read_table(only_file(out / "annotations"))


def jsonl_bytes():
    return gzip.decompress(SHARD.read_bytes())


def compress(data: bytes, fmt: str) -> bytes:
    if fmt == "jsonl.gz":
        return gzip.compress(data, mtime=0)
    if fmt == "jsonl.zst":
        return zstandard.ZstdCompressor().compress(data)
    return data


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.gz", "jsonl.zst"])
def test_stdin_scan_equals_the_file_scanned_by_path(tmp_path, fmt):
    by_path, piped = tmp_path / "by_path", tmp_path / "piped"
    res = cli("scan", SHARD, "--out", by_path, *FAST)
    assert res.returncode == 0, res.stderr.decode()
    extra = () if fmt == "jsonl" else ("--input-format", fmt)
    res = cli("scan", "-", "--out", piped, *extra, *FAST, stdin=compress(jsonl_bytes(), fmt))
    assert res.returncode == 0, res.stderr.decode()
    a, b = annotations(by_path), annotations(piped)
    assert set(b["shard"].to_pylist()) == {"stdin"}
    assert a.drop(["shard"]).equals(b.drop(["shard"]))  # every id is in the records: no name in them
    assert (by_path / "summary" / "counts.parquet").read_bytes() == (piped / "summary" / "counts.parquet").read_bytes()
    done = json.loads(only_file(piped / "done").read_text())
    piped_bytes = compress(jsonl_bytes(), fmt)
    assert done["shard"] == "stdin" and done["size"] == len(piped_bytes)
    manifest = json.loads((piped / "manifest.json").read_text())
    assert manifest["summary"]["complete"] and manifest["totals"]["documents"] == a.num_rows


def test_rerun_reads_stdin_again_and_replaces_the_shard(tmp_path):
    out = tmp_path / "o"
    lines = jsonl_bytes().splitlines(keepends=True)
    assert cli("scan", "-", "--out", out, *FAST, stdin=b"".join(lines[:20])).returncode == 0
    first = json.loads(only_file(out / "done").read_text())
    res = cli("scan", "-", "--out", out, *FAST, stdin=b"".join(lines[:30]))
    assert res.returncode == 0, res.stderr.decode()
    assert "standard input" in res.stderr.decode()  # the user hears that the earlier result is replaced
    second = json.loads(only_file(out / "done").read_text())
    assert (first["documents"], second["documents"]) == (20, 30)  # replaced, never added up
    assert first["fingerprint"] != second["fingerprint"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["totals"]["documents"] == 30 and annotations(out).num_rows == 30
    summary = pq.read_table(out / "summary" / "counts.parquet")
    docs = summary.filter(pc.and_(pc.equal(summary["analyzer"], "corpus"), pc.equal(summary["key"], "documents")))
    assert docs["value"].to_pylist() == [30]


def test_bad_stdin_is_counted_or_one_line(tmp_path):
    # a cut-off gzip stream: the documents before the cut are read, the cut is a counted bad record
    data = gzip.compress(jsonl_bytes(), mtime=0)
    res = cli("scan", "-", "--out", tmp_path / "cut", "--input-format", "jsonl.gz", *FAST, stdin=data[: len(data) // 2])
    assert res.returncode == 0, res.stderr.decode()
    done = json.loads(only_file(tmp_path / "cut" / "done").read_text())
    assert done["documents"] > 0 and [s["reason"] for s in done["bad_samples"]] == ["truncated_stream"]
    # nothing piped in: the shard fails with one line saying so
    res = cli("scan", "-", "--out", tmp_path / "empty", *FAST, stdin=b"")
    err = res.stderr.decode()
    assert res.returncode == 1 and "standard input is empty" in err and "Traceback" not in err
    # compressed data read as plain JSON lines: the message names the option to use
    res = cli("scan", "-", "--out", tmp_path / "gz", *FAST, stdin=data)
    err = res.stderr.decode()
    assert res.returncode == 1 and "--input-format jsonl.gz" in err and "Traceback" not in err


@pytest.mark.parametrize("args, says", [
    (("scan", SHARD, "--input-format", "jsonl.gz"), "--input-format is for standard input only"),
    (("scan", "-", SHARD), "is scanned alone"),  # '-' mixed with paths
    (("scan", "-", "-"), "is scanned alone"),
    (("scan", "-", "--input-format", "parquet"), "--input-format takes jsonl, jsonl.gz, jsonl.zst"),
    (("scan", "-", "--executor", "ray"), "drop --executor ray"),  # a Ray task cannot read this process's stdin
])
def test_misuse_is_rc2_before_work(tmp_path, args, says):
    res = cli(*args, "--out", tmp_path / "o", *FAST, stdin=jsonl_bytes())
    err = res.stderr.decode()
    assert res.returncode == 2 and says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_stdin_with_slices_is_refused(tmp_path):
    res = subprocess.run([sys.executable, "-m", "llama_audit.cli", "scan", "-", "--out", str(tmp_path / "out"),
                          "--num-shards", "2", "--shard-index", "1"], input=b'{"text": "hello"}\n',
                         capture_output=True)
    assert res.returncode == 2 and b"one shard" in res.stderr, res.stderr


def test_filter_of_a_stdin_scan_says_why_it_cannot_in_one_line(tmp_path):
    out = tmp_path / "piped"
    assert cli("scan", "-", "--out", out, *FAST, stdin=jsonl_bytes()).returncode == 0
    res = cli("filter", out, "--out", tmp_path / "clean", "--drop", "chars > 100000")
    err = res.stderr.decode()
    assert res.returncode != 0 and "Traceback" not in err, err
    assert "read from standard input" in err and "scan the file by its name" in err, err
