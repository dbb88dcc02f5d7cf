"""The manifest and summary: complete only against the plan, merge --allow-failed, damaged shard
outputs, a changed corpus, and a configuration lock that holds no messages."""

import json

from click.testing import CliRunner

from llama_audit import cli
from llama_audit.job import ScanRequest, run_scan
from llama_audit.manifest import merge
from llama_audit.report.tables import build_report
from llama_audit.store import OutDir


def corpus(make_jsonl, shards):
    for s in range(shards):
        make_jsonl(f"part-{s:02d}.jsonl", [{"id": f"{s}-{i}", "text": f"She met him {i} times."} for i in range(3)])


def req(tmp_path, **kw):
    base = dict(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "out"), analyzers=["pronouns"],
                languages=("all",))
    base.update(kw)
    return ScanRequest(**base)


def invoke(*args):
    return CliRunner().invoke(cli.command(), [str(a) for a in args])


def _as_if_killed_after(out: OutDir, keep: int) -> None:
    """What a SIGKILL after ``keep`` finished shards leaves: their outputs, no manifest, no summary."""
    for k in sorted(p.stem for p in out.done.glob("*.json"))[keep:]:
        out.done_path(k).unlink()
        out.partial_path(k).unlink()
        out.annotation_path(k).unlink()
    out.manifest_path.unlink()
    out.summary_path().unlink()


def test_merge_of_a_killed_scan_is_never_complete(tmp_path, make_jsonl):
    """merge on a killed scan said "3 of 3 shards done; summary written" and report complete."""
    corpus(make_jsonl, 12)
    run_scan(req(tmp_path))
    out = OutDir(tmp_path / "out")
    _as_if_killed_after(out, 3)
    r = invoke("report", out.root, "--format", "json")  # before any merge: partial, from the plan
    assert r.exit_code == 0 and json.loads(r.stdout)["corpus"]["complete"] is False
    assert "partial report: 3 of 12 shards done" in r.stderr
    res = invoke("merge", out.root)
    assert res.exit_code == 1 and "3 of 12 shards done" in res.stderr and "summary pending" in res.stderr
    manifest = json.loads(out.manifest_path.read_text())
    assert manifest["summary"]["complete"] is False and not out.summary_path().exists()
    assert json.loads(invoke("report", out.root, "--format", "json").stdout)["corpus"]["shards_done"] == 3
    assert run_scan(req(tmp_path)).summary_written  # the rerun finishes it


def test_slices_plan_the_same_full_list(tmp_path, make_jsonl):
    corpus(make_jsonl, 5)
    run_scan(req(tmp_path, num_shards=2, shard_index=0))
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert len(plan["shards"]) == 5
    assert merge(str(tmp_path / "out"))["totals"]["shards_done"] == 3
    run_scan(req(tmp_path, num_shards=2, shard_index=1))
    assert json.loads((tmp_path / "out" / "plan.json").read_text()) == plan
    assert merge(str(tmp_path / "out"))["summary"]["complete"] is True


def test_a_changed_corpus_replans_with_a_warning(tmp_path, make_jsonl):
    corpus(make_jsonl, 3)
    run_scan(req(tmp_path))
    make_jsonl("part-new.jsonl", [{"text": "He is new."}])
    (tmp_path / "corpus" / "part-00.jsonl").unlink()
    warnings = []

    class Hooks:
        warn = warnings.append
        start = advance = shard_finished = stop = lambda *a, **k: None

    res = run_scan(req(tmp_path), Hooks())
    assert any("corpus changed" in w and "1 shard(s) added, 1 gone" in w for w in warnings)
    assert res.shards_run == 1 and res.summary_written
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert sorted(e["shard"] for e in m["shards"]) == ["part-01.jsonl", "part-02.jsonl", "part-new.jsonl"]


