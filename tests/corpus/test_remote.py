"""Corpus inputs as fsspec URLs (issue 12 item 1, inputs side), against a real S3 API on loopback
(``moto_server``, see conftest): a bucket prefix, a glob or one object scans to the same
annotations and counts as the same files on local disk; discovery keeps the local rules (ignored
names, own bookkeeping, unknown types); keys are the same on every machine; a missing object,
bucket or backend is one line (exit 2) that never prints a credential; remote objects are
streamed by range requests; filter rewrites shards it reads from the bucket."""

from __future__ import annotations

import gzip
import io
import json
import hashlib
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from click.testing import CliRunner

from llama_audit.cli import command
from llama_audit.corpus import ReadSpec, ShardUnreadable, discover, read_shard, remote
from llama_audit.types import ConfigError

FAST = ("--analyzers", "pronouns,pii", "--languages", "all", "--quiet")
TEXT_FIELDS = "text,meta.text,content"


def _jsonl(records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def _docs(tag: str, n: int = 4) -> list[str]:
    return [f"{tag} doc {i}: she said he would mail jane.doe{i}@example.com about their plans." for i in range(n)]


def corpus_files() -> dict[str, bytes]:
    """A small corpus in every streamed format, the text at the top, nested and in a fallback."""
    table = pa.table({"id": ["p0", "p1", "p2"], "text": ["she reads parquet", None, "he writes to a@b.org"],
                      "content": ["unused", "they use the fallback column", "unused"]})
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=2)
    return {
        "a.jsonl": _jsonl([{"id": f"a{i}", "text": t} for i, t in enumerate(_docs("plain"))] + [{"id": "bad"}]),
        "sub/b.jsonl.gz": gzip.compress(_jsonl([{"meta": {"text": t}} for t in _docs("nested")]), mtime=0),
        "sub/c.jsonl.zst": zstandard.ZstdCompressor().compress(_jsonl([{"content": t} for t in _docs("content")])),
        "d.parquet": sink.getvalue(),
    }


def s3fs_client():
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True)


def upload(bucket: str, prefix: str, files: dict[str, bytes]) -> None:
    fs = s3fs_client()
    for rel, data in files.items():
        fs.pipe_file(f"{bucket}/{prefix}/{rel}", data)


def write_local(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def invoke(*args):
    return CliRunner().invoke(command(), [str(a) for a in args])


def by_name(folder: Path) -> dict[str, Path]:
    """A shard's output files by shard name: the key without its 8-hex path hash."""
    return {p.name.rsplit("-", 1)[0]: p for p in sorted(folder.iterdir())}


def test_url_words():
    assert remote.is_url("s3://bucket/a.jsonl") and remote.is_url("https://host/x.jsonl.gz")
    assert not remote.is_url("C:\\data\\a.jsonl") and not remote.is_url("C:/data/a.jsonl")
    assert not remote.is_url("data/a.jsonl") and not remote.is_url("-")
    assert remote.local_path("file:///data/my%20corpus") == "/data/my corpus"
    assert remote.public_url("https://user:pw@host/x.jsonl?sig=abc#f") == "https://host/x.jsonl"
    with pytest.raises(ConfigError, match="names a local absolute path"):
        remote.local_path("file://otherhost/data")


def test_file_url_is_the_local_path(tmp_path):
    root = write_local(tmp_path / "corpus", corpus_files())
    assert discover([f"file://{root}"]) == discover([str(root)])


def test_scan_from_a_bucket_matches_the_local_scan(s3_bucket, tmp_path):
    files = corpus_files()
    upload(s3_bucket, "corpus", files)
    local = write_local(tmp_path / "corpus", files)
    for name, src in (("local", str(local)), ("s3", f"s3://{s3_bucket}/corpus/")):
        res = invoke("scan", src, "--out", tmp_path / name, "--text-field", TEXT_FIELDS, *FAST)
        assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "s3" / "manifest.json").read_text())
    paths = sorted(e["path"] for e in manifest["shards"])
    assert paths == sorted(f"s3://{s3_bucket}/corpus/{rel}" for rel in files)
    # annotations and partials: the same bytes per shard name; only the file names differ (the
    # key's hash is of the shard's path: a local absolute path here, the URL there)
    for sub in ("annotations", "partials"):
        here, there = by_name(tmp_path / "local" / sub), by_name(tmp_path / "s3" / sub)
        assert sorted(here) == sorted(there) and len(here) == len(files)
        for name in here:
            assert here[name].read_bytes() == there[name].read_bytes(), (sub, name)
    # a corpus copied to a bucket keeps its content fingerprints (the report's shard fingerprint)
    fingerprints = {name: {json.loads(p.read_text())["shard"]: json.loads(p.read_text())["fingerprint"]
                           for p in (tmp_path / name / "done").iterdir()} for name in ("local", "s3")}
    assert fingerprints["local"] == fingerprints["s3"] and len(fingerprints["s3"]) == len(files)
    ann = pq.read_table(by_name(tmp_path / "s3" / "annotations")["d.parquet"])
    assert ann["doc_id"].to_pylist() == ["p0", "p1", "p2"]  # the null text row read from 'content'
    assert ((tmp_path / "local" / "summary" / "counts.parquet").read_bytes()
            == (tmp_path / "s3" / "summary" / "counts.parquet").read_bytes())
    # a rerun resumes from the listing's size and LastModified: nothing is scanned again
    done = {p.name: p.read_bytes() for p in (tmp_path / "s3" / "done").iterdir()}
    again = invoke("scan", f"s3://{s3_bucket}/corpus/", "--out", tmp_path / "s3", "--text-field", TEXT_FIELDS, *FAST)
    assert again.exit_code == 0, again.output
    assert done == {p.name: p.read_bytes() for p in (tmp_path / "s3" / "done").iterdir()}
    # an object rewritten since is scanned again
    upload(s3_bucket, "corpus", {"a.jsonl": files["a.jsonl"] + _jsonl([{"id": "a9", "text": "one more"}])})
    again = invoke("scan", f"s3://{s3_bucket}/corpus/", "--out", tmp_path / "s3", "--text-field", TEXT_FIELDS, *FAST)
    assert again.exit_code == 0, again.output
    assert pq.read_table(by_name(tmp_path / "s3" / "annotations")["a.jsonl"])["doc_id"].to_pylist()[-1] == "a9"


