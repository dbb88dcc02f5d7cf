"""The Hugging Face Hub by name (issue 12 item 3): ``hf://datasets/OWNER/NAME[@REV][/GLOB]`` listed
as shards, and ``--hf-dataset`` streamed through ``datasets``.

No network: ``huggingface_hub`` talks to a small Hub on loopback (:class:`FakeHub`, the few API
routes it calls: repo info per revision, the tree listing, paths-info and ``resolve`` downloads
with the headers it reads), with a temporary cache per test."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

hub_lib = pytest.importorskip("huggingface_hub")
from huggingface_hub import constants as hub_constants  # noqa: E402

from llama_audit.corpus import discover  # noqa: E402
from llama_audit.corpus.hub import HUB_MTIME_NS, list_hub_files  # noqa: E402
from llama_audit.types import ConfigError  # noqa: E402

REPO = "acme/corpus"


def _sha(label: str) -> str:
    return hashlib.sha1(label.encode()).hexdigest()


def _jsonl_gz(records) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
        f.write("".join(json.dumps(r) + "\n" for r in records).encode())
    return buf.getvalue()


def _parquet(records) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records), buf)
    return buf.getvalue()


def _docs(prefix: str, n: int) -> list[dict]:
    texts = ["She said he would come back tomorrow.", "The weather in Paris is mild.",
             "Write to me at the office.", "They went to the market together."]
    return [{"id": f"{prefix}-{k}", "text": f"{texts[k % len(texts)]} ({prefix} {k})"} for k in range(n)]


V1, MAIN = _sha("v1"), _sha("main")
COMMON = {
    "README.md": b"# corpus\n",
    ".gitattributes": b"*.parquet filter=lfs\n",
    "dataset_info.json": b'{\n  "description": ""\n}\n',
    "data/en/part-0.jsonl.gz": _jsonl_gz(_docs("en0", 5)),
    "data/en/part-1.parquet": _parquet(_docs("en1", 4)),
}
COMMITS = {
    V1: dict(COMMON),
    MAIN: {**COMMON, "data/fr/part-0.jsonl.gz": _jsonl_gz(_docs("fr0", 3)), "data/fr/notes.csv": b"a,b\n"},
}
REFS = {"main": MAIN, "v1": V1}


class FakeHub(BaseHTTPRequestHandler):
    """The Hub API routes ``huggingface_hub`` uses to resolve, list and download a dataset."""

    requests: list[str] = []

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, code: int, body: bytes = b"", headers: dict | None = None, error: str | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if error:
            self.send_header("X-Error-Code", error)
        self.send_header("Content-Length", str(len(body)) if "Content-Length" not in (headers or {}) else headers["Content-Length"])
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj) -> None:
        self._send(200, json.dumps(obj).encode(), {"Content-Type": "application/json"})

    def _commit(self, repo: str, rev: str) -> str | None:
        if repo != REPO:
            self._send(404, b'{"error": "Repository not found"}', error="RepoNotFound")
            return None
        sha = REFS.get(rev, rev if rev in COMMITS else None)
        if sha is None:
            self._send(404, b'{"error": "Invalid rev id"}', error="RevisionNotFound")
        return sha

    @staticmethod
    def _entries(files: dict[str, bytes], prefix: str, recursive: bool) -> list[dict]:
        out, dirs = [], set()
        for path, data in sorted(files.items()):
            if prefix and not path.startswith(prefix + "/"):
                continue
            rest = path[len(prefix) + 1:] if prefix else path
            parts = rest.split("/")
            for depth in range(1, len(parts)):
                d = "/".join(filter(None, [prefix, *parts[:depth]]))
                if (recursive or depth == 1) and d not in dirs:
                    dirs.add(d)
                    out.append({"type": "directory", "path": d, "oid": _sha(d)})
            if recursive or len(parts) == 1:
                out.append({"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()})
        return out

    def do_GET(self) -> None:  # noqa: N802
        FakeHub.requests.append(f"{self.command} {self.path}")
        split = urlsplit(self.path)
        raw = split.path
        if m := re.fullmatch(r"/api/datasets/([^/]+/[^/]+)(?:/revision/([^/]+))?", raw):
            sha = self._commit(m[1], unquote(m[2] or "main"))
            if sha:
                self._json({"id": m[1], "sha": sha, "private": False,
                            "siblings": [{"rfilename": p} for p in sorted(COMMITS[sha])]})
        elif m := re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", raw):
            sha = self._commit(m[1], unquote(m[2]))
            if sha:
                recursive = parse_qs(split.query).get("recursive", ["False"])[0].lower() == "true"
                self._json(self._entries(COMMITS[sha], unquote(m[3] or "").strip("/"), recursive))
        elif m := re.fullmatch(r"/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", raw):
            sha = self._commit(m[1], unquote(m[2]))
            if not sha:
                return
            data = COMMITS[sha].get(unquote(m[3]))
            if data is None:
                self._send(404, b"{}", error="EntryNotFound")
                return
            headers = {"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
                       "Accept-Ranges": "bytes"}
            rng = self.headers.get("Range")
            if rng and (r := re.fullmatch(r"bytes=(\d+)-(\d*)", rng)):
                start, end = int(r[1]), int(r[2]) if r[2] else len(data) - 1
                part = data[start:end + 1]
                self._send(206, part, {**headers, "Content-Range": f"bytes {start}-{start + len(part) - 1}/{len(data)}"})
            else:
                self._send(200, data, headers)
        else:
            self._send(404, b"{}")

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        FakeHub.requests.append(f"POST {self.path}")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        m = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/paths-info/([^/]+)", urlsplit(self.path).path)
        if not m:
            self._send(404, b"{}")
            return
        sha = self._commit(m[1], unquote(m[2]))
        if sha:
            asked = parse_qs(body).get("paths", [])
            entries = self._entries(COMMITS[sha], "", True)
            self._json([e for e in entries if e["path"] in asked])


@pytest.fixture(scope="module")
def hub_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def hub(hub_url, tmp_path, monkeypatch):
    """huggingface_hub pointed at the loopback Hub with an empty cache, online; ``hub.offline()``
    sets HF_HUB_OFFLINE, ``hub.home(path)`` moves to another HF_HOME (another machine)."""

    class Hub:
        url = hub_url

        def home(self, path: Path) -> Path:
            cache = path / "hub"
            monkeypatch.setenv("HF_HOME", str(path))
            monkeypatch.setenv("HF_HUB_CACHE", str(cache))
            monkeypatch.setattr(hub_constants, "HF_HOME", str(path))
            monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
            return cache

        def offline(self, on: bool = True) -> None:
            monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", on)
            if on:
                monkeypatch.setenv("HF_HUB_OFFLINE", "1")
            else:
                monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    h = Hub()
    monkeypatch.setenv("HF_ENDPOINT", hub_url)
    monkeypatch.setattr(hub_constants, "ENDPOINT", hub_url)  # read when huggingface_hub was imported
    monkeypatch.setattr(hub_constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub_url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    h.cache = h.home(tmp_path / "hf_home")
    h.offline(False)
    FakeHub.requests.clear()
    return h


def _data_files(sha: str) -> list[str]:
    return sorted(p for p in COMMITS[sha] if p.endswith((".jsonl.gz", ".parquet")))


def _download(repo_rev: str, **kw) -> str:
    return hub_lib.snapshot_download(REPO, repo_type="dataset", revision=repo_rev, **kw)


# -- listing -------------------------------------------------------------------------------------

def test_lists_the_data_files_at_the_resolved_commit(hub):
    root, files = list_hub_files(f"hf://datasets/{REPO}")
    assert root == f"hf://datasets/{REPO}@{MAIN}"
    assert [rel for _, rel, _, _ in files] == _data_files(MAIN)  # no README, .gitattributes, metadata, csv
    for open_path, rel, size, mtime_ns in files:
        assert open_path == f"{root}/{rel}"  # nothing cached: streamed through fsspec
        assert size == len(COMMITS[MAIN][rel]) and mtime_ns == HUB_MTIME_NS


def test_a_revision_pins_the_files(hub):
    root_v1, v1 = list_hub_files(f"hf://datasets/{REPO}@v1")
    root_main, main = list_hub_files(f"hf://datasets/{REPO}@main")
    assert root_v1.endswith("@" + V1) and root_main.endswith("@" + MAIN)
    assert [f[1] for f in v1] == _data_files(V1) != [f[1] for f in main]
    assert list_hub_files(f"hf://datasets/{REPO}@{V1}") == (root_v1, v1)  # a commit names itself
    keys_v1 = {s.rel: s.key for s in discover(f"hf://datasets/{REPO}@v1")}
    keys_main = {s.rel: s.key for s in discover(f"hf://datasets/{REPO}")}
    assert all(keys_v1[rel] != keys_main[rel] for rel in keys_v1)  # another commit: other outputs


def test_a_glob_or_folder_selects_files(hub):
    _, parquet = list_hub_files(f"hf://datasets/{REPO}/data/**/*.parquet")
    assert [f[1] for f in parquet] == ["data/en/part-1.parquet"]
    _, fr = list_hub_files(f"hf://datasets/{REPO}@main/data/fr")
    assert [f[1] for f in fr] == ["data/fr/part-0.jsonl.gz"]
    _, gz = list_hub_files(f"hf://datasets/{REPO}/data/*/*.jsonl.gz")
    assert [f[1] for f in gz] == ["data/en/part-0.jsonl.gz", "data/fr/part-0.jsonl.gz"]
    with pytest.raises(ConfigError, match=r"no data files llama-audit reads .*'data/fr/notes.csv'"):
        list_hub_files(f"hf://datasets/{REPO}/data/fr/*.csv")


def test_shards_are_keyed_by_commit_and_path_not_by_machine(hub, tmp_path, monkeypatch):
    before = [(s.rel, s.key, s.root, s.size, s.format) for s in discover(f"hf://datasets/{REPO}")]
    assert [f for *_, f in before] == ["jsonl.gz", "parquet", "jsonl.gz"]
    hub.home(tmp_path / "other_home")  # another machine: another cache, another working directory
    monkeypatch.chdir(tmp_path)
    _download("main")
    cached = discover(f"hf://datasets/{REPO}")
    assert all(os.path.isfile(s.path) and s.path.startswith(str(tmp_path / "other_home")) for s in cached)
    assert [(s.rel, s.key, s.root, s.size, s.format) for s in cached] == before


def test_offline_reads_the_cache_with_the_same_keys(hub):
    online = [(s.rel, s.key, s.root, s.size) for s in discover(f"hf://datasets/{REPO}@v1")]
    _download("v1")
    hub.offline()
    FakeHub.requests.clear()
    shards = discover(f"hf://datasets/{REPO}@v1")
    assert FakeHub.requests == []  # the Hub is not asked
    assert [(s.rel, s.key, s.root, s.size) for s in shards] == online
    for s in shards:
        assert Path(s.path).read_bytes() == COMMITS[V1][s.rel]


def test_offline_without_the_cache_is_one_line(hub):
    hub.offline()
    with pytest.raises(ConfigError) as e:
        list_hub_files(f"hf://datasets/{REPO}")
    assert str(e.value) == (f"hf://datasets/{REPO}: not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
                            "run once online or unset it")
    assert FakeHub.requests == []


def test_offline_with_part_of_the_files_cached_names_what_is_missing(hub):
    _download("v1", allow_patterns=["*.jsonl.gz"])
    hub.offline()
    with pytest.raises(ConfigError, match=r"1 of its 2 data file\(s\) are not in the local Hugging Face cache "
                                          r"\(e\.g\. 'data/en/part-1.parquet'\) and HF_HUB_OFFLINE is set"):
        list_hub_files(f"hf://datasets/{REPO}@v1")
    _, only_gz = list_hub_files(f"hf://datasets/{REPO}@v1/**/*.jsonl.gz")  # what is cached is enough
    assert [f[1] for f in only_gz] == ["data/en/part-0.jsonl.gz"]


@pytest.mark.parametrize("url, message", [
    (f"hf://datasets/{REPO}@nope", f"no revision 'nope' in dataset {REPO}"),
    (f"hf://datasets/{REPO}@{'0' * 40}", f"no revision '{'0' * 40}' in dataset {REPO}"),
    ("hf://datasets/acme/missing", "no dataset acme/missing on http://127.0.0.1"),
    (f"hf://{REPO}", "only dataset repositories hold corpora"),
    ("hf://datasets/justaname", "not a Hub dataset URL"),
])
def test_bad_names_are_one_line(hub, url, message):
    with pytest.raises(ConfigError) as e:
        list_hub_files(url)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_without_huggingface_hub_the_extra_is_named(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "huggingface_hub", None)
    with pytest.raises(ConfigError, match=r"pip install 'llama-audit\[hf\]'"):
        list_hub_files(f"hf://datasets/{REPO}")


# -- scanning through the command line ------------------------------------------------------------

FAST = ("--analyzers", "pronouns,identities", "--languages", "all", "--quiet")


def _cli(*args):
    from click.testing import CliRunner

    from llama_audit.cli import command

    return CliRunner().invoke(command(), [str(a) for a in args])


def _outputs(out: Path) -> dict[str, bytes]:
    """Annotation and partial files by key, and the done markers' record counts."""
    found = {f"{d}/{p.name}": p.read_bytes() for d in ("annotations", "partials") for p in sorted((out / d).iterdir())}
    for p in sorted((out / "done").iterdir()):
        rec = json.loads(p.read_text())
        found[f"done/{p.name}"] = json.dumps({k: rec[k] for k in ("shard", "size", "documents", "bad_records",
                                                                  "fingerprint")}).encode()
    return found


