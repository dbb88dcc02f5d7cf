"""The OUT lock: who may write OUT's bookkeeping, and which scans are running in it.

OUT is shared: Slurm slices of one configuration, a rerun on another host and ``merge`` may all
touch it, on a network file system where a process on another host cannot be checked by pid. So
the lock has two parts, both plain files under ``OUT/.lock/`` (docs/outputs.md, "The OUT lock"):

* the **gate** (``OUT/.lock/gate``), exclusive, created with ``O_CREAT|O_EXCL`` (atomic on local
  file systems, NFSv3+, Lustre and GPFS). It is held briefly by whoever changes ``config.json``,
  ``plan.json``, the manifest or the summary: a scan while it checks and prepares OUT and when it
  writes the manifest, ``merge``, ``--overwrite``.
* **scan leases** (``OUT/.lock/scan.<host>.<pid>.<token>.json``), shared: one per running scan,
  taken under the gate, naming the configuration it writes. Scans of the same configuration run
  side by side; a scan of another configuration, or an ``--overwrite`` that would discard their
  work, is refused with the holder's host, pid and start time.

Every lock file carries host, pid, start time and purpose; a background thread refreshes its
heartbeat (the file's mtime) every :data:`HEARTBEAT_S` seconds. A lock whose heartbeat is older
than :data:`LEASE_TTL_S` has expired (its holder died on some host); on this host a holder whose
pid is gone (or was reused) is reaped at once. Ages are measured on the file system's own clock
(the mtime of a probe file just touched), so clock skew between hosts does not expire live leases.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import secrets
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from llama_audit.types import ConfigError

HEARTBEAT_S = 20.0  # how often a holder refreshes its lock files
LEASE_TTL_S = 120.0  # a lock not refreshed for this long has expired (six missed heartbeats)
GATE_WAIT_S = 120.0  # how long to wait for the gate held by a live holder (it is held only briefly)
LOCK_DIR = ".lock"
GATE_NAME = "gate"
LEASE_PREFIX = "scan."


class LockHeld(ConfigError):
    """OUT is held by another live process in a way that excludes this one (one line, names it)."""


@dataclasses.dataclass(frozen=True)
class Holder:
    """What a lock file says about its holder, and how old its heartbeat is."""

    path: Path
    host: str
    pid: int
    pid_start: str | None  # the process's start time in clock ticks (/proc), to detect pid reuse
    since: str  # ISO time on the holder's clock, for people
    since_fs: float  # the lock file's creation time on the file system's clock
    purpose: str
    config_hash: str | None
    token: str
    age_s: float  # seconds since the last heartbeat, on the file system's clock

    def describe(self) -> str:
        return f"{self.host} pid {self.pid} ({self.purpose}, since {self.since})"


def host_name() -> str:
    return socket.gethostname()


def pid_start_time(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot, or None (no /proc, gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22 of proc(5); the name may hold spaces


def pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    if start is not None:
        now = pid_start_time(pid)
        return now is None or now == start  # another start time: the pid was reused
    return True


class OutLock:
    """The lock of one OUT directory, as held by this process (see the module docstring)."""

    def __init__(self, root: str | Path, *, ttl_s: float = LEASE_TTL_S, heartbeat_s: float = HEARTBEAT_S):
        self.root = Path(root)
        self.dir = self.root / LOCK_DIR
        self.gate_path = self.dir / GATE_NAME
        self.ttl_s = ttl_s
        self.heartbeat_s = heartbeat_s
        self.host = host_name()
        self.pid = os.getpid()
        self._held: set[Path] = set()  # lock files this process holds (refreshed by the heartbeat)
        self._lease: Path | None = None
        self._heartbeat = Heartbeat(self._refresh_held, heartbeat_s, "llama-audit-lease")
        self._mutex = threading.Lock()

    # -- files ------------------------------------------------------------------------------------
    def probe(self) -> None:
        """Make sure OUT's lock directory can be written; raises OSError (read-only, no space...)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fs_now()

    def fs_now(self) -> float:
        """The file system's current time: the mtime of a probe file touched now."""
        probe = self.dir / f".clock.{self.host}.{self.pid}"
        with open(probe, "a"):
            pass
        os.utime(probe, None)
        try:
            return probe.stat().st_mtime
        finally:
            probe.unlink(missing_ok=True)

    def _create(self, path: Path, purpose: str, config_hash: str | None) -> bool:
        """Create lock file ``path`` exclusively with this holder's record; False when it exists."""
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            return False
        try:
            record = {"host": self.host, "pid": self.pid, "pid_start": pid_start_time(self.pid),
                      "since": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
                      "since_fs": os.fstat(fd).st_mtime, "purpose": purpose, "config_hash": config_hash,
                      "token": secrets.token_hex(8)}
            os.write(fd, json.dumps(record, sort_keys=True).encode() + b"\n")
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        with self._mutex:
            self._held.add(path)
        return True

    def read(self, path: Path, now: float | None = None) -> Holder | None:
        """The holder recorded in lock file ``path``; None when it is gone. A file that cannot be
        parsed (its holder died while writing it) reads as an anonymous holder aged by its mtime."""
        try:
            st = path.stat()
            text = path.read_text()
        except FileNotFoundError:
            return None
        now = self.fs_now() if now is None else now
        try:
            rec = json.loads(text)
            rec["pid"] = int(rec["pid"])
        except (ValueError, KeyError, TypeError):
            rec = {"host": "?", "pid": -1, "since": "?", "since_fs": st.st_mtime, "purpose": "unreadable lock file",
                   "token": f"unreadable-{st.st_ino}-{st.st_mtime_ns}"}
        return Holder(path, str(rec.get("host", "?")), rec["pid"], rec.get("pid_start"), str(rec.get("since", "?")),
                      float(rec.get("since_fs", st.st_mtime)), str(rec.get("purpose", "?")), rec.get("config_hash"),
                      str(rec.get("token", "")), max(0.0, now - st.st_mtime))

    def expired(self, h: Holder) -> bool:
        """Its heartbeat is older than the TTL, or it names a dead (or reused) pid on this host."""
        if h.age_s > self.ttl_s:
            return True
        if h.host == self.host and h.pid > 0 and h.pid != self.pid:
            return not pid_alive(h.pid, h.pid_start)
        return False

    def _reap(self, h: Holder) -> None:
        """Remove the expired lock file ``h`` – but not a fresh one that replaced it meanwhile:
        it is renamed aside first, and put back if it turns out to be another holder's."""
        aside = self.dir / f".reaped.{self.host}.{self.pid}.{secrets.token_hex(4)}"
        try:
            os.rename(h.path, aside)
        except FileNotFoundError:
            return
        moved = self.read(aside)
        if moved is not None and moved.token != h.token:
            with contextlib.suppress(OSError):
                os.link(aside, h.path)  # fails if yet another holder took the name: theirs stands
        aside.unlink(missing_ok=True)

    # -- the gate ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def gate(self, purpose: str, wait_s: float = GATE_WAIT_S) -> Iterator[None]:
        """Hold the gate (exclusive) for the block; waits up to ``wait_s`` for a live holder, then
        raises :class:`LockHeld` naming it. An expired holder's gate is taken over."""
        self.dir.mkdir(parents=True, exist_ok=True)
        take_gate(self, self.gate_path, purpose, wait_s)
        self._heartbeat.start()
        try:
            yield
        finally:
            with self._mutex:
                self._held.discard(self.gate_path)
            self.gate_path.unlink(missing_ok=True)

    # -- scan leases ------------------------------------------------------------------------------
    def leases(self) -> list[Holder]:
        """The live scan leases of other processes; expired ones are removed (call under the gate)."""
        now = self.fs_now()
        live = []
        for path in sorted(self.dir.glob(LEASE_PREFIX + "*.json")):
            if path == self._lease:
                continue
            h = self.read(path, now)
            if h is None:
                continue
            if self.expired(h):
                self._reap(h)
                continue
            live.append(h)
        return live

    def take_lease(self, config_hash: str, purpose: str = "scan") -> None:
        """Register this process as a running scan of ``config_hash`` (call under the gate)."""
        path = self.dir / f"{LEASE_PREFIX}{self.host}.{self.pid}.{secrets.token_hex(4)}.json"
        self._create(path, purpose, config_hash)
        self._lease = path
        self._heartbeat.start()

    def release(self) -> None:
        """Drop this process's scan lease (and stop the heartbeat when nothing is held)."""
        if self._lease is not None:
            with self._mutex:
                self._held.discard(self._lease)
            self._lease.unlink(missing_ok=True)
            self._lease = None
        with self._mutex:
            idle = not self._held
        if idle:
            self._heartbeat.stop()

    # -- heartbeat --------------------------------------------------------------------------------
    def _refresh_held(self) -> None:
        with self._mutex:
            held = list(self._held)
        for path in held:
            with contextlib.suppress(OSError):  # a full or flaky file system: the next beat retries
                os.utime(path, None)


