"""The OUT lock: an exclusive gate, shared scan leases, heartbeats, expiry by TTL (another host)
and by a dead pid (this host); a concurrent --overwrite scan of another configuration is refused."""

import json
import os
import subprocess
import sys
import time

import pytest

from llama_audit.job import ScanRequest, run_scan
from llama_audit.lease import LockHeld, OutLock
from llama_audit.types import ConfigError


def _fake_holder(lock: OutLock, name: str, *, host: str, pid: int, age_s: float, config_hash: str | None = "h"):
    lock.dir.mkdir(parents=True, exist_ok=True)
    path = lock.dir / name
    path.write_text(json.dumps({"host": host, "pid": pid, "since": "2024-01-01T00:00:00", "since_fs": 0.0,
                                "purpose": "scan", "config_hash": config_hash, "token": name}))
    past = time.time() - age_s
    os.utime(path, (past, past))
    return path


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_gate_is_exclusive_and_names_its_holder(tmp_path):
    a, b = OutLock(tmp_path), OutLock(tmp_path)
    with a.gate("merge"):
        with pytest.raises(LockHeld, match=r"is locked by .* pid %d \(merge, since " % os.getpid()):
            with b.gate("scan", wait_s=0.2):
                pass
    with b.gate("scan", wait_s=0.2):  # released
        assert a.gate_path.exists()
    assert not a.gate_path.exists()


def test_a_dead_holder_on_this_host_is_reaped_at_once(tmp_path):
    lock = OutLock(tmp_path)
    _fake_holder(lock, "gate", host=lock.host, pid=_dead_pid(), age_s=0)
    stale = _fake_holder(lock, "scan.x.1.aa.json", host=lock.host, pid=_dead_pid(), age_s=0)
    with lock.gate("scan", wait_s=0.2):
        assert lock.leases() == []
    assert not stale.exists()


def test_another_hosts_lease_expires_by_its_heartbeat_age_only(tmp_path):
    """A pid on another host cannot be checked: its lease lives while its heartbeat is fresh."""
    lock = OutLock(tmp_path, ttl_s=60)
    fresh = _fake_holder(lock, "scan.far.1.aa.json", host="far-away-host", pid=1, age_s=5)
    old = _fake_holder(lock, "scan.far.2.bb.json", host="far-away-host", pid=2, age_s=600)
    with lock.gate("scan", wait_s=0.2):
        live = lock.leases()
    assert [h.path for h in live] == [fresh] and live[0].describe().startswith("far-away-host pid 1 (scan")
    assert not old.exists()
    _fake_holder(lock, "gate", host="far-away-host", pid=3, age_s=5)
    with pytest.raises(LockHeld, match="far-away-host pid 3"):
        with lock.gate("merge", wait_s=0.2):
            pass


def test_heartbeat_keeps_a_lease_fresh(tmp_path):
    lock = OutLock(tmp_path, ttl_s=1.0, heartbeat_s=0.05)
    with lock.gate("scan"):
        lock.take_lease("h")
    lease = lock._lease
    past = time.time() - 3600
    os.utime(lease, (past, past))
    time.sleep(0.5)
    assert time.time() - lease.stat().st_mtime < 5
    other = OutLock(tmp_path, ttl_s=1.0)
    with other.gate("scan", wait_s=1):
        assert [h.path for h in other.leases()] == [lease]
    lock.release()
    assert not lease.exists()


def test_overwrite_scan_of_another_config_is_refused_while_a_scan_runs(tmp_path, make_jsonl):
    """Reproduction: scan B with --overwrite while scan A (another configuration) ran left
    config.json from B and the manifest from A."""
    for s in range(3):
        make_jsonl(f"part-{s}.jsonl", [{"id": f"{s}-{i}", "text": f"She said {i} things."} for i in range(5)])
    out = tmp_path / "out"
    flag = tmp_path / "paused"
    env = {**os.environ, "LLAMA_AUDIT_TEST_PAUSE_AT": "write:annotations@2", "LLAMA_AUDIT_TEST_PAUSE_FILE": str(flag)}
    a = subprocess.Popen([sys.executable, "-m", "llama_audit.cli", "scan", str(tmp_path / "corpus"), "--out", str(out),
                          "--analyzers", "pronouns", "--languages", "all", "-q"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 60
        while not flag.exists():
            assert a.poll() is None, a.stderr.read().decode()
            assert time.time() < deadline
            time.sleep(0.05)
        config_a = (out / "config.json").read_text()
        with pytest.raises(ConfigError, match=r"being scanned with another configuration by .* pid %d \(scan, since"
                           % a.pid):
            run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(out), analyzers=["identities"],
                                 languages=("all",), overwrite=True))
        assert (out / "config.json").read_text() == config_a
        # a scan of the same configuration shares OUT (a Slurm slice, a rerun on another host)
        same = run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(out), analyzers=["pronouns"],
                                    languages=("all",), num_shards=2, shard_index=1))
        assert same.exit_code == 0 and same.shards_run == 1
    finally:
        os.killpg(a.pid, 9)
        a.wait()
    # A died (SIGKILL): its lease is reaped at once on this host; B may now take OUT over
    res = run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(out), analyzers=["identities"],
                               languages=("all",), overwrite=True))
    assert res.shards_run == 3 and res.summary_written
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config_hash"] == json.loads((out / "config.json").read_text())["config_hash"]
    assert list(manifest["config"]["analyzers"]) == ["identities"]
    assert not any(p.name.endswith(".tmp") for p in out.rglob("*"))  # A's half annotation file is gone

