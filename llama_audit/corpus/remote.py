"""Corpus inputs given as fsspec URLs (``s3://``, ``gs://``, ``az://``, ``https://`` ...): what a
URL is, the filesystem that reads it, streaming opens, and discovery of the objects under a
prefix or matching a glob.

Why fsspec: it is the one file-system interface that s3fs, gcsfs, adlfs, huggingface_hub and
fsspec's own HTTP client implement, and that datatrove, Dolma and ``datasets`` read corpora
through (https://filesystem-spec.readthedocs.io), so a bucket reads here as it does there. Each
backend is an extra (``llama-audit[s3]`` ...) imported only when a URL of its scheme is given;
a missing one is a one-line error naming the extra.

Credentials come only from each backend's own environment and configuration files (the AWS
variables and ``~/.aws``, ``GOOGLE_APPLICATION_CREDENTIALS``, the ``AZURE_STORAGE_*`` variables,
``HF_TOKEN``): a URL holding a password or a query string is refused, so no secret can reach a
shard's path, an output, a log or a message (messages print :func:`public_url`).

A ``file://`` URL is a plain local path (:func:`local_path`), read exactly as that path.
"""

from __future__ import annotations

import datetime as _dt
import errno
import posixpath
import re
import urllib.parse
from typing import Any, Callable

from ..types import ConfigError

#: bytes fetched per range request when a remote object is read (its read-ahead block): large
#: enough that a request's latency is small next to its transfer, small enough to stay bounded
BLOCK_SIZE = 8 << 20

#: URL scheme -> the llama-audit extra that installs its fsspec backend
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure",
          "abfss": "azure", "adl": "azure", "hf": "hf"}
#: schemes fsspec reads with its own HTTP client, which needs aiohttp (no extra of ours)
_HTTP = ("http", "https")
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+)://")  # two letters at least: 'C://' is a drive
_MAGIC = re.compile(r"[*?\[]")
#: keys of a listing entry that hold the time an object was written, in the backends' spellings
#: (s3fs, adlfs, gcsfs / local-like, gcsfs)
_MTIME_KEYS = ("LastModified", "last_modified", "mtime", "updated")


def scheme(path: str) -> str | None:
    """The URL scheme of ``path`` (lower case), or None for a local path."""
    m = _URL.match(path) if isinstance(path, str) else None
    return m.group(1).lower() if m else None


def is_url(path: object) -> bool:
    """Whether ``path`` is a URL (``scheme://...``). Windows drive letters (``C:\\x``) are not."""
    return isinstance(path, str) and _URL.match(path) is not None


def local_path(arg: str) -> str:
    """``arg`` with a ``file://`` URL turned into the local path it names; anything else as it is.
    ConfigError for a ``file://`` URL naming another host."""
    if scheme(arg) != "file":
        return arg
    parts = urllib.parse.urlsplit(arg)
    if parts.netloc not in ("", "localhost"):
        raise ConfigError(f"{public_url(arg)}: a file:// URL names a local absolute path "
                          f"(file:///data/corpus), not a host")
    return urllib.parse.unquote(parts.path)


