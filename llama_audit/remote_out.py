"""An OUT (and filter's CLEAN) on object storage: ``scan --out s3://bucket/prefix`` (any fsspec URL).

Why a staging mirror: everything that makes a local OUT safe – temporaries renamed into place,
done markers written last, the OUT lock, the manifest derived from the markers, ``merge`` – works
on a local directory, and object stores have no rename. So a remote OUT is driven through a local
**staging directory** (``$XDG_CACHE_HOME/llama-audit/staging/<sha256 of the URL>[:16]``, or
``--staging DIR`` / ``LLAMA_AUDIT_STAGING``) kept in step with the bucket (docs/outputs.md, "OUT
on object storage"):

* Holding the OUT's gate (below), a process pulls the bookkeeping (``config.json``, ``plan.json``,
  the manifest, ``done/``, ``errors/``, ``partials/``, ``samples/``, ``summary/``) into staging;
  annotations are not downloaded: for each one in the bucket staging keeps a **footer stub**, the
  object's real parquet footer behind the magic bytes (one ranged GET), so the local checks of a
  done shard (row count, columns: ``OutDir.damaged``) run unchanged on the footer the bucket holds,
  and a marker whose annotations are missing in the bucket makes its shard pending. A stub holds
  no data: reading its rows fails (``filter`` downloads the real object first).
* Each shard's files are uploaded with ordinary PUTs once its outcome is recorded, its done marker
  LAST: a PUT is all-or-nothing per object, so a shard without a marker in the bucket is not done
  and the next run redoes it. Uploads run in a small thread pool; the run waits for them, and a
  failed upload fails its shard (one line).
* Leaving the gate, the bookkeeping that changed is pushed: config and plan, the manifest, then
  ``summary/samples.parquet`` and ``summary/counts.parquet`` last.

The lock keeps the local rules of :mod:`llama_audit.lease` with objects under ``OUT/.lock/``: an
exclusive **gate** object and one **scan lease** object per running scan, created with a
conditional write (``If-None-Match: *``, fsspec's ``mode="create"``) where the store has one, and
rewritten by a heartbeat thread every :data:`~llama_audit.lease.HEARTBEAT_S`; one whose last write
is older than :data:`~llama_audit.lease.LEASE_TTL_S` on the store's clock is taken over.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import secrets
import threading
import time
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

from llama_audit.corpus.remote import filesystem, is_url, local_path, mtime_ns, public_url
from llama_audit.lease import (GATE_NAME, GATE_WAIT_S, HEARTBEAT_S, LEASE_PREFIX, LEASE_TTL_S, LOCK_DIR, Heartbeat,
                               Holder, OutLock, host_name, pid_alive, pid_start_time, take_gate)
from llama_audit.store import OutDir, TMP_NAME, atomic_output, atomic_write_bytes, atomic_write_json
from llama_audit.types import ConfigError

STAGING_ENV = "LLAMA_AUDIT_STAGING"  # overrides where staging directories live (--staging names one)
UPLOAD_THREADS = 4  # concurrent shard uploads: enough to hide PUT latency behind scanning
#: finished shards queued for upload (their files in staging) before the scan waits for room: a
#: scan faster than the network must not fill the staging disk with shards not yet uploaded
UPLOAD_QUEUE_SHARDS = 4 * UPLOAD_THREADS
UPLOAD_POLL_S = 0.5  # how long one wait for an upload lasts before a stop signal is looked at
#: whole annotation files filter keeps staged; past it, those fetched longest ago become footer
#: stubs again (a corpus of 40 TB has terabytes of annotations: staging must not keep them all)
FILTER_STAGED_BYTES = 8 << 30
SYNC_STATE = ".remote-sync.json"  # in staging: what each staged file was when last pulled or pushed
FOOTER_PROBE = 64 << 10  # bytes read from an annotation object's end: its whole footer, mostly
PARQUET_MAGIC = b"PAR1"
#: OUT's bookkeeping: pulled before work, pushed leaving the gate (shard files are pushed per shard)
TOP_FILES = ("config.json", "plan.json", "manifest.json")
SHARD_DIRS = ("done", "errors", "partials", "samples")
SUMMARY_DIR = "summary"
ANNOTATIONS_DIR = "annotations"
#: pushed last, in this order: the summary (samples before counts), then the manifest, whose
#: ``inputs_sha256`` is what makes a summary current: a reader between two PUTs sees an old
#: manifest beside a new summary, which it takes for stale (never the reverse)
LAST_ORDER = ("summary/samples.parquet", "summary/counts.parquet", "manifest.json")
PUSHED = "pushed"  # sync state of an object this process wrote (its listed signature is not known yet)


def is_remote(path: object) -> bool:
    """An OUT/CLEAN given as a URL that is not a local ``file://`` path."""
    return is_url(path) and local_path(str(path)) == path


