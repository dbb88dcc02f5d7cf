"""Scan jobs: outputs, resume, configuration lock-in, strict mode, slices + merge, determinism."""

import json
import os

import pyarrow.parquet as pq
import pytest

from llama_audit.job import ScanRequest, run_scan
from llama_audit.manifest import merge
from llama_audit.report.tables import build_report
from llama_audit.scan import ReadOptions, StrictError
from llama_audit.store import OutDir
from llama_audit.types import ConfigError

TEXTS = ["She likes the Catholic church.", "He is Jewish and gay.", "They said you and I are American.",
         "No pronoun here.", "An e-mail: a@b.example", ""]


def corpus(make_jsonl, shards=3, per=4):
    for s in range(shards):
        make_jsonl(f"part-{s}.jsonl", [{"id": f"{s}-{i}", "text": TEXTS[(s + i) % len(TEXTS)]} for i in range(per)])


def req(tmp_path, **kw):
    base = dict(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "out"),
                analyzers=["language", "pronouns", "identities"], languages=("all",))
    base.update(kw)
    return ScanRequest(**base)


def test_outputs_layout_and_annotation_columns(tmp_path, make_jsonl):
    corpus(make_jsonl)
    res = run_scan(req(tmp_path))
    assert res.exit_code == 0 and res.documents == 12 and res.summary_written
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "annotations").iterdir()) == sorted(p.name for p in (out / "partials").iterdir())
    t = pq.read_table(next((out / "annotations").glob("part-0*.parquet")))
    assert t.column_names[:4] == ["doc_id", "shard", "row", "chars"]
    assert {"lang", "lang_score", "pronoun_groups", "identity_axes", "identity_terms"} <= set(t.column_names)
    assert t["row"].to_pylist() == [0, 1, 2, 3]
    assert t["shard"].to_pylist()[0] == "part-0.jsonl"
    m = json.loads((out / "manifest.json").read_text())
    assert m["totals"] == {"shards": 3, "shards_done": 3, "shards_failed": 0, "shards_damaged": 0, "documents": 12,
                           "bad_records": 0}
    assert m["config"]["analyzers"]["language"]["model_sha256"].startswith("8f3472cf")
    assert m["config"]["analyzers"]["identities"]["lexicon_sha256"]
    assert "pyarrow" in m["dependencies"]
    assert all(s["status"] == "done" and s["fingerprint"] for s in m["shards"])


def test_resume_skips_done_shards_and_gives_identical_summary(tmp_path, make_jsonl):
    corpus(make_jsonl)
    run_scan(req(tmp_path))
    out = OutDir(tmp_path / "out")
    full = out.summary_path().read_bytes()
    # simulate a crash after one shard: remove two shards' done markers and outputs
    keys = sorted(p.stem for p in out.done.glob("*.json"))
    for k in keys[1:]:
        out.done_path(k).unlink()
        out.partial_path(k).unlink()
    out.summary_path().unlink()
    res = run_scan(req(tmp_path))
    assert res.shards_skipped == 1 and res.shards_run == 2
    assert out.summary_path().read_bytes() == full  # no double counting
    res = run_scan(req(tmp_path))
    assert res.shards_run == 0 and res.shards_skipped == 3


def test_same_input_same_bytes(tmp_path, make_jsonl):
    corpus(make_jsonl)
    run_scan(req(tmp_path, out=str(tmp_path / "o1")))
    run_scan(req(tmp_path, out=str(tmp_path / "o2")))
    for sub in ("annotations", "partials", "summary"):
        a = sorted((tmp_path / "o1" / sub).iterdir())
        b = sorted((tmp_path / "o2" / sub).iterdir())
        assert [p.name for p in a] == [p.name for p in b]
        assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))


