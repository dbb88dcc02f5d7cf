"""Process lifecycle of a real ``llama-audit`` process: workers die with their parent (SIGKILL),
SIGTERM stops a run like Ctrl-C (exit 143, manifest written), Ctrl-C to the process group gives
no worker tracebacks (exit 130) and the rerun gives the bytes of an uninterrupted run.

Each test runs the CLI as a subprocess in its own session (so its whole process tree can be found
and signalled as a terminal would), on many small shards with the fast pronouns analyzer."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import llama_audit
from llama_audit.job import ScanRequest, run_scan

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc to find the process tree")

PACKAGE_ROOT = str(Path(llama_audit.__file__).resolve().parent.parent)
SCAN_ARGS = ["--analyzers", "pronouns", "--languages", "all"]
SHARDS = 30


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    text = "She said he was there and they went home with her. " * 4
    for s in range(SHARDS):
        (root / f"s{s:03d}.jsonl").write_text(
            "".join(json.dumps({"id": f"{s}-{i}", "text": text}) + "\n" for i in range(1000)))
    return root


def start(*args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": PACKAGE_ROOT}
    return subprocess.Popen([sys.executable, "-m", "llama_audit.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env, start_new_session=True, text=True)


def session_processes(sid: int) -> dict[int, str]:
    """Live (not zombie) processes of session ``sid``: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
    return found


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def done_count(out: Path) -> int:
    return len(list((out / "done").glob("*.json"))) if (out / "done").is_dir() else 0


def workers_of(sid: int) -> list[int]:
    return [pid for pid, cmd in session_processes(sid).items() if "multiprocessing.spawn" in cmd]


def finish(proc: subprocess.Popen, timeout: float = 20) -> tuple[int, str]:
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return proc.returncode, stderr


def kill_leftovers(sid: int) -> None:
    for pid in session_processes(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def test_workers_die_with_a_killed_parent(tmp_path, corpus):
    """kill -9 of the main process: no worker survives it, and no shard is finished after it."""
    out = tmp_path / "out"
    proc = start("scan", str(corpus), "--out", str(out), *SCAN_ARGS, "--workers", "2", "-q")
    try:
        wait_until(lambda: done_count(out) >= 1, 20, "the first finished shard")
        assert len(workers_of(proc.pid)) == 2
        proc.kill()
        proc.wait()
        wait_until(lambda: not session_processes(proc.pid), 5, "every process of the run to end")
        done_after_death = done_count(out)
        time.sleep(1.0)
        assert done_count(out) == done_after_death < SHARDS
    finally:
        kill_leftovers(proc.pid)


@pytest.mark.parametrize("target", ["main process", "process group"])
def test_sigterm_stops_a_pool_scan_like_ctrl_c(tmp_path, corpus, target):
    """SIGTERM (``kill``/``timeout``: the main process; Slurm at the time limit: every process of
    the step): workers stopped without a traceback, finished shards kept and in the manifest, exit
    143 with a one-line message."""
    out = tmp_path / "out"
    proc = start("scan", str(corpus), "--out", str(out), *SCAN_ARGS, "--workers", "2", "-q")
    try:
        wait_until(lambda: done_count(out) >= 1, 20, "the first finished shard")
        if target == "main process":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGTERM)
        rc, stderr = finish(proc)
        assert rc == 143, stderr
        assert "Traceback" not in stderr and "interrupted" in stderr and "rerun" in stderr, stderr
        wait_until(lambda: not session_processes(proc.pid), 5, "every process of the run to end")
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["totals"]["shards_done"] == done_count(out) < SHARDS
    finally:
        kill_leftovers(proc.pid)