def staging_dir(url: str, staging: str | None = None, purpose: str = "scan") -> Path:
    """The local staging directory of the OUT at ``url``: ``staging`` when given, else one per
    URL (credentials never enter the name) under ``LLAMA_AUDIT_STAGING`` or the user cache.
    ``report``, ``merge`` and ``filter`` stage into their own (``<hash>-report``, ...), so that
    reconciling their copy with the bucket never touches the files of a scan running here."""
    if staging:
        return Path(staging).expanduser()
    base = os.environ.get(STAGING_ENV)
    if base:
        root = Path(base).expanduser()
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llama-audit" / "staging"
    name = hashlib.sha256(public_url(url).rstrip("/").encode()).hexdigest()[:16]
    return root / (name if purpose == "scan" else f"{name}-{purpose}")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


class UploadFailed(OSError):
    """An object could not be written to the bucket: ``filename`` is its public URL."""


@contextlib.contextmanager
def _as_oserror(where: str) -> Iterator[None]:
    """A backend's own exception (botocore's, aiohttp's) as a one-line OSError naming ``where``,
    so that callers handle the store like a disk that failed."""
    try:
        yield
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise UploadFailed(errno.EIO, _one_line(exc), where) from None


def _sha256(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except FileNotFoundError:
        return None


def _signature(info: dict) -> str:
    """What identifies one version of an object in a listing: size and ETag (or write time)."""
    tag = info.get("ETag") or info.get("etag") or info.get("md5Hash") or mtime_ns(info)
    return f"{info.get('size')}:{tag}"


class Bucket:
    """The objects under one OUT (or CLEAN) URL, and its staging mirror."""

    def __init__(self, url: str, staging: str | None = None, purpose: str = "scan"):
        self.url = url.rstrip("/")
        self.public = public_url(self.url)
        self.fs, root = filesystem(self.url)
        self.root = root.rstrip("/")
        self.staging = staging_dir(self.url, staging, purpose)
        self._state_lock = threading.Lock()
        self.state: dict[str, dict] = {}  # rel -> {"remote": signature, "local": sha256}
        self._loaded = False

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def public_path(self, rel: str) -> str:
        return f"{self.public}/{rel}"

    # -- the sync state (a cache: losing it costs downloads, never correctness) -----------------
    def load_state(self) -> None:
        """Read the sync state once per process (later calls keep what this process recorded)."""
        if self._loaded:
            return
        self._loaded = True
        try:
            self.state = json.loads((self.staging / SYNC_STATE).read_text())
        except (OSError, ValueError):
            self.state = {}

    def save_state(self) -> None:
        with self._state_lock:
            data = json.dumps(self.state, sort_keys=True).encode()
        atomic_write_bytes(self.staging / SYNC_STATE, data)

    def _record(self, rel: str, remote: str | None, local: str | None) -> None:
        with self._state_lock:
            if remote is None and local is None:
                self.state.pop(rel, None)
            else:
                self.state[rel] = {"remote": remote, "local": local}

    # -- listing, reading, writing --------------------------------------------------------------
    def listing(self) -> dict[str, dict]:
        """rel -> listing entry of every object under the URL (one paginated LIST)."""
        self.fs.invalidate_cache(self.root)  # other hosts write here too: never a cached listing
        try:
            found = self.fs.find(self.root, detail=True)
        except FileNotFoundError:
            return {}
        prefix = self.root + "/"
        return {p[len(prefix):]: info for p, info in found.items()
                if p.startswith(prefix) and info.get("type", "file") != "directory"}

    def put(self, local: Path, rel: str) -> None:
        """Upload one staged file (a single all-or-nothing PUT, or a multipart upload that
        becomes visible only when complete); UploadFailed names the object, never a secret."""
        try:
            self.fs.put_file(str(local), self.path(rel))
        except Exception as exc:  # noqa: BLE001 - botocore and friends raise their own types
            raise UploadFailed(errno.EIO, f"upload failed ({_one_line(exc)})", self.public_path(rel)) from None

    def delete(self, rel: str) -> None:
        try:
            self.fs.rm_file(self.path(rel))
        except FileNotFoundError:
            pass
        except Exception as exc:  # noqa: BLE001
            raise UploadFailed(errno.EIO, f"delete failed ({_one_line(exc)})", self.public_path(rel)) from None

    def download(self, rel: str, info: dict) -> None:
        local = self.staging / rel
        with atomic_output(local) as tmp:
            self.fs.get_file(self.path(rel), str(tmp))
        self._record(rel, _signature(info), _sha256(local))

    def footer_stub(self, rel: str, info: dict) -> None:
        """Stage the annotation object ``rel`` as its footer stub: the magic bytes, then the
        object's own footer, its length and the magic again (a parquet file's last bytes), which
        ``pyarrow.parquet.read_metadata`` reads like the real file (rows, schema). A tail that is
        not parquet is staged as it is and fails the local check (the shard is redone)."""
        size = int(info.get("size") or 0)
        tail = self.fs.cat_file(self.path(rel), start=max(0, size - FOOTER_PROBE), end=size) if size else b""
        if len(tail) >= 8 and tail[-4:] == PARQUET_MAGIC:
            n = int.from_bytes(tail[-8:-4], "little")
            if n + 8 > len(tail) and n + 8 <= size:
                tail = self.fs.cat_file(self.path(rel), start=size - n - 8, end=size)
            tail = PARQUET_MAGIC + tail[-(n + 8):]
        atomic_write_bytes(self.staging / rel, tail)
        self._record(rel, _signature(info), _sha256(self.staging / rel))

    def make_stub(self, rel: str) -> None:
        """Replace a staged annotation file that is in the bucket by its footer stub (bounded disk)."""
        local = self.staging / rel
        data = local.read_bytes() if local.stat().st_size <= FOOTER_PROBE else None
        if data is None:
            with open(local, "rb") as f:
                f.seek(-8, os.SEEK_END)
                n = int.from_bytes(f.read(4), "little")
                f.seek(-(n + 8), os.SEEK_END)
                tail = f.read()
        else:
            tail = data[-(int.from_bytes(data[-8:-4], "little") + 8):]
        atomic_write_bytes(local, PARQUET_MAGIC + tail)

    # -- pulling the bookkeeping ----------------------------------------------------------------
    def pull(self, *, reconcile: bool, stubs: bool = True, top: tuple[str, ...] = TOP_FILES,
             dirs: tuple[str, ...] = (*SHARD_DIRS, SUMMARY_DIR)) -> dict[str, dict]:
        """Bring staging's bookkeeping in step with the bucket; returns the listing. New or changed
        objects are downloaded (annotations as footer stubs); a staged file whose object is gone
        is removed when ``reconcile`` (the bucket is the truth: a marker never pushed means the
        shard is not done), or when it was synced before and has not been changed here since.
        With ``reconcile`` (a scan preparing OUT, no other process of this host in staging) the
        bucket wins over every staged change. Without it, files changed or deleted here since the
        last sync are left as they are: a shard of this host not pushed yet, or a damaged marker
        removed on purpose (deleted in the bucket when the gate is left, :meth:`push_bookkeeping`)."""
        self.staging.mkdir(parents=True, exist_ok=True)
        listing = self.listing()
        wanted = {rel: info for rel, info in listing.items()
                  if rel in top or rel.split("/", 1)[0] in dirs
                  or (stubs and rel.startswith(ANNOTATIONS_DIR + "/") and f"done/{Path(rel).stem}.json" in listing)}
        for rel, info in sorted(wanted.items()):
            if TMP_NAME.match(PurePosixPath(rel).name):
                continue
            local = self.staging / rel
            known = self.state.get(rel)
            sig = _signature(info)
            here = _sha256(local)
            synced = known is not None and here is not None and known["local"] == here  # untouched since
            if synced and known["remote"] in (sig, PUSHED):  # the bucket holds what we pulled or pushed
                self._record(rel, sig, here)
                continue
            if not reconcile and (known is None and here is not None or known is not None and not synced):
                continue  # this host's work in progress, or removed here on purpose
            if rel.startswith(ANNOTATIONS_DIR + "/"):
                self.footer_stub(rel, info)
            else:
                self.download(rel, info)
        for rel in self._staged(top, dirs + ((ANNOTATIONS_DIR,) if stubs else ())):
            if rel in wanted:
                continue
            known = self.state.get(rel)
            if reconcile or (known is not None and known["local"] == _sha256(self.staging / rel)):
                (self.staging / rel).unlink(missing_ok=True)
                self._record(rel, None, None)
        return listing

    def _staged(self, top: tuple[str, ...], dirs: tuple[str, ...]) -> list[str]:
        found = [rel for rel in top if (self.staging / rel).is_file()]
        for d in dirs:
            base = self.staging / d
            if base.is_dir():
                found += [f"{d}/{p.name}" for p in sorted(base.iterdir())
                          if p.is_file() and not TMP_NAME.match(p.name)]
        return found

    # -- pushing the bookkeeping ----------------------------------------------------------------
    def push_bookkeeping(self, *, top: tuple[str, ...] = TOP_FILES, dirs: tuple[str, ...] = ("errors", "done"),
                         summary: bool = True) -> None:
        """Upload the bookkeeping changed here since the last sync and delete in the bucket what
        was removed here (a cleared error record, a summary no longer current, a damaged marker);
        the summary last, its counts after its samples."""
        staged = set(self._staged(top, dirs + ((SUMMARY_DIR,) if summary else ())))
        tracked = {rel for rel in self.state
                   if rel in top or rel.split("/", 1)[0] in dirs + ((SUMMARY_DIR,) if summary else ())}
        order = sorted(staged | tracked, key=lambda r: (r in LAST_ORDER, LAST_ORDER.index(r) if r in LAST_ORDER else 0, r))
        for rel in order:
            local = self.staging / rel
            digest = _sha256(local)
            known = self.state.get(rel)
            if digest is None:
                if known is not None:
                    self.delete(rel)
                    self._record(rel, None, None)
                continue
            if rel.startswith("done/"):
                continue  # a marker is pushed with its shard's files (Uploads), never alone
            if known is None or known["local"] != digest:
                self.put(local, rel)
                self._record(rel, PUSHED, digest)

    def clear_remote(self, keep: Callable[[str], bool]) -> None:
        """Delete every object under the URL but those ``keep`` names (``--overwrite``)."""
        for rel in sorted(self.listing()):
            if not keep(rel):
                self.delete(rel)
        with self._state_lock:
            self.state = {}


# -- the lock -------------------------------------------------------------------------------------

class RemoteLock:
    """The OUT lock of a remote OUT plus the local lock of its staging directory, with the
    interface of :class:`llama_audit.lease.OutLock` (``probe``, ``gate``, ``leases``,
    ``take_lease``, ``release``), so that ``job.py`` drives both unchanged. Entering the gate
    pulls the bookkeeping into staging; leaving it pushes what changed."""

    def __init__(self, bucket: Bucket, local: OutLock | None, *, ttl_s: float | None = None,
                 heartbeat_s: float | None = None, uploads: "Uploads | None" = None):
        self.bucket = bucket
        self.fs = bucket.fs
        self.local = local
        self.root = bucket.public
        self.dir = f"{LOCK_DIR}"
        self.ttl_s = LEASE_TTL_S if ttl_s is None else ttl_s  # the local lock's rules, one place (lease.py)
        self.heartbeat_s = HEARTBEAT_S if heartbeat_s is None else heartbeat_s
        self.host = host_name()
        self.pid = os.getpid()
        self.uploads = uploads
        self._held: dict[str, bytes] = {}  # rel -> the record this process wrote there
        self._lease: str | None = None
        self._mutex = threading.Lock()
        self._heartbeat = Heartbeat(self._refresh_held, self.heartbeat_s, "llama-audit-remote-lease")
        self._conditional: bool | None = None  # does the store honour mode="create"? (probed)
        self._pushed_config: str | None = None

    # -- objects --------------------------------------------------------------------------------
    def written(self, path: str, info: dict) -> float:
        """When the object at ``path`` was last written, on the store's clock (seconds)."""
        ns = mtime_ns(info)
        if ns:
            return ns / 1e9
        try:
            return self.fs.modified(path).timestamp()
        except (NotImplementedError, OSError, AttributeError):
            return time.time()  # a store that tells no write time: ages on this host's clock

    def fs_now(self) -> float:
        """The store's current time: the write time of a probe object written now."""
        rel = f"{self.dir}/.clock.{self.host}.{self.pid}.{secrets.token_hex(4)}"
        path = self.bucket.path(rel)
        self.fs.pipe_file(path, b"")
        try:
            return self.written(path, self.fs.info(path))
        finally:
            with contextlib.suppress(Exception):
                self.fs.rm_file(path)

    def probe(self) -> None:
        """The staging directory and the bucket can be written: a one-line ConfigError naming the
        URL (no credentials, no bucket, read-only policy, missing backend) before any work."""
        if self.local is not None:
            try:
                self.local.probe()
            except OSError as exc:
                raise ConfigError(f"staging directory {self.bucket.staging} of {self.root} cannot be written "
                                  f"({exc.strerror or exc}); choose another with --staging DIR") from None
        try:
            self.fs_now()
        except Exception as exc:  # noqa: BLE001 - botocore's own types
            raise ConfigError(f"{self.root} cannot be written ({_one_line(exc)}); check the bucket, its "
                              "permissions and your credentials, or choose another --out") from None

    def _record(self, purpose: str, config_hash: str | None) -> bytes:
        return json.dumps({"host": self.host, "pid": self.pid, "pid_start": pid_start_time(self.pid),
                           "since": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
                           "since_fs": time.time(), "purpose": purpose, "config_hash": config_hash,
                           "token": secrets.token_hex(8)}, sort_keys=True).encode() + b"\n"

    def _create(self, rel: str, purpose: str, config_hash: str | None) -> bool:
        """Create lock object ``rel`` with this holder's record if no object has that name; False
        when one does. Conditional create where the store honours it; elsewhere write, then read
        back (see docs/outputs.md: two writers within one round trip may both proceed)."""
        path, data = self.bucket.path(rel), self._record(purpose, config_hash)
        if self._conditional is not False:
            try:
                self.fs.pipe_file(path, data, mode="create")
                self._conditional = True
            except FileExistsError:
                return False
            except (NotImplementedError, TypeError, ValueError):
                self._conditional = False
        if self._conditional is False:
            if self.fs.exists(path):
                return False
            self.fs.pipe_file(path, data)
            if self.fs.cat_file(path) != data:
                return False
        with self._mutex:
            self._held[rel] = data
        return True

    def read(self, rel: str, now: float | None = None) -> Holder | None:
        path = self.bucket.path(rel)
        self.fs.invalidate_cache(path)
        try:
            info = self.fs.info(path)
            text = self.fs.cat_file(path)
        except FileNotFoundError:
            return None
        now = self.fs_now() if now is None else now
        written = self.written(path, info)
        try:
            rec = json.loads(text)
            rec["pid"] = int(rec["pid"])
        except (ValueError, KeyError, TypeError):
            rec = {"host": "?", "pid": -1, "since": "?", "purpose": "unreadable lock object", "token": _signature(info)}
        return Holder(Path(rel), str(rec.get("host", "?")), rec["pid"], rec.get("pid_start"),
                      str(rec.get("since", "?")), float(rec.get("since_fs") or written), str(rec.get("purpose", "?")),
                      rec.get("config_hash"), str(rec.get("token", "")), max(0.0, now - written))

    def expired(self, h: Holder) -> bool:
        if h.age_s > self.ttl_s:
            return True
        if h.host == self.host and h.pid > 0 and h.pid != self.pid:
            return not pid_alive(h.pid, h.pid_start)
        return False

    def _reap(self, h: Holder) -> None:
        """Delete the expired lock object ``h`` unless another holder replaced it meanwhile (its
        token is checked just before the delete; object stores have no conditional delete)."""
        again = self.read(str(h.path))
        if again is not None and again.token == h.token:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self.bucket.path(str(h.path)))

    # -- the gate -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def gate(self, purpose: str, wait_s: float = GATE_WAIT_S, *, local: bool = True) -> Iterator[None]:
        """The remote gate object, then (``local``) the staging directory's gate; entering pulls
        the bookkeeping into staging, leaving without an error pushes what changed."""
        rel = f"{self.dir}/{GATE_NAME}"
        take_gate(self, rel, purpose, wait_s)
        self._heartbeat.start()
        try:
            with self.local.gate(purpose, wait_s) if (local and self.local is not None) else contextlib.nullcontext():
                if self.uploads is not None:  # every finished shard is in the bucket before the manifest says so
                    self.uploads.failures(wait=True)
                self.bucket.load_state()
                with _as_oserror(self.root):
                    listing = self.bucket.pull(reconcile=purpose in ("scan", "merge") and not self._local_others())
                before = _sha256(self.bucket.staging / "config.json")
                yield
                with _as_oserror(self.root):
                    self._push(before, listing)
        finally:
            with self._mutex:
                mine = self._held.pop(rel, None)
            with contextlib.suppress(Exception):
                if mine is not None and self.fs.cat_file(self.bucket.path(rel)) == mine:
                    self.fs.rm_file(self.bucket.path(rel))

    def _local_others(self) -> bool:
        """Another process of this host scans the same staging directory (its unpushed files
        must not be reconciled away)."""
        return self.local is not None and bool(self.local.leases())

    def _push(self, config_before: str | None, listing: dict[str, dict]) -> None:
        bucket = self.bucket
        config_now = _sha256(bucket.staging / "config.json")
        if config_before is not None and config_now != config_before:  # --overwrite cleared staging
            bucket.clear_remote(keep=lambda rel: rel.startswith(LOCK_DIR + "/"))
            listing = {}
        # a marker staged by another process of this host that the bucket lacks (not uploaded yet,
        # or its process died first): the manifest and summary derived here count that shard, so
        # they are not pushed; the bucket keeps its older ones (the uploader, or the next run, pushes)
        unpushed = [rel for rel in bucket._staged((), ("done",))
                    if rel not in listing and (bucket.state.get(rel) or {}).get("remote") != PUSHED]
        if unpushed:
            bucket.push_bookkeeping(top=tuple(r for r in TOP_FILES if r not in LAST_ORDER), summary=False)
        else:
            bucket.push_bookkeeping()
        bucket.save_state()

    # -- scan leases ----------------------------------------------------------------------------
    def leases(self) -> list[Holder]:
        """The live scan leases of other processes, here and in the bucket (call under the gate)."""
        live = list(self.local.leases()) if self.local is not None else []
        now = self.fs_now()
        base = self.bucket.path(self.dir)
        self.fs.invalidate_cache(base)
        try:
            names = sorted(PurePosixPath(p).name for p in self.fs.ls(base, detail=False))
        except FileNotFoundError:
            names = []
        for name in names:
            rel = f"{self.dir}/{name}"
            if not name.startswith(LEASE_PREFIX) or not name.endswith(".json") or rel == self._lease:
                continue
            h = self.read(rel, now)
            if h is None:
                continue
            if h.host == self.host and h.pid == self.pid:
                continue
            if self.expired(h):
                self._reap(h)
                continue
            live.append(h)
        return live

    def take_lease(self, config_hash: str, purpose: str = "scan") -> None:
        if self.local is not None:
            self.local.take_lease(config_hash, purpose)
        rel = f"{self.dir}/{LEASE_PREFIX}{self.host}.{self.pid}.{secrets.token_hex(4)}.json"
        self._create(rel, purpose, config_hash)
        self._lease = rel
        self._heartbeat.start()

    def release(self) -> None:
        if self.uploads is not None:
            self.uploads.close()
        if self._lease is not None:
            with self._mutex:
                self._held.pop(self._lease, None)
            with contextlib.suppress(Exception):
                self.fs.rm_file(self.bucket.path(self._lease))
            self._lease = None
        if self.local is not None:
            self.local.release()
        with self._mutex:
            idle = not self._held
        if idle:
            self._heartbeat.stop()

    # -- heartbeat ------------------------------------------------------------------------------
    def _refresh_held(self) -> None:
        with self._mutex:
            held = dict(self._held)
        for rel, data in held.items():
            with contextlib.suppress(Exception):  # a flaky store: the next beat retries
                if self.fs.cat_file(self.bucket.path(rel)) == data:  # still ours: refresh its write time
                    self.fs.pipe_file(self.bucket.path(rel), data)