def test_merge_allow_failed_writes_a_partial_summary(tmp_path, make_jsonl):
    """A failed shard left the summary pending forever."""
    corpus(make_jsonl, 2)
    (tmp_path / "corpus" / "broken.parquet").write_bytes(b"not parquet")
    assert run_scan(req(tmp_path)).exit_code == 1
    out = OutDir(tmp_path / "out")
    plain = invoke("merge", out.root)
    assert plain.exit_code == 1 and "merge --allow-failed" in plain.stderr
    res = invoke("merge", out.root, "--allow-failed")
    assert res.exit_code == 0, res.stderr
    assert "PARTIAL summary written over the 2 done shard(s)" in res.stderr and "broken.parquet" in res.stderr
    m = json.loads(out.manifest_path.read_text())
    assert m["summary"] == {**m["summary"], "complete": False, "partial": True, "failed_shards": ["broken.parquet"],
                            "path": "summary/counts.parquet"}
    assert out.summary_path().exists()
    corpus_section = build_report(str(out.root))["corpus"]
    assert corpus_section["complete"] is False and corpus_section["failed_shards"] == ["broken.parquet"]
    assert corpus_section["summary_partial"] is True and corpus_section["documents"] == 6
    shown = invoke("report", out.root, "--format", "markdown")
    assert "failed: broken.parquet" in shown.stdout and "merge --allow-failed" in shown.stdout
    assert "failed: broken.parquet" in shown.stderr


def test_damaged_partial_is_rescanned_and_merge_and_report_do_not_crash(tmp_path, make_jsonl):
    """A truncated partial made every rescan (and merge, report) crash."""
    corpus(make_jsonl, 3)
    run_scan(req(tmp_path))
    out = OutDir(tmp_path / "out")
    summary = out.summary_path().read_bytes()
    key = sorted(p.stem for p in out.done.glob("*.json"))[1]
    good = out.partial_path(key).read_bytes()
    out.partial_path(key).write_bytes(good[:40])
    m = merge(str(out.root))
    assert m["summary"]["complete"] is False and m["totals"]["shards_damaged"] == 1
    assert [e["damaged"] for e in m["shards"] if "damaged" in e][0].startswith("partial file unreadable")
    assert build_report(str(out.root))["corpus"]["shards_done"] == 2
    warnings = []

    class Hooks:
        warn = warnings.append
        start = advance = shard_finished = stop = lambda *a, **k: None

    res = run_scan(req(tmp_path), Hooks())
    assert res.shards_run == 1 and res.summary_written
    assert any("are damaged (partial file unreadable" in w for w in warnings)
    assert out.summary_path().read_bytes() == summary
    out.done_path(key).write_text('{"key": ')  # a truncated done marker: rescanned too
    res = run_scan(req(tmp_path), Hooks())
    assert res.shards_run == 1 and out.summary_path().read_bytes() == summary


def test_config_lock_holds_no_skip_reason_text(tmp_path, make_jsonl, monkeypatch):
    """`make demo` after `make test` was refused ("differs in: skipped_analyzers") because the
    text of toxicity's skip reason changed when torch was installed."""
    from llama_audit.analyzers.toxicity import ToxicityAnalyzer

    corpus(make_jsonl, 2)
    monkeypatch.setattr(ToxicityAnalyzer, "unavailable_reason", classmethod(lambda cls, o: "torch is not installed"))
    run_scan(req(tmp_path, analyzers=None))
    monkeypatch.setattr(ToxicityAnalyzer, "unavailable_reason",
                        classmethod(lambda cls, o: "toxicity model is not in the Hugging Face cache"))
    res = run_scan(req(tmp_path, analyzers=None))
    assert res.exit_code == 0 and res.shards_skipped == 2
    assert "skipped_analyzers" not in json.loads((tmp_path / "out" / "config.json").read_text())["config"]
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["config"]["skipped_analyzers"]["toxicity"] == "toxicity model is not in the Hugging Face cache"
    assert build_report(str(tmp_path / "out"))["toxicity"]["status"] == "skipped"
    merge(str(tmp_path / "out"))  # merge keeps the reasons (from the plan)
    assert build_report(str(tmp_path / "out"))["toxicity"]["reason"].startswith("toxicity model is not")