def _by_rel(found: dict[str, bytes]) -> dict[str, bytes]:
    """Outputs keyed by the shard name in the key (the key's hash names where the file was)."""
    return {re.sub(r"-[0-9a-f]{8}(\.\w+)$", r"\1", k): v for k, v in found.items()}


def test_scanning_the_hub_equals_scanning_the_same_files_locally(hub, tmp_path):
    local = tmp_path / "local"
    for rel in _data_files(V1):
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / rel).write_bytes(COMMITS[V1][rel])
    r = _cli("scan", local, "--out", tmp_path / "out_local", *FAST)
    assert r.exit_code == 0, r.output
    r = _cli("scan", f"hf://datasets/{REPO}@v1", "--out", tmp_path / "out_hub", *FAST)  # streamed: nothing cached
    assert r.exit_code == 0, r.output
    assert not (hub.cache / "datasets--acme--corpus" / "snapshots").exists()
    hub_out = _outputs(tmp_path / "out_hub")
    assert _by_rel(hub_out) == _by_rel(_outputs(tmp_path / "out_local"))
    # resume: a rerun from the cache, offline, finds every shard done (the same keys)
    _download("v1")
    hub.offline()
    FakeHub.requests.clear()
    r = _cli("scan", f"hf://datasets/{REPO}@v1", "--out", tmp_path / "out_hub", *FAST)
    assert r.exit_code == 0, r.output
    assert FakeHub.requests == [] and _outputs(tmp_path / "out_hub") == hub_out
    plan = json.loads((tmp_path / "out_hub" / "plan.json").read_text())
    assert [e["key"] for e in plan["shards"]] == [s.key for s in discover(f"hf://datasets/{REPO}@v1")]


