"""Kill and resume: a real `llama-audit scan` (or `merge`) subprocess is SIGKILLed – at a random
time, or at a deterministic point through the documented test hook LLAMA_AUDIT_TEST_PAUSE_AT
(llama_audit/store.py: pause_for_tests) – then `merge` must not call the OUT complete unless every
planned shard is done, and a rerun must give the bytes of an uninterrupted run, with no
temporaries left. A bounded number of seeds keeps the file well under a minute."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from llama_audit.job import ScanRequest, run_scan
from llama_audit.manifest import merge
from llama_audit.store import OutDir

SHARDS = 6
ANALYZERS = ["pronouns", "identities"]
TEXTS = ["She likes the Catholic church.", "He is Jewish and gay.", "They said you and I are American.", "Hi."]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The corpus and the outputs of an uninterrupted run."""
    root = tmp_path_factory.mktemp("kill")
    (root / "corpus").mkdir()
    for s in range(SHARDS):
        lines = [json.dumps({"id": f"{s}-{i}", "text": TEXTS[(s + i) % len(TEXTS)]}) for i in range(200)]
        (root / "corpus" / f"part-{s}.jsonl").write_text("\n".join(lines) + "\n")
    run_scan(_request(root, root / "ref"))
    return root, _outputs(root / "ref")


def _request(root, out):
    return ScanRequest(paths=[str(root / "corpus")], out=str(out), analyzers=ANALYZERS, languages=("all",))


def _outputs(out) -> dict[str, bytes]:
    files = {}
    for sub in ("annotations", "partials", "summary"):
        for p in sorted((out / sub).iterdir()):
            files[f"{sub}/{p.name}"] = p.read_bytes()
    return files


def _killed(args, out, *, pause_at=None, after_s=None) -> None:
    """Run `llama-audit ARGS` in its own process group and SIGKILL the group at ``pause_at`` (the
    hook's point) or after ``after_s`` seconds (or when it ends by itself, whichever is first)."""
    flag = out.parent / f"paused-{out.name}"
    flag.unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if pause_at:
        env.update(LLAMA_AUDIT_TEST_PAUSE_AT=pause_at, LLAMA_AUDIT_TEST_PAUSE_FILE=str(flag))
    proc = subprocess.Popen([sys.executable, "-m", "llama_audit.cli", *map(str, args)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + (after_s if after_s is not None else 60)
    while proc.poll() is None and not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    if pause_at:
        assert flag.exists(), f"never reached {pause_at}: {proc.stderr.read().decode()[-2000:]}"
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()


def _assert_merge_is_honest(out) -> None:
    m = merge(str(out))
    all_done = all(OutDir(out).read_done(e["key"]) is not None for e in m["shards"])
    assert len(m["shards"]) == SHARDS  # the plan, not just the shards that got done
    assert m["summary"]["complete"] is (all_done and m["totals"]["shards_done"] == SHARDS)
    if not m["summary"]["complete"]:
        assert not (out / "summary" / "counts.parquet").exists()


def _assert_resumes_to_reference(root, out, ref) -> None:
    res = run_scan(_request(root, out))
    assert res.exit_code == 0 and res.summary_written
    assert _outputs(out) == ref
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert not list((out / ".lock").glob("scan.*"))


@pytest.mark.parametrize("point", ["write:annotations@3", "write:partials@2", "write:done@4", "write:summary"])
def test_kill_at_a_deterministic_point_then_resume(reference, tmp_path, point):
    root, ref = reference
    out = tmp_path / "out"
    _killed(["scan", root / "corpus", "--out", out, "--analyzers", ",".join(ANALYZERS), "--languages", "all", "-q"],
            out, pause_at=point)
    if point != "write:summary":  # the temporary of the write that was cut is still there
        assert [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    _assert_merge_is_honest(out)
    _assert_resumes_to_reference(root, out, ref)


@pytest.mark.parametrize("seed", [1, 2])
def test_kill_at_a_random_time_then_resume(reference, tmp_path, seed):
    root, ref = reference
    out = tmp_path / "out"
    _killed(["scan", root / "corpus", "--out", out, "--analyzers", ",".join(ANALYZERS), "--languages", "all", "-q"],
            out, after_s=random.Random(seed).uniform(0.5, 4.0))
    if (out / "config.json").exists():
        _assert_merge_is_honest(out)
    _assert_resumes_to_reference(root, out, ref)


def test_kill_during_merge_then_merge_again(reference, tmp_path):
    root, ref = reference
    out = tmp_path / "out"
    _killed(["scan", root / "corpus", "--out", out, "--analyzers", ",".join(ANALYZERS), "--languages", "all", "-q"],
            out, pause_at="write:summary")  # every shard done, no summary
    _killed(["merge", out], out, pause_at="merge")  # merge dies holding the gate
    assert (out / ".lock" / "gate").exists()
    m = merge(str(out))  # the dead holder's gate is reaped at once on this host
    assert m["summary"]["complete"] is True
    assert _outputs(out) == ref