# -- shard uploads --------------------------------------------------------------------------------

class Uploads:
    """Pushes each finished shard's files in a small thread pool, its done marker last; a failed
    upload fails the shard (its staged marker is removed, its error record written)."""

    def __init__(self, bucket: Bucket, out: OutDir, threads: int = UPLOAD_THREADS):
        self.bucket = bucket
        self.out = out
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="llama-audit-upload")
        self._pending: dict[concurrent.futures.Future, str] = {}
        self._mutex = threading.Lock()

    def shard_finished(self, key: str, status: str) -> None:
        """Queue the shard's files (done: annotations, partial, samples, then the marker; failed:
        its error record), after waiting for room when ``UPLOAD_QUEUE_SHARDS`` are still queued."""
        self._wait_until(lambda running: len(running) < UPLOAD_QUEUE_SHARDS)
        future = self._pool.submit(self._push_shard, key, status)
        with self._mutex:
            self._pending[future] = key

    def _wait_until(self, enough: Callable[[list], bool]) -> None:
        """Wait (in short steps) until ``enough(uploads not finished)``. ``concurrent.futures.wait``
        takes the futures' locks outside any ``try``: a stop signal is held back while it runs
        (:func:`llama_audit.signals.interrupts_deferred`), or a lock left held would hang the
        pool's shutdown."""
        from llama_audit.signals import interrupts_deferred

        while True:
            with self._mutex:
                running = [f for f in self._pending if not f.done()]
            if enough(running):
                return
            with interrupts_deferred():
                concurrent.futures.wait(running, timeout=UPLOAD_POLL_S, return_when=concurrent.futures.FIRST_COMPLETED)

    def _push_shard(self, key: str, status: str) -> None:
        out, bucket = self.out, self.bucket
        rel = lambda p: p.relative_to(out.root).as_posix()  # noqa: E731
        if status != "done":
            bucket.put(out.error_path(key), rel(out.error_path(key)))
            bucket._record(rel(out.error_path(key)), PUSHED, _sha256(out.error_path(key)))
            return
        files = [out.annotation_path(key), out.partial_path(key)]
        if out.samples_path(key).is_file():
            files.append(out.samples_path(key))
        for path in files[1:]:
            bucket.put(path, rel(path))
            bucket._record(rel(path), PUSHED, _sha256(path))
        bucket.put(files[0], rel(files[0]))
        with contextlib.suppress(OSError):
            bucket.make_stub(rel(files[0]))  # keep staging small: the rows live in the bucket now
        bucket._record(rel(files[0]), PUSHED, _sha256(files[0]))
        error = rel(out.error_path(key))
        if error in bucket.state:
            bucket.delete(error)
            bucket._record(error, None, None)
        marker = out.done_path(key)
        bucket.put(marker, rel(marker))  # LAST: the shard is done in the bucket from now on
        bucket._record(rel(marker), PUSHED, _sha256(marker))

    def failures(self, wait: bool = False) -> list[tuple[str, str]]:
        """(key, one-line reason) of the shards whose upload failed, among those finished (all,
        with ``wait``). The shard's staged marker is removed and its error record written, so the
        manifest lists it as failed and the next run redoes it."""
        if wait:
            self._wait_until(lambda running: not running)
        with self._mutex:
            pending = dict(self._pending)
        failed = []
        for future, key in pending.items():
            if not future.done():
                continue
            with self._mutex:
                self._pending.pop(future, None)
            exc = future.exception()
            if exc is None:
                continue
            reason = (f"{key}: {exc.filename}: {exc.strerror}" if isinstance(exc, UploadFailed)
                      else f"{key}: upload failed ({_one_line(exc)})")
            self.out.done_path(key).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                atomic_write_json(self.out.error_path(key), {"key": key, "error": reason})
            failed.append((key, reason))
        return failed

    def close(self) -> None:
        self._pool.shutdown(wait=True)