def public_url(url: str) -> str:
    """``url`` without userinfo, query string or fragment: what messages may print."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def check_url(url: str) -> None:
    """ConfigError when ``url`` carries credentials (a password, userinfo on http(s)) or a query
    string: credentials come from the backend's environment, and a shard's path is written to
    done markers and manifests."""
    parts = urllib.parse.urlsplit(url)
    user, at, _ = parts.netloc.rpartition("@")
    if at and (":" in user or parts.scheme.lower() in _HTTP):
        raise ConfigError(f"{public_url(url)}: credentials in a URL are not accepted (and never printed); "
                          f"give them the backend's usual way (environment or config file)")
    if parts.query or parts.fragment:
        raise ConfigError(f"{public_url(url)}: a URL with a query string or fragment is not accepted "
                          f"(it may hold a signature); name the object itself")


def filesystem(url: str) -> tuple[Any, str]:
    """(the fsspec filesystem for ``url``'s scheme, the path within it). A missing backend is a
    one-line ConfigError naming the extra that installs it."""
    check_url(url)
    proto = scheme(url) or "file"
    try:
        import fsspec.core

        return fsspec.core.url_to_fs(url)
    except ImportError:
        if proto in _HTTP:
            need = "fsspec and aiohttp: pip install fsspec aiohttp"
        else:
            extra = EXTRAS.get(proto)
            need = (f"the {extra} extra: pip install 'llama-audit[{extra}]'" if extra
                    else f"fsspec and its {proto} backend")
        raise ConfigError(f"{public_url(url)}: reading {proto}:// needs {need}") from None
    except ValueError as e:
        raise ConfigError(f"{public_url(url)}: cannot read {proto}:// URLs ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    lines = str(e).splitlines()
    first = lines[0][:160] if lines else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _as_oserror(e: Exception, url: str) -> OSError:
    """A backend's exception as an OSError (what local reads raise), one line, naming no secret.
    Backends raise their own errors for what is no file-system error (an endpoint that cannot be
    reached: botocore's EndpointConnectionError); callers catch OSError for all of them."""
    if isinstance(e, OSError) and not isinstance(e, (FileNotFoundError, PermissionError)):
        return OSError(e.errno or errno.EIO, _first_line(e))
    if isinstance(e, FileNotFoundError):
        return FileNotFoundError(errno.ENOENT, f"no such object: {public_url(url)}")
    if isinstance(e, PermissionError):
        return PermissionError(errno.EACCES, f"access denied: {_first_line(e)}")
    return OSError(errno.EIO, _first_line(e))


class RemoteInput:
    """An open remote object for reading: an fsspec file (range requests of ``block_size``
    bytes, read ahead) whose errors are OSErrors, as a local file's are, so that the formats'
    bad-record accounting treats a broken connection as an I/O error mid-file."""

    def __init__(self, f: Any, url: str):
        self._f = f
        self.url = url

    def _call(self, fn: Callable, *args):
        try:
            return fn(*args)
        except OSError as e:
            if isinstance(e, (FileNotFoundError, PermissionError)) or not e.strerror:
                raise _as_oserror(e, self.url) from None
            raise
        except Exception as e:  # noqa: BLE001 - a backend's own error (botocore, aiohttp ...)
            raise _as_oserror(e, self.url) from None

    def read(self, n: int = -1) -> bytes:
        return self._call(self._f.read, n)

    def readinto(self, b) -> int:
        return self._call(self._f.readinto, b)

    def seek(self, pos: int, whence: int = 0) -> int:
        return self._call(self._f.seek, pos, whence)

    def tell(self) -> int:
        return self._f.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return self._f.closed

    @property
    def size(self) -> int:
        return self._f.size

    def close(self) -> None:
        try:
            self._f.close()
        except Exception:  # noqa: BLE001 - closing a read-only object has nothing to lose
            pass

    def __enter__(self) -> "RemoteInput":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_input(url: str, block_size: int = BLOCK_SIZE, cache_type: str = "readahead") -> RemoteInput:
    """``url`` opened for streaming reads: bytes are fetched by range requests as they are read
    (each read's bytes plus ``block_size`` ahead, fsspec's "readahead" cache; "none": exactly the
    bytes read), never the whole object at once. OSError (FileNotFoundError, PermissionError ...)
    with a one-line message when it cannot be opened."""
    fs, path = filesystem(url)
    try:
        f = fs.open(path, "rb", block_size=block_size, cache_type=cache_type)
    except Exception as e:  # noqa: BLE001 - see _as_oserror
        raise _as_oserror(e, url) from None
    return RemoteInput(f, url)


def size_of(path: str) -> int:
    """The size in bytes of a local file or a remote object (OSError when it cannot be found)."""
    if not is_url(path):
        import os

        return os.stat(path).st_size
    fs, fspath = filesystem(path)
    try:
        return int(fs.info(fspath).get("size") or 0)
    except Exception as e:  # noqa: BLE001 - see _as_oserror
        raise _as_oserror(e, path) from None


def mtime_ns(info: dict) -> int:
    """When an object was last written, in ns since the epoch, from its listing entry (S3
    LastModified, Azure last_modified, GCS updated / mtime); 0 where the backend gives none."""
    for key in _MTIME_KEYS:
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            try:
                value = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
        if isinstance(value, _dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=_dt.timezone.utc)
            delta = value - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
            return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000
        if isinstance(value, (int, float)):
            return int(value * 10**9)
    return 0


# -- discovery ------------------------------------------------------------------------------------

#: one object found under a URL argument: (its URL, its root URL, named explicitly, size, mtime_ns)
Found = tuple[str, str, bool, int, int]


def has_magic(url: str) -> bool:
    """Whether the path of ``url`` holds a glob wildcard (``*``, ``?``, ``[``)."""
    return _MAGIC.search(urllib.parse.urlsplit(url).path) is not None


def discover_url(arg: str, *, warn: Callable[[str], None], ignored: Callable[[str], bool],
                 own_dirs: tuple[str, ...], own_files: tuple[str, ...]) -> list[Found]:
    """The objects an URL argument names: one object, every object under a prefix ("directory",
    recursively), or those matching a glob (``*``, ``?``, ``[...]``, ``**``), with the rules of
    local discovery: inside a prefix or glob, names for which ``ignored`` is true are skipped, as
    are hidden and ``own_dirs`` folders, ``own_files`` next to an ``own_dirs`` folder, and a scan's
    OUT (config.json with annotations/, partials/ or done/ objects: warned). A Hugging Face saved
    dataset (state.json + dataset_info.json) is refused: it is read from local disk only.

    FileNotFoundError when nothing is there; ConfigError for an unusable URL, a missing backend,
    or a store that cannot be reached or read."""
    url = arg
    fs, path = filesystem(url)
    shown = public_url(url)
    try:
        try:  # an object or prefix of this very name first, as local discovery does
            info = fs.info(path)
        except FileNotFoundError:
            info = None
        if info is None and has_magic(url):
            try:
                matched = fs.glob(path, detail=True)
            except ValueError as e:
                raise ConfigError(f"{shown}: not a usable glob pattern ({_first_line(e)})") from None
            if not matched:
                raise FileNotFoundError(f"no objects match {shown!r}")
            root = _glob_root(url)
            entries: dict[str, dict] = {}
            for p, found in sorted(matched.items()):
                if found.get("type") == "directory":
                    entries.update(fs.find(p, detail=True))
                else:
                    entries[p] = found
            return _listed(root, fs, entries, warn, ignored, own_dirs, own_files)
        if info is None:
            raise FileNotFoundError(f"no such file or directory: {shown}")
        if info.get("type") != "directory":
            root = url.rstrip("/").rpartition("/")[0]
            return [(url.rstrip("/"), root, True, int(info.get("size") or 0), mtime_ns(info))]
        root = url.rstrip("/")
        return _listed(root, fs, fs.find(path, detail=True), warn, ignored, own_dirs, own_files)
    except (ConfigError, FileNotFoundError):
        raise
    except Exception as e:  # noqa: BLE001 - access denied, endpoint unreachable, a backend's own error
        why = _as_oserror(e, url)
        raise ConfigError(f"{shown}: cannot list ({why.strerror or _first_line(why)})") from None
    finally:
        # the listing is in the shards now: a backend's cached copy (s3fs keeps every listing)
        # would hold memory for the whole scan and answer later opens with what was listed
        fs.invalidate_cache()


def _glob_root(url: str) -> str:
    """The URL up to the folder before the first wildcard."""
    head, sep, _ = url.partition("://")
    parts = url[len(head) + len(sep):].split("/")
    kept: list[str] = []
    for part in parts[:-1]:
        if _MAGIC.search(part):
            break
        kept.append(part)
    return f"{head}://{'/'.join(kept)}"


def _listed(root: str, fs: Any, entries: dict[str, dict], warn: Callable[[str], None],
            ignored: Callable[[str], bool], own_dirs: tuple[str, ...],
            own_files: tuple[str, ...]) -> list[Found]:
    """The objects of a listing (fsspec path -> info) under ``root`` as Found, after the skip
    rules of :func:`discover_url`; names relative to ``root``."""
    base = fs._strip_protocol(root).rstrip("/")
    rels: dict[str, dict] = {}
    for p, info in entries.items():
        if info.get("type") == "directory":
            continue
        p = p.rstrip("/")
        if not p.startswith(base + "/"):
            continue  # the folder marker of the prefix itself
        rels[p[len(base) + 1:]] = info
    folders = {posixpath.dirname(r) for r in rels}
    every_folder = {"/".join(r.split("/")[:i]) for r in rels for i in range(1, r.count("/") + 1)}
    scan_outs = sorted(d for d in every_folder if _is_scan_out(d, rels))
    saved = sorted(d for d in folders if _join(d, "state.json") in rels and _join(d, "dataset_info.json") in rels)
    if saved:
        raise ConfigError(f"{root}/{saved[0]}: a saved Hugging Face dataset is read from local disk only; "
                          f"copy it to a local folder first")
    for d in scan_outs:
        if not any(d.startswith(o + "/") for o in scan_outs):
            warn(f"skipping {root}/{d}: a llama-audit scan output (OUT), not corpus files")
    found: list[Found] = []
    for rel, info in sorted(rels.items()):
        folder, _, name = rel.rpartition("/")
        parts = folder.split("/") if folder else []
        if any(part.startswith(".") or part in own_dirs for part in parts):
            continue
        if any(rel.startswith(d + "/") for d in scan_outs):
            continue
        if ignored(name):
            continue
        if name in own_files and any(_join(folder, o) in every_folder for o in own_dirs):
            continue
        found.append((f"{root}/{rel}", root, False, int(info.get("size") or 0), mtime_ns(info)))
    return found


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _is_scan_out(d: str, rels: dict[str, dict]) -> bool:
    """A scan's OUT in a listing: config.json and objects under annotations/, partials/ or done/
    (an object store has no empty folders)."""
    if _join(d, "config.json") not in rels:
        return False
    prefixes = tuple(_join(d, sub) + "/" for sub in ("annotations", "partials", "done"))
    return any(r.startswith(prefixes) for r in rels)