def test_other_configuration_is_refused_unless_overwrite(tmp_path, make_jsonl):
    corpus(make_jsonl)
    run_scan(req(tmp_path))
    with pytest.raises(ConfigError, match="different configuration.*languages"):
        run_scan(req(tmp_path, languages=("en",)))
    (tmp_path / "out" / "errors").mkdir(exist_ok=True)
    (tmp_path / "out" / "errors" / "stale.json").write_text("{}")
    res = run_scan(req(tmp_path, languages=("en",), overwrite=True))
    assert res.shards_run == 3 and not (tmp_path / "out" / "errors" / "stale.json").exists()


def test_an_out_holding_no_shard_output_takes_the_new_configuration(tmp_path, make_jsonl):
    """A first run that wrote its config but no shard (e.g. a model failed to load) locks nothing."""
    corpus(make_jsonl)
    out = OutDir(tmp_path / "out")
    out.prepare({"analyzers": ["language"], "other": 1}, overwrite=False)
    with pytest.raises(ConfigError, match="different configuration"):  # that run may still be starting
        run_scan(req(tmp_path))
    out.manifest_path.write_text("{}")  # it ended (its manifest is written) with no shard output
    res = run_scan(req(tmp_path))
    assert res.shards_run == 3
    with pytest.raises(ConfigError, match="different configuration"):  # now there is something to protect
        run_scan(req(tmp_path, languages=("en",)))


def test_strict_stops_at_first_bad_record(tmp_path, make_jsonl):
    p = make_jsonl("a.jsonl", [{"text": "ok"}])
    with open(p, "a") as f:
        f.write("{not json\n")
    with pytest.raises(StrictError, match="record 2: malformed_json"):
        run_scan(req(tmp_path, strict=True))
    res = run_scan(req(tmp_path, out=str(tmp_path / "o2")))
    assert res.bad_records == 1 and res.documents == 1


def test_bad_records_counted_and_reported_never_lost(tmp_path, make_jsonl):
    p = make_jsonl("a.jsonl", [{"text": "one"}, {"text": "two"}])
    with open(p, "ab") as f:
        f.write(b'{"text": 5}\n{"no_text": "x"}\n[1]\n{"text": "\xff\xfe bad"}\n{"text": "three"}\n')
    run_scan(req(tmp_path))
    r = build_report(str(tmp_path / "out"))
    assert r["corpus"]["documents"] + r["corpus"]["bad_records"] == 7
    assert r["corpus"]["bad_records"] == 4
    m = json.loads((tmp_path / "out/manifest.json").read_text())
    rows = [b["row"] for b in m["shards"][0]["bad_samples"]]
    assert rows == [2, 3, 4, 5]


def test_failed_shard_does_not_stop_others(tmp_path, make_jsonl):
    corpus(make_jsonl, shards=2)
    bad = tmp_path / "corpus" / "broken.parquet"
    bad.write_bytes(b"this is not parquet")
    res = run_scan(req(tmp_path))
    assert res.exit_code == 1 and len(res.failed) == 1 and res.documents == 8
    m = json.loads((tmp_path / "out/manifest.json").read_text())
    assert [s["status"] for s in m["shards"]].count("error") == 1
    assert not res.summary_written
    r = build_report(str(tmp_path / "out"))  # partial report over finished shards
    assert r["corpus"]["complete"] is False and r["corpus"]["documents"] == 8
    bad.unlink()


def test_slices_then_merge_equals_single_run(tmp_path, make_jsonl):
    corpus(make_jsonl, shards=5)
    run_scan(req(tmp_path, out=str(tmp_path / "single")))
    for i in range(2):
        res = run_scan(req(tmp_path, out=str(tmp_path / "sliced"), num_shards=2, shard_index=i))
        assert res.shards_run == (3 if i == 0 else 2)
    merge(str(tmp_path / "sliced"))
    a = (tmp_path / "single/summary/counts.parquet").read_bytes()
    assert (tmp_path / "sliced/summary/counts.parquet").read_bytes() == a