# -- scan -----------------------------------------------------------------------------------------

@dataclasses.dataclass
class RemoteScan:
    """What ``job.run_scan`` needs of a remote OUT: the bucket, the lock, the uploads."""

    bucket: Bucket
    uploads: Uploads | None = None

    @property
    def public(self) -> str:
        return self.bucket.public

    def out_lock(self, staging_root: Path) -> RemoteLock:
        self.uploads = Uploads(self.bucket, OutDir(staging_root))
        return RemoteLock(self.bucket, OutLock(staging_root), uploads=self.uploads)

    def shard_finished(self, key: str, status: str) -> list[tuple[str, str]]:
        """Queue the shard's upload; returns the uploads that have failed so far."""
        if status in ("done", "failed") and self.uploads is not None:
            self.uploads.shard_finished(key, status)
        return self.uploads.failures() if self.uploads is not None else []

    def wait_uploads(self) -> list[tuple[str, str]]:
        return self.uploads.failures(wait=True) if self.uploads is not None else []

    def in_words(self, text: str) -> str:
        """A message naming the staging directory, naming the OUT URL instead."""
        return text.replace(str(self.bucket.staging.resolve()), self.public).replace(str(self.bucket.staging),
                                                                                    self.public)


def run_remote_scan(req, hooks, run_scan: Callable) -> Any:
    """``scan --out URL``: the scan runs on the staging directory with the remote lock (pull
    before, shard uploads, push at the end); messages name the URL, never the staging path."""
    from llama_audit.store import OutputWriteError

    if req.executor == "ray" and req.ray_address:
        raise ConfigError(f"--out {public_url(req.out)} with --ray-address: workers on other nodes cannot write "
                          "this machine's staging directory; use --executor local (or a local Ray), or a shared "
                          "file system as OUT")
    remote = RemoteScan(Bucket(req.out, getattr(req, "staging", None)))
    staged = dataclasses.replace(req, out=str(remote.bucket.staging))

    class Words:
        def __getattr__(self, name):
            return getattr(hooks, name)

        def warn(self, message: str) -> None:
            hooks.warn(remote.in_words(message))

    try:
        return run_scan(staged, Words(), remote=remote)
    except (ConfigError, OutputWriteError) as exc:
        raise type(exc)(remote.in_words(str(exc))) from None