def test_filter_of_a_scan_from_a_bucket_writes_the_local_clean_copy(s3_bucket, tmp_path):
    files = corpus_files()
    upload(s3_bucket, "corpus", files)
    local = write_local(tmp_path / "corpus", files)
    for name, src in (("local", str(local)), ("s3", f"s3://{s3_bucket}/corpus")):
        res = invoke("scan", src, "--out", tmp_path / name, "--text-field", TEXT_FIELDS, *FAST)
        assert res.exit_code == 0, res.output
        res = invoke("filter", tmp_path / name, "--out", tmp_path / f"clean-{name}", "--redact", "pii")
        assert res.exit_code == 0, res.output
    for rel in files:
        cleaned = (tmp_path / "clean-s3" / rel).read_bytes()
        assert cleaned == (tmp_path / "clean-local" / rel).read_bytes(), rel
    assert b"jane.doe0@example.com" not in (tmp_path / "clean-s3" / "a.jsonl").read_bytes()


def test_glob_and_prefix_follow_the_local_discovery_rules(s3_bucket, tmp_path):
    files = corpus_files()
    extra = {"_SUCCESS": b"", ".hidden.jsonl": b"{}\n", "a.jsonl.crc": b"x", ".cache/x.jsonl": b"{}\n",
             "_llama_audit/state.jsonl": b"{}\n", "audit/config.json": b"{}", "audit/done/k.json": b"{}",
             "audit/annotations/k.parquet": b"x", "README.md": b"# corpus\n"}
    upload(s3_bucket, "corpus", {**files, **extra})
    write_local(tmp_path / "corpus", {**files, **extra})
    warnings: list[str] = []
    with pytest.raises(Exception, match="unsupported file type: s3://.*README.md"):
        discover([f"s3://{s3_bucket}/corpus/"])
    shards = discover([f"s3://{s3_bucket}/corpus/"], skip_unknown=True, warn=warnings.append)
    assert [s.rel for s in shards] == sorted(files)
    assert [s.rel for s in shards] == [s.rel for s in discover([str(tmp_path / "corpus")], skip_unknown=True,
                                                               warn=lambda m: None)]
    assert any("audit: a llama-audit scan output" in w for w in warnings)
    assert any("skipping" in w and "README.md" in w for w in warnings)
    for s in shards:
        assert s.root == f"s3://{s3_bucket}/corpus" and s.path == f"{s.root}/{s.rel}"
        assert s.size == len(files[s.rel]) and s.mtime_ns > 0
    globbed = discover([f"s3://{s3_bucket}/corpus/**/*.jsonl.*"])
    assert [(s.rel, s.root) for s in globbed] == [("sub/b.jsonl.gz", f"s3://{s3_bucket}/corpus"),
                                                  ("sub/c.jsonl.zst", f"s3://{s3_bucket}/corpus")]
    one = discover([f"s3://{s3_bucket}/corpus/sub/b.jsonl.gz"])
    assert [(s.rel, s.root) for s in one] == [("b.jsonl.gz", f"s3://{s3_bucket}/corpus/sub")]
    with pytest.raises(FileNotFoundError, match="no objects match"):
        discover([f"s3://{s3_bucket}/corpus/*.txt"])
    upload(s3_bucket, "odd", {"part[1].jsonl": _jsonl([{"text": "x"}])})  # a name that looks like a glob
    assert [s.rel for s in discover([f"s3://{s3_bucket}/odd/part[1].jsonl"])] == ["part[1].jsonl"]