def test_offline_without_the_cache_exits_2_in_one_line(hub, tmp_path):
    hub.offline()
    r = _cli("scan", f"hf://datasets/{REPO}", "--out", tmp_path / "out", *FAST)
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [
        f"error: hf://datasets/{REPO}: not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
        "run once online or unset it"]
    assert not (tmp_path / "out").exists()


# -- --hf-dataset: a split streamed through datasets ------------------------------------------------

STREAM_DOCS = [*_docs("s", 6), {"id": "s-null", "text": None}, {"id": "s-none"}]


@pytest.fixture
def local_dataset(tmp_path, monkeypatch):
    """A folder ``datasets`` loads by itself (data/train.jsonl, data/test.jsonl), read offline."""
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    folder = tmp_path / "dataset"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in STREAM_DOCS))
    (folder / "data" / "test.jsonl").write_text(json.dumps(_docs("t", 1)[0]) + "\n")
    return folder


def test_a_streamed_split_scans_like_its_file(local_dataset, tmp_path):
    r = _cli("scan", local_dataset / "data" / "train.jsonl", "--out", tmp_path / "out_file", *FAST)
    assert r.exit_code == 0, r.output
    r = _cli("scan", "--hf-dataset", local_dataset, "--hf-split", "train", "--out", tmp_path / "out_stream", *FAST)
    assert r.exit_code == 0, r.output
    stream, direct = (pq.read_table(next((tmp_path / o / "annotations").iterdir())) for o in ("out_stream", "out_file"))
    assert stream.column("shard").unique().to_pylist() == ["default/train"]
    assert stream.drop_columns(["shard"]).equals(direct.drop_columns(["shard"]))
    partial = {o: next((tmp_path / o / "partials").iterdir()).read_bytes() for o in ("out_stream", "out_file")}
    assert partial["out_stream"] == partial["out_file"]  # documents, bad records (missing_text) and every count
    done = json.loads(next((tmp_path / "out_stream" / "done").iterdir()).read_text())
    assert (done["documents"], done["bad_records"]) == (6, 2)
    # a rerun resumes: the split is done
    r = _cli("scan", "--hf-dataset", local_dataset, "--hf-split", "train", "--out", tmp_path / "out_stream", *FAST)
    assert r.exit_code == 0 and json.loads(next((tmp_path / "out_stream" / "done").iterdir()).read_text()) == done