# -- report, merge, filter on a remote OUT ---------------------------------------------------------

def stage_for_read(url: str, staging: str | None = None, purpose: str = "report") -> Path:
    """Pull a remote OUT's bookkeeping (and annotation footer stubs) into staging for ``report``
    or ``filter``, which take no lock (as on a local OUT); returns the staging directory."""
    bucket = Bucket(url, staging, purpose)
    bucket.load_state()
    try:
        listing = bucket.pull(reconcile=True)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"{bucket.public}: cannot be read ({_one_line(exc)})") from None
    if not any(rel in listing for rel in ("manifest.json", "config.json")):
        raise ConfigError(f"{bucket.public}: no manifest.json (run `llama-audit scan ... --out {bucket.public}` first)")
    bucket.save_state()
    return bucket.staging


def merge(url: str, *, allow_failed: bool = False, staging: str | None = None) -> dict:
    """``merge URL``: the local merge on the staging mirror, holding the remote gate (pulled on
    entry: every slice's markers and partials; pushed on exit: manifest, then summary)."""
    from llama_audit import manifest as manifest_mod

    bucket = Bucket(url, staging, "merge")
    lock = RemoteLock(bucket, None)
    lock.probe()
    try:
        with lock.gate("merge", local=False):
            result = manifest_mod.merge(str(bucket.staging), allow_failed=allow_failed)
    except UploadFailed as exc:
        raise ConfigError(f"{exc.filename}: {exc.strerror}; merge wrote nothing final, rerun it") from None
    except ConfigError as exc:  # the local merge names its directory: name the URL instead
        staged = (str(bucket.staging.resolve()), str(bucket.staging))
        raise ConfigError(str(exc).replace(staged[0], bucket.public).replace(staged[1], bucket.public)) from None
    finally:
        lock.release()
    return result