def test_keys_are_the_same_on_every_listing_and_working_directory(s3_bucket, tmp_path, monkeypatch):
    upload(s3_bucket, "corpus", corpus_files())
    first = discover([f"s3://{s3_bucket}/corpus"])
    monkeypatch.chdir(tmp_path)
    again = discover([f"s3://{s3_bucket}/corpus/"])
    assert [s.key for s in first] == [s.key for s in again]
    assert all(s.key.endswith("-" + hashlib.sha1(s.path.encode()).hexdigest()[:8]) for s in first)


def test_two_prefixes_with_the_same_names_are_named_from_their_common_folder(s3_bucket):
    files = {"part-0.jsonl": _jsonl([{"text": "x"}])}
    upload(s3_bucket, "x", files)
    upload(s3_bucket, "y", files)
    shards = discover([f"s3://{s3_bucket}/x", f"s3://{s3_bucket}/y"])
    assert [(s.root, s.rel) for s in shards] == [(f"s3://{s3_bucket}", "x/part-0.jsonl"),
                                                 (f"s3://{s3_bucket}", "y/part-0.jsonl")]
    assert len({s.key for s in shards}) == 2


@pytest.mark.parametrize("what", ["object", "bucket"])
def test_a_missing_object_or_bucket_is_one_line_exit_2(s3_bucket, tmp_path, what):
    url = f"s3://{s3_bucket}/nothing/here.jsonl" if what == "object" else "s3://no-such-bucket-x1/corpus/"
    res = invoke("scan", url, "--out", tmp_path / "out", *FAST)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and url.rstrip("/") in lines[0] and "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


