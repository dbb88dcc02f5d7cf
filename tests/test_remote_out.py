"""An OUT (and filter's CLEAN) on object storage (llama_audit/remote_out.py), against a real S3 API
on loopback (the moto_server fixture of conftest.py) through s3fs: the bucket must hold the bytes
a local OUT holds, resume from another machine's (a fresh) staging directory, lock like a local OUT,
and fail in one line."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from llama_audit.job import ScanRequest, run_scan
from llama_audit.types import ConfigError

pytest.importorskip("s3fs")

ANALYZERS = ["pronouns", "identities"]
TEXTS = ["She likes the Catholic church.", "He is Jewish and gay.", "They said you and I are American.", "Hi.",
         "Call me at jane.doe@example.com"]
BOOKS = ("annotations", "partials", "summary")


def _corpus(root, shards=3, rows=40):
    (root / "corpus").mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        lines = [json.dumps({"id": f"{s}-{i}", "text": TEXTS[(s + i) % len(TEXTS)]}) for i in range(rows)]
        (root / "corpus" / f"part-{s:03d}.jsonl").write_text("\n".join(lines) + "\n")
    return root / "corpus"


def _request(corpus, out, **kw):
    return ScanRequest(paths=[str(corpus)], out=str(out), analyzers=ANALYZERS, languages=("all",), **kw)


def _local_files(out, subs=BOOKS) -> dict[str, bytes]:
    return {f"{sub}/{p.name}": p.read_bytes() for sub in subs if (out / sub).is_dir()
            for p in sorted((out / sub).iterdir()) if not p.name.startswith(".")}


def _bucket_files(url, subs=BOOKS) -> dict[str, bytes]:
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    fs.invalidate_cache()
    found = {}
    for sub in subs:
        for p in sorted(fs.find(f"{root}/{sub}")):
            found[p[len(root) + 1:]] = fs.cat_file(p)
    return found


def _cli(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "llama_audit.cli", *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=180, **kw)


@pytest.fixture
def staging(tmp_path, monkeypatch):
    """Staging directories of this test only (as a fresh machine has none)."""
    monkeypatch.setenv("LLAMA_AUDIT_STAGING", str(tmp_path / "staging"))
    return tmp_path / "staging"


def test_scan_into_bucket_gives_the_bytes_of_a_local_out_and_the_same_report(tmp_path, s3_bucket, staging):
    corpus = _corpus(tmp_path)
    run_scan(_request(corpus, tmp_path / "local"))
    url = f"s3://{s3_bucket}/audits/out"
    result = run_scan(_request(corpus, url))
    assert result.summary_written and not result.failed
    assert _bucket_files(url) == _local_files(tmp_path / "local")
    # report from a fresh staging directory (another machine): the local report's JSON, paths apart
    local = _cli("report", tmp_path / "local", "--format", "json")
    remote = _cli("report", url, "--format", "json", env={"LLAMA_AUDIT_STAGING": str(tmp_path / "other")})
    assert local.returncode == 0 and remote.returncode == 0, remote.stderr
    a, b = json.loads(local.stdout), json.loads(remote.stdout)
    for report in (a, b):  # when each scan ran differs; everything else must not
        for key in ("started", "finished"):
            report["provenance"].pop(key)
    assert a == b


def _lease_object(url, name, record):
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    fs.pipe_file(f"{root}/.lock/{name}", json.dumps(record).encode())
    return f"{root}/.lock/{name}"


def _holder(host, pid, config_hash="0" * 16):
    return {"host": host, "pid": pid, "pid_start": None, "since": "2026-01-01T00:00:00+00:00", "since_fs": 0,
            "purpose": "scan", "config_hash": config_hash, "token": "t0"}


def test_a_scan_of_another_configuration_is_refused_while_a_live_lease_names_it(tmp_path, s3_bucket, staging):
    corpus = _corpus(tmp_path, shards=1, rows=5)
    url = f"s3://{s3_bucket}/out"
    _lease_object(url, "scan.elsewhere.4242.abcd.json", _holder("elsewhere", 4242))
    with pytest.raises(ConfigError, match=r"s3://.*/out is being scanned with another configuration by elsewhere pid 4242"):
        run_scan(_request(corpus, url))
    assert not _bucket_files(url), "nothing written while refused"


def test_a_lease_of_a_dead_process_or_past_its_expiry_is_taken_over(tmp_path, s3_bucket, staging, monkeypatch):
    import fsspec
    import socket

    from llama_audit import remote_out

    corpus = _corpus(tmp_path, shards=1, rows=5)
    url = f"s3://{s3_bucket}/out"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    here = _lease_object(url, "scan.here.1.json", _holder(socket.gethostname(), dead.pid))  # this host: pid gone
    monkeypatch.setattr(remote_out, "LEASE_TTL_S", 1.0)
    far = _lease_object(url, "scan.far.2.json", _holder("elsewhere", 4242))  # another host: silent too long
    time.sleep(2.2)  # S3 write times have whole seconds: the store's clock must show an age over 1 s
    result = run_scan(_request(corpus, url))
    assert result.summary_written
    fs, _ = fsspec.core.url_to_fs(url)
    fs.invalidate_cache()
    assert not fs.exists(here) and not fs.exists(far)
    assert not fs.find(f"{s3_bucket}/out/.lock"), "this run's own gate and lease are gone too"


def test_a_scan_killed_midway_resumes_from_a_fresh_staging_directory_to_the_same_bytes(tmp_path, s3_bucket,
                                                                                        monkeypatch):
    """Workers pause at their 2nd done marker (the documented test hook) while the parent uploads
    the shards finished so far; a scan of another configuration is refused meanwhile; the group is
    SIGKILLed; another machine (a fresh staging directory) resumes: the bucket's markers are
    trusted, the shards without one are redone, and the bytes are those of a local scan."""
    import fsspec

    corpus = _corpus(tmp_path, shards=8, rows=30)
    run_scan(_request(corpus, tmp_path / "local"))
    url = f"s3://{s3_bucket}/out"
    fs, root = fsspec.core.url_to_fs(url)
    flag = tmp_path / "paused"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LLAMA_AUDIT_TEST_PAUSE_AT": "write:done@2",
           "LLAMA_AUDIT_TEST_PAUSE_FILE": str(flag), "LLAMA_AUDIT_STAGING": str(tmp_path / "first")}
    proc = subprocess.Popen([sys.executable, "-m", "llama_audit.cli", "scan", corpus, "--out", url, "--workers", "2",
                             "--analyzers", ",".join(ANALYZERS), "--languages", "all", "-q"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            fs.invalidate_cache()
            if flag.exists() and len(fs.glob(f"{root}/done/*.json")) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()
        monkeypatch.setenv("LLAMA_AUDIT_STAGING", str(tmp_path / "third"))
        with pytest.raises(ConfigError, match=f"is being scanned with another configuration by .* pid {proc.pid} "):
            run_scan(ScanRequest(paths=[str(corpus)], out=url, analyzers=["pronouns"], languages=("all",)))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    fs.invalidate_cache()
    marked = len(fs.glob(f"{root}/done/*.json"))
    assert 2 <= marked < 8
    monkeypatch.setenv("LLAMA_AUDIT_STAGING", str(tmp_path / "second"))  # another machine
    resumed = run_scan(_request(corpus, url))
    assert resumed.shards_skipped == marked and resumed.shards_run == 8 - marked and not resumed.failed
    assert _bucket_files(url) == _local_files(tmp_path / "local")
    manifest = json.loads(fs.cat_file(f"{root}/manifest.json"))
    assert manifest["summary"]["complete"] and manifest["runs"][-1]["shards_scanned"] == 8 - marked
    assert manifest["runs"][-1]["out"] == url


def test_slices_merge_and_filter_into_a_bucket_give_the_local_bytes(tmp_path, s3_bucket, monkeypatch):
    import fsspec

    from llama_audit.filter import FilterRequest, run_filter

    corpus = _corpus(tmp_path, shards=4, rows=20)
    run_scan(_request(corpus, tmp_path / "local"))
    url = f"s3://{s3_bucket}/out"
    fs, root = fsspec.core.url_to_fs(url)
    for index in (0, 1):  # two Slurm slices on two machines (their own staging directories)
        monkeypatch.setenv("LLAMA_AUDIT_STAGING", str(tmp_path / f"slice{index}"))
        run_scan(_request(corpus, url, num_shards=2, shard_index=index))
    assert _bucket_files(url) == _local_files(tmp_path / "local")
    fs.rm(f"{root}/summary", recursive=True)
    merged = _cli("merge", url, env={"LLAMA_AUDIT_STAGING": str(tmp_path / "merger")})
    assert merged.returncode == 0 and "4 of 4 shards done" in merged.stderr + merged.stdout, merged.stderr
    assert _bucket_files(url) == _local_files(tmp_path / "local")

    monkeypatch.setenv("LLAMA_AUDIT_STAGING", str(tmp_path / "filterer"))
    rule = ["len(pronoun_groups) > 0"]
    local = run_filter(FilterRequest(out=str(tmp_path / "local"), clean=str(tmp_path / "clean"), drop=rule))
    clean = f"s3://{s3_bucket}/clean"
    remote = run_filter(FilterRequest(out=url, clean=clean, drop=rule))
    assert (remote.kept, remote.dropped) == (local.kept, local.dropped) and 0 < local.kept < 80
    cleaned = {p.relative_to(tmp_path / "clean").as_posix(): p.read_bytes()
               for p in sorted((tmp_path / "clean").rglob("*")) if p.is_file() and p.name != "filter_manifest.json"}
    fs.invalidate_cache()
    in_bucket = {p[len(f"{s3_bucket}/clean/"):]: fs.cat_file(p) for p in fs.find(f"{s3_bucket}/clean")}
    assert json.loads(in_bucket.pop("_llama_audit/filter_manifest.json"))["scan_out"] == url
    assert in_bucket == cleaned
    monkeypatch.setenv("LLAMA_AUDIT_STAGING", str(tmp_path / "another"))  # resumes from the bucket's markers
    again = run_filter(FilterRequest(out=url, clean=clean, drop=rule))
    assert again.shards_skipped == 4 and again.kept == local.kept
    with pytest.raises(ConfigError, match="must differ from the scan's OUT"):
        run_filter(FilterRequest(out=url, clean=url + "/", drop=rule))


def test_a_bucket_gone_midway_fails_the_shards_in_one_line_and_a_missing_bucket_is_refused(tmp_path, s3_bucket,
                                                                                            staging):
    import fsspec

    from llama_audit.job import Hooks
    from llama_audit.store import OutputWriteError

    corpus = _corpus(tmp_path, shards=4, rows=10)
    url = f"s3://{s3_bucket}/out"
    fs, _ = fsspec.core.url_to_fs(url)

    class DeleteTheBucket(Hooks):
        def shard_finished(self, outcome):
            for _ in range(50):  # uploads of the shards before may still be landing
                fs.invalidate_cache()
                if not fs.exists(s3_bucket):
                    return
                try:
                    fs.rm(s3_bucket, recursive=True)
                    fs.rmdir(s3_bucket)
                except OSError:
                    time.sleep(0.05)

    with pytest.raises(OutputWriteError) as caught:
        run_scan(_request(corpus, url), DeleteTheBucket())
    message = str(caught.value)
    assert message.count("\n") == 0 and f"could not write {url}" in message and "recorded as failed" in message
    assert str(staging) not in message
    missing = _cli("scan", corpus, "--out", f"s3://{s3_bucket}/out", "--analyzers", "pronouns", "--languages", "all",
                   "-q")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    assert missing.stderr.startswith(f"error: s3://{s3_bucket}/out cannot be written (")


def test_no_credential_reaches_an_output_a_log_or_the_manifest(tmp_path, s3_bucket, staging):
    import fsspec

    secret = "Sup3rS3cretKeyThatMustNotLeak"
    fs = fsspec.filesystem("s3")
    corpus = _corpus(tmp_path, shards=2, rows=5)
    url = f"s3://{s3_bucket}/out"
    env = {"AWS_SECRET_ACCESS_KEY": secret, "AWS_ACCESS_KEY_ID": "AKIDLEAKCHECK"}  # moto accepts any key
    runs = [_cli("scan", corpus, "--out", url, "--analyzers", "pronouns", "--languages", "all", env=env),
            _cli("report", url, "--format", "json", env=env)]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr
    texts = [r.stdout + r.stderr for r in runs]
    fs.invalidate_cache()
    texts += [fs.cat_file(p).decode("utf-8", "replace") for p in fs.find(s3_bucket)]
    texts += [p.read_bytes().decode("utf-8", "replace") for p in staging.rglob("*") if p.is_file()]
    assert not [t for t in texts if secret in t or "AKIDLEAKCHECK" in t]
    manifest = json.loads(fs.cat_file(f"{s3_bucket}/out/manifest.json"))
    assert manifest["runs"][-1]["out"] == url
    with pytest.raises(ConfigError, match="credentials in a URL are not accepted"):
        run_scan(_request(corpus, f"s3://user:{secret}@{s3_bucket}/out"))


def test_a_store_without_conditional_writes_locks_by_write_then_read_back(tmp_path, monkeypatch):
    """A backend that refuses ``mode="create"`` (as stores without If-None-Match do): the lock
    objects are created by write-then-read-back, the gate still excludes a second holder, and a
    whole scan works through it (fsspec's in-memory store with conditional writes refused)."""
    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem

    from llama_audit.lease import LockHeld
    from llama_audit.remote_out import Bucket, RemoteLock

    class WithoutConditionalWrites(MemoryFileSystem):
        protocol = "nocond"

        def pipe_file(self, path, value, mode="overwrite", **kwargs):
            if mode != "overwrite":
                raise NotImplementedError("this store has no conditional writes")
            return super().pipe_file(path, value, **kwargs)

    fsspec.register_implementation("nocond", WithoutConditionalWrites, clobber=True)
    monkeypatch.setenv("LLAMA_AUDIT_STAGING", str(tmp_path / "staging"))
    url = f"nocond://{tmp_path.name}/out"
    first, second = RemoteLock(Bucket(url), None), RemoteLock(Bucket(url), None)
    with first.gate("merge", local=False):
        assert first._conditional is False
        with pytest.raises(LockHeld, match=r"nocond://.*/out is locked by .* pid \d+ \(merge, since "):
            with second.gate("merge", wait_s=0.3, local=False):
                pass
    with second.gate("merge", local=False):  # released: the next holder gets it
        pass
    corpus = _corpus(tmp_path, shards=2, rows=5)
    run_scan(_request(corpus, tmp_path / "local"))
    assert run_scan(_request(corpus, url)).summary_written
    assert _bucket_files(url) == _local_files(tmp_path / "local")


def test_the_bucket_is_the_truth_for_staged_markers_and_annotations(tmp_path, s3_bucket, staging):
    """A marker staged here that the bucket lacks (a run killed before pushing it) is not done; a
    marker in the bucket whose annotations object is gone is damaged: both shards are redone, the
    warning names the OUT URL, and the bucket ends with the bytes of a local scan."""
    import fsspec

    from llama_audit.job import Hooks

    corpus = _corpus(tmp_path, shards=3, rows=10)
    run_scan(_request(corpus, tmp_path / "local"))
    url = f"s3://{s3_bucket}/out"
    run_scan(_request(corpus, url))
    fs, root = fsspec.core.url_to_fs(url)
    keys = sorted(p.rsplit("/", 1)[1][:-len(".json")] for p in fs.glob(f"{root}/done/*.json"))
    fs.rm_file(f"{root}/done/{keys[0]}.json")  # staged, never pushed
    fs.rm_file(f"{root}/annotations/{keys[1]}.parquet")  # marker in the bucket, annotations gone

    class Warnings(Hooks):
        said: list = []

        def warn(self, message):
            self.said.append(message)

    hooks = Warnings()
    again = run_scan(_request(corpus, url), hooks)
    assert (again.shards_run, again.shards_skipped) == (2, 1)
    assert any(f"are damaged (annotations file missing)" in m and url in m for m in hooks.said), hooks.said
    assert not any(str(staging) in m for m in hooks.said)
    assert _bucket_files(url) == _local_files(tmp_path / "local")


def test_merge_of_a_url_without_a_scan_names_the_url_not_the_staging_directory(s3_bucket, staging):
    from llama_audit.remote_out import merge

    url = f"s3://{s3_bucket}/never-scanned"
    with pytest.raises(ConfigError) as caught:
        merge(url)
    message = str(caught.value)
    assert url in message and str(staging) not in message and "\n" not in message


def test_a_staged_marker_the_bucket_lacks_never_makes_the_bucket_say_complete(tmp_path, s3_bucket, staging):
    """Another process of this host (same staging directory) finished a shard and died before
    uploading it: its marker is staged, the bucket lacks it. A slice that ends meanwhile must not
    push a manifest and summary calling the OUT complete while a shard's objects are missing."""
    import shutil

    import fsspec

    from llama_audit.job import Hooks
    from llama_audit.remote_out import staging_dir

    corpus = _corpus(tmp_path, shards=2, rows=10)
    run_scan(_request(corpus, tmp_path / "local"))
    other = sorted(p.stem for p in (tmp_path / "local/done").iterdir())[1]  # the shard of slice 1
    url = f"s3://{s3_bucket}/out"

    class DeadNeighbour(Hooks):  # slice 1 ran on this host and was killed before its upload
        def shard_finished(self, outcome):
            for sub, suffix in (("annotations", ".parquet"), ("partials", ".parquet"), ("done", ".json")):
                shutil.copy(tmp_path / "local" / sub / f"{other}{suffix}", staging_dir(url) / sub)

    run_scan(_request(corpus, url, num_shards=2, shard_index=0), DeadNeighbour())
    fs, root = fsspec.core.url_to_fs(url)
    fs.invalidate_cache()
    assert not fs.exists(f"{root}/done/{other}.json")
    if fs.exists(f"{root}/manifest.json"):
        assert not json.loads(fs.cat_file(f"{root}/manifest.json"))["summary"]["complete"]
    assert not fs.exists(f"{root}/summary/counts.parquet")
    # a later run of the missing slice (nothing else running here) redoes it: complete in the bucket
    done = run_scan(_request(corpus, url, num_shards=2, shard_index=1))
    assert done.shards_run == 1 and done.summary_written
    assert _bucket_files(url) == _local_files(tmp_path / "local")


def test_filter_of_a_remote_out_keeps_its_staged_annotations_within_the_budget(tmp_path, s3_bucket, staging,
                                                                               monkeypatch):
    """A 40 TB corpus has terabytes of annotations: filter's staging must not keep them all. Over
    the budget, the annotations fetched longest ago become footer stubs again (fetched again
    when needed); the cleaned corpus is the local one's."""
    import pyarrow.parquet as pq

    from llama_audit import remote_out
    from llama_audit.filter import FilterRequest, run_filter

    corpus = _corpus(tmp_path, shards=4, rows=20)
    run_scan(_request(corpus, tmp_path / "local"))
    url = f"s3://{s3_bucket}/out"
    run_scan(_request(corpus, url))
    monkeypatch.setattr(remote_out, "FILTER_STAGED_BYTES", 1, raising=False)  # every fetch evicts the one before
    rule = ["len(pronoun_groups) > 0"]
    local = run_filter(FilterRequest(out=str(tmp_path / "local"), clean=str(tmp_path / "clean"), drop=rule))
    remote = run_filter(FilterRequest(out=url, clean=str(tmp_path / "clean-remote"), drop=rule))
    assert (remote.kept, remote.dropped, remote.shards_done) == (local.kept, local.dropped, 4)
    for p in sorted((tmp_path / "clean").glob("*.jsonl")):
        assert (tmp_path / "clean-remote" / p.name).read_bytes() == p.read_bytes()
    staged = [p for p in staging.rglob("annotations/*.parquet")]
    whole = [p for p in staged if p.parent.parent.name.endswith("-filter")
             and p.stat().st_size == (tmp_path / "local/annotations" / p.name).stat().st_size]
    assert len(whole) <= 1, whole  # the last one fetched, at most
    assert all(pq.read_metadata(p).num_rows == 20 for p in staged)  # stubs still tell the row counts


def test_uploads_wait_for_room_so_staging_holds_a_bounded_number_of_finished_shards(tmp_path, s3_bucket, staging,
                                                                                     monkeypatch):
    """Scanning faster than the network uploads: the scan waits once UPLOAD_QUEUE_SHARDS shards are
    queued (their files stay in staging until uploaded), instead of filling the staging disk."""
    import threading

    from llama_audit import remote_out
    from llama_audit.store import OutDir

    monkeypatch.setattr(remote_out, "UPLOAD_QUEUE_SHARDS", 2)
    gate = threading.Event()

    class SlowBucket(remote_out.Bucket):
        def put(self, local, rel):  # the real upload, once the network "frees up"
            assert gate.wait(30)
            super().put(local, rel)

    url = f"s3://{s3_bucket}/audit"
    bucket = SlowBucket(url)
    out = OutDir(bucket.staging)
    keys = [f"k{i}" for i in range(4)]
    for key in keys:
        out.error_path(key).parent.mkdir(parents=True, exist_ok=True)
        out.error_path(key).write_text(json.dumps({"key": key, "error": "x"}))
    uploads = remote_out.Uploads(bucket, out, threads=1)
    uploads.shard_finished(keys[0], "failed")
    uploads.shard_finished(keys[1], "failed")
    third = threading.Thread(target=uploads.shard_finished, args=(keys[2], "failed"))
    third.start()
    third.join(0.5)
    assert third.is_alive()  # two shards queued: the third waits for room
    gate.set()
    third.join(30)
    assert not third.is_alive()
    uploads.shard_finished(keys[3], "failed")
    assert uploads.failures(wait=True) == []
    uploads.close()
    assert {f"errors/{k}.json" for k in keys} <= set(bucket.listing())


def test_load_audit_of_a_bucket_out_equals_the_local_audit(tmp_path, s3_bucket, staging):
    """A notebook on an OUT in a bucket: the same tables and annotations as the same scan's local OUT,
    the annotations read from the bucket by range requests (nothing downloaded whole)."""
    pytest.importorskip("pandas")
    from llama_audit.notebook import load_audit

    corpus = _corpus(tmp_path)
    run_scan(_request(corpus, tmp_path / "local"))
    url = f"s3://{s3_bucket}/audits/nb"
    run_scan(_request(corpus, url))
    local, remote = load_audit(str(tmp_path / "local")), load_audit(url)
    assert remote.out == url and repr(remote).startswith(f"<Audit {url}:")
    assert remote.pronouns().equals(local.pronouns())
    assert remote.identities().equals(local.identities())
    a = local.annotations().to_table().sort_by("doc_id")
    b = remote.annotations().to_table().sort_by("doc_id")
    assert a.equals(b) and a.num_rows > 0
    assert remote.annotations(columns=["doc_id"]).count_rows() == a.num_rows
    diff = remote.diff(local)
    assert not diff["pronouns"].empty and (diff["pronouns"]["documents_delta"] == 0).all()


def test_html_report_of_a_bucket_out_embeds_its_figures_and_leaves_no_files_behind(tmp_path, s3_bucket, staging):
    """The page is self-contained (figures embedded); the figure files a local OUT gets in
    OUT/report/ are not written into a hidden staging directory (they go where --figures says)."""
    pytest.importorskip("matplotlib")
    from llama_audit.remote_out import staging_dir
    from llama_audit.store import OutDir

    url = f"s3://{s3_bucket}/audits/html"
    run_scan(_request(_corpus(tmp_path), url))
    env = {"LLAMA_AUDIT_STAGING": str(tmp_path / "other")}
    res = _cli("report", url, "--format", "html", env=env)
    assert res.returncode == 0, res.stderr
    assert "<img" in res.stdout or "<svg" in res.stdout
    staged = tmp_path / "other" / staging_dir(url, None, "report").name
    assert (staged / "manifest.json").is_file()  # where report staged the bookkeeping
    assert not OutDir(str(staged)).figures.exists()
    asked = _cli("report", url, "--format", "html", "--figures", tmp_path / "figs", env=env)
    assert asked.returncode == 0 and any((tmp_path / "figs").glob("*.svg")), asked.stderr


def test_a_diff_against_a_bucket_out_names_the_url_not_the_staging_directory(tmp_path, s3_bucket, staging):
    """`report URL --against OLD` and `load_audit(URL).diff(OLD)`: the diff's header names the
    audits the user gave (the URL, without credentials), never the hidden staging directory."""
    pytest.importorskip("pandas")
    from llama_audit.notebook import load_audit

    corpus = _corpus(tmp_path)
    local = tmp_path / "local"
    run_scan(_request(corpus, local))
    url = f"s3://{s3_bucket}/audits/against"
    run_scan(_request(corpus, url))
    res = _cli("report", url, "--against", local, "--format", "json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["against"] == {"old": str(local), "new": url}
    res = _cli("report", local, "--against", url, "--format", "md")
    assert res.returncode == 0 and url in res.stdout and str(staging) not in res.stdout, res.stdout
    assert load_audit(url).diff(str(local)).raw["against"] == {"old": str(local), "new": url}
    assert load_audit(str(local)).diff(load_audit(url)).raw["against"] == {"old": url, "new": str(local)}