class RemoteAnnotations(OutDir):
    """A remote OUT staged for ``filter``: an annotations file is downloaded when filter first
    asks for it (the staged footer stub holds no rows); ``url`` is the OUT as the user named it."""

    def __init__(self, url: str, staging: str | None = None):
        super().__init__(stage_for_read(url, staging, "filter"))
        self.bucket = Bucket(url, staging, "filter")
        self.url = self.bucket.public
        self._fetched: dict[str, int] = {}  # key -> bytes of its whole annotations staged, oldest first

    def annotation_path(self, key: str) -> Path:
        path = super().annotation_path(key)
        if key not in self._fetched:
            rel = path.relative_to(self.root).as_posix()
            try:
                info = self.bucket.fs.info(self.bucket.path(rel))
                if not (path.is_file() and path.stat().st_size == info.get("size")):
                    self._make_room(int(info.get("size") or 0))
                    self.bucket.download(rel, info)
            except FileNotFoundError:
                path.unlink(missing_ok=True)
            except Exception as exc:  # noqa: BLE001 - the shard is refused as damaged, one line
                path.unlink(missing_ok=True)
                raise OSError(errno.EIO, f"{self.bucket.public_path(rel)}: {_one_line(exc)}") from None
            self._fetched[key] = path.stat().st_size if path.is_file() else 0
        return path

    def _make_room(self, size: int) -> None:
        """Turn the annotations fetched longest ago back into footer stubs until ``size`` more
        bytes fit in :data:`FILTER_STAGED_BYTES` (filter reads one shard's file at a time, and a
        stub refetches it when asked again)."""
        while self._fetched and sum(self._fetched.values()) + size > FILTER_STAGED_BYTES:
            old = next(iter(self._fetched))
            del self._fetched[old]
            with contextlib.suppress(OSError, ValueError):
                self.bucket.make_stub(super().annotation_path(old).relative_to(self.root).as_posix())