def take_gate(lock, path, purpose: str, wait_s: float) -> None:
    """Create the gate ``path`` for ``lock`` (this module's :class:`OutLock`, or the bucket lock of
    ``remote_out``: both offer ``_create``, ``read``, ``expired``, ``_reap``), waiting up to
    ``wait_s`` seconds with a growing pause; a holder that expired is reaped first."""
    deadline = time.monotonic() + wait_s
    pause = 0.05
    while not lock._create(path, purpose, None):
        holder = lock.read(path)
        if holder is None:
            continue
        if lock.expired(holder):
            lock._reap(holder)
            continue
        if time.monotonic() >= deadline:
            raise LockHeld(f"{lock.root} is locked by {holder.describe()}; wait for it to finish "
                           f"(a holder that died frees it within {lock.ttl_s:.0f} s)")
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


class Heartbeat:
    """A daemon thread that calls ``beat`` every ``interval`` seconds while a lock holds something
    (the OUT lock here, the lock objects of an OUT in a bucket in ``remote_out``): ``start`` when
    something is taken (a no-op while running), ``stop`` when nothing is held any more. ``beat``
    refreshes every held lease once and swallows its own errors: the next beat retries."""

    def __init__(self, beat: Callable[[], None], interval: float, name: str):
        self.beat, self.interval, self.name = beat, interval, name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive() and not self._stop.is_set():
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(self._stop,), name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            self.beat()


def is_unwritable(exc: OSError) -> bool:
    """Permission denied or a read-only file system: OUT cannot be written at all."""
    return exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