@pytest.mark.parametrize("args, message", [
    (["--hf-split", "validation"], "no split 'validation' (splits: train, test)"),
    (["--hf-config", "nope", "--hf-split", "train"], "BuilderConfig 'nope' not found"),
    ([], "give --hf-split"),
])
def test_a_missing_split_or_config_is_one_line(local_dataset, tmp_path, args, message):
    r = _cli("scan", "--hf-dataset", local_dataset, *args, "--out", tmp_path / "out", *FAST)
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert message in r.stderr and not (tmp_path / "out").exists()


def test_filter_refuses_a_streamed_split_in_one_line(local_dataset):
    from llama_audit.corpus import format_for
    from llama_audit.corpus.hf_stream import stream_shard
    from llama_audit.corpus.records import ShardUnreadable

    shard = stream_shard(str(local_dataset), None, "train")
    assert [row for row, _ in format_for(shard.format).records(shard)] == list(range(len(STREAM_DOCS)))
    with pytest.raises(ShardUnreadable, match="filter needs file inputs"):
        format_for(shard.format).rewrite(shard, Path("unused"), None, {}, "text")


def test_a_cached_tree_listing_spares_the_listing_request(hub):
    _download("v1")
    FakeHub.requests.clear()
    root, files = list_hub_files(f"hf://datasets/{REPO}@v1")
    assert [r.split("?")[0] for r in FakeHub.requests] == ["GET /api/datasets/acme/corpus/revision/v1"]
    assert root.endswith(V1) and all(os.path.isfile(p) for p, *_ in files)