def test_workers_pool_equals_in_process(tmp_path, make_jsonl):
    corpus(make_jsonl, shards=4)
    run_scan(req(tmp_path, out=str(tmp_path / "one")))
    res = run_scan(req(tmp_path, out=str(tmp_path / "pool"), workers=2))
    assert res.exit_code == 0 and res.shards_run == 4
    stats = json.loads((tmp_path / "pool/manifest.json").read_text())["runs"][-1]["analyzer_stats"]
    assert stats and all(k.startswith("worker ") and "language" in v for k, v in stats.items())
    assert (tmp_path / "pool/summary/counts.parquet").read_bytes() == (tmp_path / "one/summary/counts.parquet").read_bytes()


def test_no_temp_files_left(tmp_path, make_jsonl):
    corpus(make_jsonl)
    run_scan(req(tmp_path))
    leftovers = [p for p in (tmp_path / "out").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_unknown_analyzer_is_a_config_error(tmp_path, make_jsonl):
    corpus(make_jsonl)
    with pytest.raises(ConfigError, match="unknown analyzer 'nope'"):
        run_scan(req(tmp_path, analyzers=["nope"]))


def test_language_gate_without_language_model_is_an_error(tmp_path, make_jsonl):
    corpus(make_jsonl)
    with pytest.raises(ConfigError, match="needs the language analyzer.*--languages all"):
        run_scan(req(tmp_path, analyzers=None, languages=("en",),
                         options={"language": {"model": str(tmp_path / "missing.bin")}}))


def test_pool_worker_setup_failure_is_a_config_error(tmp_path, make_jsonl, monkeypatch):
    corpus(make_jsonl, shards=2)
    bad = tmp_path / "lid.bin"
    bad.write_bytes(b"not a fasttext model")
    with pytest.raises(ConfigError, match="lid.bin"):
        run_scan(req(tmp_path, analyzers=["language"], workers=2,
                     languages=("all",), options={"language": {"model": str(bad), "engine": "fastlid"}}))


def test_changed_shard_is_scanned_again(tmp_path, make_jsonl):
    corpus(make_jsonl, shards=2)
    run_scan(req(tmp_path))
    p = tmp_path / "corpus" / "part-0.jsonl"
    with open(p, "a") as f:
        f.write(json.dumps({"id": "new", "text": "He is new here."}) + "\n")
    warnings = []

    class Hooks:
        warn = warnings.append
        start = advance = shard_finished = stop = lambda *a, **k: None

    res = run_scan(req(tmp_path), Hooks())
    assert res.shards_run == 1 and res.shards_skipped == 1 and res.documents == 9
    assert any("part-0.jsonl changed since it was scanned" in w for w in warnings)
    # a touched but identical file is not rescanned
    import os
    os.utime(p, ns=(1, 1))
    assert run_scan(req(tmp_path)).shards_run == 0


def test_interrupted_run_records_engine_stats(tmp_path, make_jsonl):
    corpus(make_jsonl, shards=3)

    class Interrupt:
        warn = start = advance = stop = lambda *a, **k: None

        def shard_finished(self, outcome):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_scan(req(tmp_path), Interrupt())
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [s["status"] for s in manifest["shards"]].count("done") == 1
    assert manifest["runs"][-1]["analyzer_stats"]["language"]  # what the one finished shard cost


def test_pool_workers_share_gpus_and_cores(monkeypatch):
    """Pool worker k scores toxicity on cuda:k mod #GPUs, not on every GPU; on the CPU each of N
    workers gets cores/N torch threads. The pool asks each analyzer (``worker_options``); the
    others keep their options as they are."""
    torch = pytest.importorskip("torch")
    from llama_audit.analyzers.language import LanguageAnalyzer
    from llama_audit.analyzers.pii import PiiAnalyzer
    from llama_audit.analyzers.toxicity import ToxicityAnalyzer
    from llama_audit.executors.base import ScanPlan
    from llama_audit.executors.worker import worker_options
    from llama_audit.scan import ReadOptions, Scope

    share = ToxicityAnalyzer.worker_options
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    opts = ToxicityAnalyzer.options_from()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert share(opts, 3, 4).threads == 4
    assert share(opts, 0, 40).threads == 1
    mine = ToxicityAnalyzer.options_from({"threads": 7})
    assert share(mine, 0, 4) is mine  # an explicit choice is kept
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert share(opts, 0, 4) is opts
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert [share(opts, k, 6).device for k in range(6)] == \
        ["cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1"]
    assert share(ToxicityAnalyzer.options_from({"device": "cuda"}), 5, 6).device == "cuda:1"
    explicit = ToxicityAnalyzer.options_from({"device": "cuda:2"})
    assert share(explicit, 1, 6).device == "cuda:2"  # explicit: kept
    cpu = share(ToxicityAnalyzer.options_from({"device": "cpu"}), 1, 6)
    assert cpu.device == "cpu"
    # the worker asks every analyzer of the plan: only toxicity changes, the others are kept as they are
    plan_options = {"language": LanguageAnalyzer.options_from(), "toxicity": opts}
    plan = ScanPlan(("language", "toxicity"), plan_options, Scope(("en",), "lang"), "/nowhere", ReadOptions(),
                    False, "")
    per_worker = [worker_options(plan, k, 6) for k in range(6)]
    assert [w["toxicity"].device for w in per_worker] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1"]
    assert all(w["language"] is plan_options["language"] for w in per_worker)
    for cls in (LanguageAnalyzer, PiiAnalyzer):  # nothing to share
        o = cls.options_from()
        assert cls.worker_options(o, 1, 6) is o


def _cli_subprocess(args, *, file_size_limit=None, timeout=120):
    """`llama-audit ARGS` in a subprocess; with ``file_size_limit``, every file it writes is capped
    at that many bytes (RLIMIT_FSIZE, SIGXFSZ ignored): a write past it fails with EFBIG, as a full
    disk fails with ENOSPC."""
    import resource
    import signal
    import subprocess
    import sys

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run([sys.executable, "-m", "llama_audit.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=limit if file_size_limit else None)


def test_disk_full_mid_scan_is_recorded_and_one_line_and_resumable(tmp_path, make_jsonl):
    """ENOSPC during a scan was recorded per shard, then an OSError traceback and no manifest."""
    import hashlib

    make_jsonl("part-0.jsonl", [{"id": "a", "text": "She is here."}])
    make_jsonl("part-1.jsonl", [{"id": hashlib.sha256(str(i).encode()).hexdigest(), "text": "He is."}
                                for i in range(20_000)])  # its annotations file outgrows the limit
    make_jsonl("part-2.jsonl", [{"id": "c", "text": "They are."}])
    args = ["scan", tmp_path / "corpus", "--out", tmp_path / "out", "--analyzers", "pronouns", "--languages", "all"]
    proc = _cli_subprocess(args, file_size_limit=256 * 1024)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "could not write" in errors[0] and "rerun the same command to resume" in errors[0]
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    states = {e["shard"]: e["status"] for e in m["shards"]}
    assert states == {"part-0.jsonl": "done", "part-1.jsonl": "error", "part-2.jsonl": "pending"}
    assert "[Errno 27]" in next(e["error"] for e in m["shards"] if e["status"] == "error")
    proc = _cli_subprocess(args)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["summary"]["complete"] is True


def test_unwritable_out_is_a_one_line_error_before_work(tmp_path, make_jsonl):
    corpus(make_jsonl)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match=r"out: cannot be written \(Not a directory\)"):
        run_scan(req(tmp_path, out=str(blocker / "out")))


def _chmod_stops_writes() -> bool:
    """False for root with CAP_DAC_OVERRIDE (writes through chmod); run such a session as
    ``setpriv --bounding-set -dac_override,-dac_read_search pytest ...`` to test anyway."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o500)
        try:
            open(os.path.join(d, "probe"), "w").close()
        except PermissionError:
            return True
        finally:
            os.chmod(d, 0o700)
    return False


@pytest.mark.skipif(not _chmod_stops_writes(), reason="root writes through chmod")
def test_read_only_out(tmp_path, make_jsonl):
    """A non-writable OUT was a 71-line PermissionError traceback; rescanning or merging a
    read-only finished OUT crashed."""
    corpus(make_jsonl)
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match=r"is not writable \(Permission denied\); make it writable"):
            run_scan(req(tmp_path))
    finally:
        out.chmod(0o700)
    run_scan(req(tmp_path))
    dirs = [out, *[p for p in out.rglob("*") if p.is_dir()]]
    for d in dirs:
        d.chmod(0o500)
    try:
        res = run_scan(req(tmp_path))
        assert res.exit_code == 0 and res.nothing_to_do and res.shards_run == 0
        assert merge(str(out))["nothing_to_do"] is True
    finally:
        for d in dirs:
            d.chmod(0o700)


def test_batch_size_does_not_change_annotation_bytes(tmp_path, make_jsonl):
    corpus(make_jsonl, shards=2, per=40)
    for batch in (1, 7, None):
        run_scan(req(tmp_path, out=str(tmp_path / f"b{batch}"), analyzers=["pronouns", "identities", "pii"],
                     read=ReadOptions(batch_docs=batch)))
    files = [sorted((tmp_path / f"b{b}" / "annotations").iterdir()) for b in (1, 7, None)]
    assert [p.name for p in files[0]] == [p.name for p in files[2]]
    for a, b, c in zip(*files):
        assert a.read_bytes() == b.read_bytes() == c.read_bytes()


def test_rerun_removes_temporaries_a_killed_run_left(tmp_path, make_jsonl):
    corpus(make_jsonl)
    run_scan(req(tmp_path))
    left = tmp_path / "out" / "annotations" / ".part-0.jsonl-0123abcd.parquet.a1b2c3d4.tmp"
    left.write_bytes(b"PAR1 half a file")
    run_scan(req(tmp_path))
    assert not left.exists()


def test_a_shard_finished_on_disk_whose_worker_died_before_saying_so_is_done(tmp_path, make_jsonl, monkeypatch):
    """A worker writes a shard's done marker (last) and is killed before it reports back: the pool
    reports the shard failed, but its outputs are complete; the run counts it done (exit 0), as
    the manifest derived from disk does."""
    import dataclasses

    import llama_audit.job as job

    make_jsonl("a.jsonl", [{"text": "hello world"}])
    make_jsonl("b.jsonl", [{"text": "more words"}])
    real = job.make_executor

    def dying_after_the_marker(*args, **kwargs):
        executor = real(*args, **kwargs)
        run = executor.run

        def run_reporting_failure(*a, **k):
            for outcome in run(*a, **k):
                yield dataclasses.replace(outcome, status="failed", reason="x: the worker process scanning it died")
        executor.run = run_reporting_failure
        return executor

    monkeypatch.setattr(job, "make_executor", dying_after_the_marker)
    result = run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "out"), languages=("all",),
                                  analyzers=["pronouns"]))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["totals"]["shards_done"] == 2 and manifest["summary"]["complete"]
    assert not result.failed and result.exit_code == 0


def test_an_analyzer_skipped_for_its_dependency_says_so_in_one_short_warning(tmp_path, monkeypatch):
    """The default set without a toxicity model: toxicity's long reason is printed once; the
    analyzer that needs it says only that (the full reason stays in the recorded skip)."""
    from llama_audit.job import choose_analyzers

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))  # the default model is not cached
    warnings: list[str] = []
    choice = choose_analyzers(None, ("all",), {}, warnings.append)
    dependents = [n for n, why in choice.skipped.items() if "it needs 'toxicity'" in why]
    assert "toxicity" in choice.skipped and dependents, choice.skipped
    long_reason = choice.skipped["toxicity"]
    assert sum(long_reason in w for w in warnings) == 1, warnings
    for name in dependents:
        assert long_reason in choice.skipped[name]  # recorded in full (the report's provenance)
        (line,) = [w for w in warnings if f"{name!r}" in w]
        assert line == f"skipping analyzer {name!r}: it needs 'toxicity', which cannot run (see above)"