class CleanSink:
    """filter's CLEAN at a URL: staged locally; each cleaned shard is pushed with its log, then
    its done marker last; the log and manifest at the end. ``prefix``: filter's own folder."""

    def __init__(self, url: str, prefix: str, staging: str | None = None):
        self.bucket = Bucket(url, staging, "clean")
        self.prefix = prefix
        self.staging = self.bucket.staging

    def pull(self) -> None:
        """Bring filter's state (settings, done markers, logs) from the bucket; markers the bucket
        lacks are removed here (a shard not pushed is not done)."""
        b = self.bucket
        b.load_state()
        state_dirs = tuple(f"{self.prefix}/{d}" for d in ("done", "partials"))
        try:
            listing = b.listing()
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"{b.public} cannot be read ({_one_line(exc)})") from None
        for rel, info in sorted(listing.items()):
            if rel.startswith(self.prefix + "/") and not TMP_NAME.match(PurePosixPath(rel).name):
                known = b.state.get(rel)
                if known is None or known["remote"] != _signature(info) or not (b.staging / rel).is_file():
                    b.download(rel, info)
        for d in state_dirs:
            base = b.staging / d
            for p in sorted(base.glob("*")) if base.is_dir() else ():
                rel = p.relative_to(b.staging).as_posix()
                if p.is_file() and not TMP_NAME.match(p.name) and rel not in listing:
                    p.unlink()
                    b._record(rel, None, None)
        self.remote_settings = listing.get(f"{self.prefix}/config.json")

    def probe(self) -> None:
        RemoteLock(self.bucket, None).probe()

    def after_prepare(self, config_path: Path, done_dir: Path) -> None:
        """Push filter's settings; settings that changed (--overwrite) drop the bucket's markers."""
        rel = config_path.relative_to(self.staging).as_posix()
        known = self.bucket.state.get(rel)
        digest = _sha256(config_path)
        if known is not None and known["local"] == digest:
            return
        prefix = done_dir.relative_to(self.staging).as_posix() + "/"
        for other in sorted(self.bucket.listing()):
            if other.startswith(prefix):
                self.bucket.delete(other)
        self.bucket.put(config_path, rel)
        self.bucket._record(rel, PUSHED, digest)
        self.bucket.save_state()

    def push_shard(self, files: list[Path], marker: Path) -> None:
        """The shard's cleaned file and log, then its done marker LAST; on failure the staged
        marker is removed (the shard is not done) and UploadFailed names the object."""
        try:
            for path in [*files, marker]:
                rel = path.relative_to(self.staging).as_posix()
                self.bucket.put(path, rel)
                self.bucket._record(rel, PUSHED, _sha256(path))
        except UploadFailed:
            marker.unlink(missing_ok=True)
            raise
        if files:
            with contextlib.suppress(OSError):
                files[0].unlink()  # the cleaned shard lives in the bucket now: keep staging small

    def push(self, paths: list[Path]) -> None:
        for path in paths:
            if path.is_file():
                rel = path.relative_to(self.staging).as_posix()
                self.bucket.put(path, rel)
                self.bucket._record(rel, PUSHED, _sha256(path))
        self.bucket.save_state()