def test_offline_without_a_cached_tree_lists_the_cached_snapshot(hub):
    for rel in _data_files(V1):  # fetched one by one: no tree listing is cached
        hub_lib.hf_hub_download(REPO, rel, repo_type="dataset", revision="v1")
    hub.offline()
    root, files = list_hub_files(f"hf://datasets/{REPO}@v1")
    assert root.endswith(V1)
    assert [(rel, size) for _, rel, size, _ in files] == [(rel, len(COMMITS[V1][rel])) for rel in _data_files(V1)]


def test_an_old_huggingface_hub_asks_for_the_upgrade(monkeypatch):
    import types

    old = types.SimpleNamespace(__version__="0.23.0", HfApi=hub_lib.HfApi, RepoFile=hub_lib.RepoFile,
                                try_to_load_from_cache=hub_lib.try_to_load_from_cache)  # before the URI and tree cache APIs
    monkeypatch.setitem(__import__("sys").modules, "huggingface_hub", old)
    with pytest.raises(ConfigError, match=r"need huggingface_hub 2\.4 or later .*pip install -U 'llama-audit\[hf\]'"):
        list_hub_files(f"hf://datasets/{REPO}")


@pytest.mark.parametrize("args, message", [
    (["a.jsonl", "--hf-dataset", "acme/corpus", "--hf-split", "train"], "give the corpus as CORPUS paths or as --hf-dataset"),
    ([], "give the corpus as CORPUS paths or as --hf-dataset"),
    (["a.jsonl", "--hf-split", "train"], "--hf-config and --hf-split are for --hf-dataset NAME"),
])
def test_hf_dataset_options_misused_are_one_line(tmp_path, args, message):
    r = _cli("scan", *args, "--out", tmp_path / "out", *FAST)
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {message}")
    assert not (tmp_path / "out").exists()