@pytest.mark.parametrize("when", ["workers starting", "mid-scan"])
def test_ctrl_c_to_the_process_group_is_quiet_and_resumes_to_the_same_bytes(tmp_path, corpus, when):
    """A terminal's Ctrl-C reaches every process of the group: no worker traceback, exit 130, no
    process left, and (mid-scan) the rerun gives the bytes of an uninterrupted run."""
    out = tmp_path / "out"
    args = ["scan", str(corpus), "--out", str(out), *SCAN_ARGS, "--workers", "2", "-q"]
    proc = start(*args)
    try:
        if when == "workers starting":  # still importing: before the fix, KeyboardInterrupt tracebacks
            wait_until(lambda: len(workers_of(proc.pid)) == 2, 20, "two worker processes")
        else:
            wait_until(lambda: done_count(out) >= 1, 20, "the first finished shard")
        os.killpg(proc.pid, signal.SIGINT)
        rc, stderr = finish(proc)
        assert rc == 130, stderr
        assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
        assert "interrupted" in stderr
        wait_until(lambda: not session_processes(proc.pid), 5, "every process of the run to end")
    finally:
        kill_leftovers(proc.pid)
    if when != "mid-scan":
        return
    same = dict(paths=[str(corpus)], analyzers=["pronouns"], languages=("all",))  # as SCAN_ARGS
    rerun = run_scan(ScanRequest(out=str(out), **same))  # in this process: the resume is the same code
    assert rerun.exit_code == 0 and rerun.shards_skipped >= 1 and rerun.summary_written
    reference = tmp_path / "reference"
    run_scan(ScanRequest(out=str(reference), **same))
    for sub in ("annotations", "partials", "summary"):
        ours = {p.name: p.read_bytes() for p in (out / sub).iterdir() if not p.name.startswith(".")}
        theirs = {p.name: p.read_bytes() for p in (reference / sub).iterdir() if not p.name.startswith(".")}
        assert ours == theirs, sub


def test_sigterm_during_filter_is_one_line_and_exit_143(tmp_path, corpus):
    out, clean = tmp_path / "out", tmp_path / "clean"
    run_scan(ScanRequest(paths=[str(corpus)], out=str(out), analyzers=["pronouns"], languages=("all",)))
    proc = start("filter", str(out), "--out", str(clean), "--drop", "chars > 100000")
    try:
        wait_until(lambda: clean.is_dir() and any(clean.rglob("*.jsonl")), 20, "the first cleaned shard")
        proc.send_signal(signal.SIGTERM)
        rc, stderr = finish(proc)
    finally:
        kill_leftovers(proc.pid)
    assert rc == 143, stderr
    assert "Traceback" not in stderr and "interrupted by SIGTERM" in stderr and "rerun" in stderr, stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_merge_is_one_line(tmp_path, signum):
    """merge is short: a signal is delivered at a fixed point of it (its body replaced by "receive
    the signal, then work on"), through the real ``main``."""
    code = ("import os, time, llama_audit.manifest as m\n"
            f"def merge(*args, **kwargs):\n    os.kill(os.getpid(), {int(signum)})\n    time.sleep(5)\n"
            "m.merge = merge\n"
            "from llama_audit.cli import main\nmain()\n")
    env = {**os.environ, "PYTHONPATH": PACKAGE_ROOT}
    res = subprocess.run([sys.executable, "-c", code, "merge", str(tmp_path)], capture_output=True, text=True,
                         env=env, timeout=30)
    assert res.returncode == 128 + signum, res.stderr
    assert "Traceback" not in res.stderr and "interrupted by" in res.stderr and "rerun" in res.stderr, res.stderr


def test_a_worker_killed_alone_fails_its_shard_and_the_run_goes_on(tmp_path, corpus):
    """The out-of-memory killer takes one worker (SIGKILL): the shard it was scanning fails with a
    reason that says so, a new pool scans the rest; no traceback, no "internal error"."""
    out = tmp_path / "out"
    proc = start("scan", str(corpus), "--out", str(out), *SCAN_ARGS, "--workers", "2", "-q")
    try:
        wait_until(lambda: done_count(out) >= 1, 20, "the first finished shard")
        os.kill(workers_of(proc.pid)[0], signal.SIGKILL)
        rc, stderr = finish(proc, timeout=60)
    finally:
        kill_leftovers(proc.pid)
    manifest = json.loads((out / "manifest.json").read_text())
    failed = manifest["totals"]["shards"] - manifest["totals"]["shards_done"]
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    assert failed <= 1 and done_count(out) + failed == SHARDS
    assert rc == (1 if failed else 0), stderr
    if failed:
        assert "worker process scanning it died (killed by SIGKILL" in stderr