def test_an_unreachable_store_is_one_line_exit_2(s3_env, tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's own setting: no retries
    __import__("fsspec").filesystem("s3").clear_instance_cache()
    res = invoke("scan", "s3://some-bucket/corpus/", "--out", tmp_path / "out", *FAST)
    assert res.exit_code == 2, res.output
    (line,) = res.output.strip().splitlines()
    assert line.startswith("error: s3://some-bucket/corpus/: cannot list (EndpointConnectionError: ")


def test_arrow_objects_and_saved_datasets_are_local_only(s3_bucket):
    upload(s3_bucket, "ds", {"data-00000-of-00001.arrow": b"x", "state.json": b"{}", "dataset_info.json": b"{}"})
    with pytest.raises(ConfigError, match="read from local disk only"):
        discover([f"s3://{s3_bucket}/ds/"])
    with pytest.raises(ConfigError, match="read from local disk only"):
        discover([f"s3://{s3_bucket}/ds/data-00000-of-00001.arrow"])


def test_credentials_are_never_printed(s3_bucket, tmp_path, monkeypatch):
    secret = "Zq9SECRETvalue77"
    res = invoke("scan", f"s3://AKIAKEY:{secret}@{s3_bucket}/corpus/", "--out", tmp_path / "a", *FAST)
    assert res.exit_code == 2 and secret not in res.output and "credentials in a URL" in res.output
    res = invoke("scan", f"https://user:{secret}@example.invalid/x.jsonl", "--out", tmp_path / "b", *FAST)
    assert res.exit_code == 2 and secret not in res.output
    res = invoke("scan", f"https://example.invalid/x.jsonl?X-Amz-Signature={secret}", "--out", tmp_path / "c", *FAST)
    assert res.exit_code == 2 and secret not in res.output
    # the backend's own credentials (environment) reach no output
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    __import__("fsspec").filesystem("s3").clear_instance_cache()
    upload(s3_bucket, "corpus", corpus_files())
    res = invoke("scan", f"s3://{s3_bucket}/corpus/", "--out", tmp_path / "out", "--text-field", TEXT_FIELDS, *FAST)
    assert res.exit_code == 0, res.output
    assert secret not in res.output
    for p in (tmp_path / "out").rglob("*"):
        if p.is_file():
            assert secret.encode() not in p.read_bytes(), p


def test_a_missing_backend_names_its_extra(tmp_path):
    code = ("import sys; sys.modules['s3fs'] = None; sys.argv = ['llama-audit', 'scan', 's3://bucket/corpus/', "
            f"'--out', {str(tmp_path / 'out')!r}, *{FAST!r}]; from llama_audit.cli import main; main()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == ["error: s3://bucket/corpus/: reading s3:// needs the s3 extra: pip install 'llama-audit[s3]'"]


def test_remote_objects_are_streamed_by_range_requests(s3_bucket, monkeypatch):
    import s3fs.core

    line = _jsonl([{"text": "she " * 250}])
    data = line * (24 * 1024 * 1024 // len(line))  # 24 MiB of JSON lines
    upload(s3_bucket, "big", {"big.jsonl": data})
    requested: list[int] = []
    fetch = s3fs.core.S3File._fetch_range

    def spy(self, start, end):
        requested.append(end - start)
        return fetch(self, start, end)

    monkeypatch.setattr(s3fs.core.S3File, "_fetch_range", spy)
    (shard,) = discover([f"s3://{s3_bucket}/big/"])
    docs = sum(len(b.texts) for b, _, _ in read_shard(shard) if b is not None)
    assert docs == data.count(b"\n")
    assert sum(requested) == len(data)  # every byte fetched once
    assert len(requested) >= 2 and max(requested) <= 2 * remote.BLOCK_SIZE < len(data)

    # a connection that breaks mid-object (a backend's own error, not an OSError) is a read_error
    # bad record after the documents read so far, as a local I/O error is
    class ConnectionBroke(Exception):
        pass

    def broken(self, start, end):
        if start > 0:
            raise ConnectionBroke("connection reset by peer")
        return fetch(self, start, end)

    monkeypatch.setattr(s3fs.core.S3File, "_fetch_range", broken)
    items = list(read_shard(shard))
    read = sum(len(b.texts) for b, _, _ in items if b is not None)
    bad = [r for _, records, _ in items for r in records]
    assert 0 < read < docs
    assert [r.reason for r in bad] == ["read_error"] and "ConnectionBroke: connection reset by peer" in bad[0].detail


def test_a_vanished_object_is_an_unreadable_shard(s3_bucket):
    upload(s3_bucket, "corpus", {"a.jsonl": _jsonl([{"text": "x"}])})
    (shard,) = discover([f"s3://{s3_bucket}/corpus/"])
    s3fs_client().rm(f"{s3_bucket}/corpus/a.jsonl")
    with pytest.raises(ShardUnreadable, match=f"s3://{s3_bucket}/corpus/a.jsonl: cannot open: .*no such object"):
        read_shard(shard)


def test_one_file_on_a_web_server_reads_as_the_local_file(tmp_path):
    import functools
    import http.server
    import threading

    files = corpus_files()
    write_local(tmp_path / "site", files)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "site"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for rel in ("sub/b.jsonl.gz", "d.parquet"):
            (shard,) = discover([f"http://127.0.0.1:{server.server_port}/{rel}"])
            (local,) = discover([str(tmp_path / "site" / rel)])
            assert (shard.rel, shard.size, shard.format) == (local.rel, local.size, local.format)
            spec = ReadSpec(text_field=TEXT_FIELDS)
            got = [(b.texts, b.doc_ids) for b, _, _ in read_shard(shard, spec) if b is not None]
            assert got == [(b.texts, b.doc_ids) for b, _, _ in read_shard(local, spec) if b is not None]
    finally:
        server.shutdown()
        server.server_close()
