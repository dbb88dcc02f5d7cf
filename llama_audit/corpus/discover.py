"""Find the shards of a corpus from files, directories and glob patterns."""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import posixpath
import re
import sys
from collections import Counter
from typing import Callable, Iterator, Sequence

from ..types import ConfigError
from . import remote
from .records import Shard, UnsupportedFormat, unsafe_rel
from .registry import SUFFIXES, SUPPORTED_FORMATS_TEXT

_HF_STATE = "state.json"
_HF_INFO = "dataset_info.json"
_HF_DICT = "dataset_dict.json"
_MAX_KEY_REL = 160  # characters of the sanitized rel kept in a key (file names max out at 255 bytes)
#: folders llama-audit keeps its own bookkeeping in inside a corpus it wrote (filter's CLEAN)
_OWN_DIRS = ("_llama_audit", ".filter")
#: filter's files at the top of CLEAN; bookkeeping only where an _OWN_DIRS folder sits next to them
_OWN_FILES = ("filter_log.parquet", "filter_manifest.json")
#: control characters and the bytes of a file name that are not UTF-8 (decoded as surrogates)
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f\udc80-\udcff]")


def _default_warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def detect_format(name: str) -> str | None:
    """The shard format for a file name, from its ending (case-insensitive), or None."""
    lower = name.lower()
    for suffix, fmt in SUFFIXES:
        if lower.endswith(suffix):
            return fmt
    return None


def shard_key(rel: str, path: str) -> str:
    """A filesystem-safe, unique, deterministic output name: sanitized rel + '-' + sha1(path)[:8].

    ``path`` is a local file's absolute path, or a URL as given (``s3://bucket/a.jsonl``: the same
    key on every machine and from every working directory)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", rel.replace("/", "__"))
    if len(safe) > _MAX_KEY_REL:
        half = _MAX_KEY_REL // 2
        safe = safe[:half] + "~" + safe[-half:]
    if safe.startswith((".", "-")):
        safe = "_" + safe[1:]
    named = path if remote.is_url(path) else os.path.abspath(path)
    digest = hashlib.sha1(named.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{safe}-{digest}"


def make_shard(path: str, root: str | None = None, fmt: str | None = None) -> Shard:
    """A :class:`Shard` for one file (root defaults to its parent directory).

    Raises UnsupportedFormat when ``fmt`` is not given and the name is not recognised.
    """
    path = os.path.abspath(path)
    root = os.path.abspath(root) if root is not None else os.path.dirname(path)
    if fmt is None:
        fmt = detect_format(os.path.basename(path))
        if fmt is None:
            raise UnsupportedFormat(_unsupported_message(path))
    native = os.path.relpath(path, root)
    if native == os.curdir or native == os.pardir or native.startswith(os.pardir + os.sep) or os.path.isabs(native):
        raise ValueError(f"{path} is not under its root {root}")
    rel = printable_name(native.replace(os.sep, "/"))
    why = unsafe_rel(rel)
    if why is not None:  # cannot happen for a normalised path under root; checked where names are made
        raise ValueError(f"{path}: shard name {rel!r} is unsafe ({why})")
    st = os.stat(path)
    return Shard(path=path, root=root, rel=rel, format=fmt, size=st.st_size,
                 mtime_ns=st.st_mtime_ns, key=shard_key(rel, path))


def printable_name(rel: str) -> str:
    """``rel`` with control characters and bytes that are not UTF-8 written as ``%XX``: the shard
    name goes into Parquet, JSON, logs and terminals, and names files under CLEAN."""
    if not _UNPRINTABLE.search(rel):
        return rel
    return _UNPRINTABLE.sub(lambda m: "%{:02X}".format(ord(m.group()) & 0xFF), rel)


def _unsupported_message(path: str) -> str:
    return (f"unsupported file type: {path} (supported: {SUPPORTED_FORMATS_TEXT}; "
            f"use --skip-unknown to skip other files)")


def _ignored_name(name: str) -> bool:
    """Files skipped silently inside directories: hidden, Hadoop/Spark markers, checksums."""
    return name.startswith((".", "_")) or name.lower().endswith(".crc")


def _is_scan_out(d: str) -> bool:
    """A scan's OUT (config.json, annotations/, done/): its Parquet and JSON files are no corpus."""
    return (os.path.isfile(os.path.join(d, "config.json")) and os.path.isdir(os.path.join(d, "annotations"))
            and os.path.isdir(os.path.join(d, "done")))


def _own_file(dirpath: str, name: str) -> bool:
    """filter's log and manifest at the top of a CLEAN (known by the bookkeeping folder next to them)."""
    return name in _OWN_FILES and any(os.path.isdir(os.path.join(dirpath, d)) for d in _OWN_DIRS)


def _is_hf_dataset(d: str) -> bool:
    return os.path.isfile(os.path.join(d, _HF_STATE)) and os.path.isfile(os.path.join(d, _HF_INFO))


def _is_hf_dict(d: str) -> bool:
    return os.path.isfile(os.path.join(d, _HF_DICT))


def _hf_dataset_files(d: str, warn: Callable[[str], None]) -> list[str]:
    """The .arrow files of a save_to_disk directory, as listed in its state.json.

    state.json is authoritative: `datasets` may leave cache-*.arrow files next to the data.
    """
    try:
        with open(os.path.join(d, _HF_STATE), "rb") as f:
            state = json.load(f)
        names = [entry["filename"] for entry in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        names = sorted(n for n in os.listdir(d) if n.startswith("data-") and n.endswith(".arrow"))
        warn(f"{d}: cannot read the file list in {_HF_STATE} ({type(e).__name__}); "
             f"using its data-*.arrow files ({len(names)})")
    plain = [n for n in names if isinstance(n, str) and n not in ("", ".", "..") and os.path.basename(n) == n]
    if len(plain) < len(names):
        warn(f"{d}: {len(names) - len(plain)} file name(s) in {_HF_STATE} are not plain names in the "
             f"dataset folder; skipped")
    return [os.path.join(d, n) for n in plain]


def _hf_dict_files(d: str, warn: Callable[[str], None]) -> list[str]:
    try:
        with open(os.path.join(d, _HF_DICT), "rb") as f:
            splits = json.load(f)["splits"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        splits = sorted(n for n in os.listdir(d) if _is_hf_dataset(os.path.join(d, n)))
        warn(f"{d}: cannot read the split list in {_HF_DICT} ({type(e).__name__}); "
             f"using its dataset subdirectories ({len(splits)})")
    out: list[str] = []
    for split in splits:
        sd = os.path.join(d, str(split))
        if _is_hf_dataset(sd):
            out.extend(_hf_dataset_files(sd, warn))
        else:
            warn(f"{d}: split {split!r} listed in {_HF_DICT} has no saved dataset in {sd}; skipped")
    return out


def _walk(d: str, warn: Callable[[str], None]) -> Iterator[tuple[str, str | None]]:
    """(path, format or None for 'ask by name') for every candidate file under directory d."""
    if _is_hf_dict(d):
        for p in _hf_dict_files(d, warn):
            yield p, "hf_arrow"
        return
    if _is_hf_dataset(d):
        for p in _hf_dataset_files(d, warn):
            yield p, "hf_arrow"
        return
    seen: set[str] = set()
    def onerror(e: OSError) -> None:
        warn(f"cannot list {e.filename}: {e.strerror or type(e).__name__}; skipped")

    for dirpath, dirnames, filenames in os.walk(d, onerror=onerror, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # symlink loop
            dirnames[:] = []
            continue
        seen.add(real)
        keep = []
        for name in sorted(dirnames):
            if name.startswith(".") or name in _OWN_DIRS:
                continue
            sub = os.path.join(dirpath, name)
            if _is_scan_out(sub):
                warn(f"skipping {sub}: a llama-audit scan output (OUT), not corpus files")
                continue
            if _is_hf_dict(sub) or _is_hf_dataset(sub):
                yield from _walk(sub, warn)
            else:
                keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            if not _ignored_name(name) and not _own_file(dirpath, name):
                yield os.path.join(dirpath, name), None


def _glob_base(pattern: str) -> str:
    """The directory part of a glob pattern before its first wildcard."""
    parts = pattern.split(os.sep)
    base: list[str] = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        base.append(part)
    if not base:
        return os.getcwd()
    joined = os.sep.join(base)
    return os.path.abspath(joined or os.sep)


def _in_hf_dir(path: str) -> bool:
    parent = os.path.dirname(path)
    return _is_hf_dataset(parent) or _is_hf_dict(parent) or _is_hf_dict(os.path.dirname(parent))


def discover(
    paths: Sequence[str],
    *,
    skip_unknown: bool = False,
    warn: Callable[[str], None] = _default_warn,
) -> list[Shard]:
    """The shards named by ``paths`` (files, directories searched recursively, or glob patterns;
    local paths, ``file://`` URLs, or fsspec URLs of objects, prefixes and globs, see
    :func:`llama_audit.corpus.remote.discover_url`).

    The result is sorted by (root, rel) and each file appears once (the same real file reached
    through several arguments or symlinks is read once, under the first root in that order).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]  # type: ignore[list-item]
    # (absolute path or URL, root, explicit, format-or-None, what a listing said or None: a local
    # file is stat'ed); a listing is (rel, size, mtime_ns)
    candidates: list[tuple[str, str, bool, str | None, tuple[str, int, int] | None]] = []
    for arg in paths:
        arg = remote.local_path(os.fspath(arg))
        if remote.is_url(arg):
            before = len(candidates)
            candidates.extend(_url_candidates(arg, warn))
            if len(candidates) == before:
                warn(f"no corpus files found in {remote.public_url(arg)}")
            continue
        expanded = os.path.expanduser(arg)
        if os.path.exists(expanded):
            matches, root, explicit = [expanded], None, True
        elif glob.has_magic(expanded):
            found = sorted(glob.glob(expanded, recursive=True))
            if not found:
                raise FileNotFoundError(f"no files match {arg!r}")
            base = _glob_base(expanded)
            own: dict[str, bool] = {}
            matches = [m for m in (_resolved_match(f) for f in found) if not _in_own_dir(m, base, own)]
            # a pattern may climb out of its base ('x/*/../../y/*.jsonl'): the root is then the
            # nearest folder above everything it matched, so that no shard name holds '..'
            root, explicit = os.path.commonpath([base, *matches]) if matches else base, False
        else:
            raise FileNotFoundError(f"no such file or directory: {arg}")
        before = len(candidates)
        for m in matches:
            m = os.path.abspath(m)
            if os.path.isdir(m):
                droot = root if root is not None else m
                for p, fmt in _walk(m, warn):
                    candidates.append((os.path.abspath(p), droot, False, fmt, None))
            else:
                froot = root if root is not None else os.path.dirname(m)
                if not explicit:
                    name = os.path.basename(m)
                    if _ignored_name(name) or _own_file(os.path.dirname(m), name):
                        continue
                    if _in_hf_dir(m):
                        # a glob reached into a saved dataset: take its data files only
                        if name.lower().endswith(".arrow"):
                            candidates.append((m, froot, False, "hf_arrow", None))
                        continue
                candidates.append((m, froot, explicit, None, None))
        if len(candidates) == before:
            warn(f"no corpus files found in {arg}")

    shards: list[Shard] = []
    for path, root, explicit, fmt, listed in candidates:
        if fmt is None:
            fmt = detect_format(posixpath.basename(listed[0]) if listed else os.path.basename(path))
        if fmt is None:
            if skip_unknown:
                warn(f"skipping {path}: unsupported file type")
                continue
            raise UnsupportedFormat(_unsupported_message(path))
        if listed is not None:
            shards.append(_listed_shard(path, root, fmt, listed))
            continue
        try:
            shards.append(make_shard(path, root, fmt))
        except FileNotFoundError:  # a dangling symlink, or a file listed in state.json but gone
            raise FileNotFoundError(f"no such file: {path}") from None

    shards.sort(key=lambda s: (s.root, s.rel, s.path))
    out: list[Shard] = []
    seen: set[str] = set()
    for s in shards:
        real = s.path if remote.is_url(s.root) else os.path.realpath(s.path)
        if real not in seen:
            seen.add(real)
            out.append(s)
    return _unique_names(out)


def _url_candidates(arg: str, warn: Callable[[str], None]):
    """discover()'s candidates for a URL argument: the Hub's files (``hf://``, listed by
    :mod:`llama_audit.corpus.hub`) or the objects :func:`remote.discover_url` finds."""
    if remote.scheme(arg) == "hf":
        try:
            from .hub import list_hub_files
        except ImportError:
            raise ConfigError(f"{remote.public_url(arg)}: hf:// corpora are not supported by this version") from None
        root, files = list_hub_files(arg)
        return [(open_path, root, False, None, (rel, size, mtime))
                for open_path, rel, size, mtime in files]
    found = remote.discover_url(arg, warn=warn, ignored=_ignored_name, own_dirs=_OWN_DIRS, own_files=_OWN_FILES)
    return [(url, root, explicit, None, (url[len(root) + 1:], size, mtime))
            for url, root, explicit, size, mtime in found]


def _listed_shard(path: str, root: str, fmt: str, listed: tuple[str, int, int]) -> Shard:
    """The Shard of an object found by a listing (remote, or the Hub): named relative to its root
    URL, keyed by its URL (the same on every machine), size and time from the listing."""
    raw, size, mtime_ns = listed
    if fmt == "hf_arrow" and remote.is_url(path):  # memory-mapped: a Hub file in the local cache is fine
        raise ConfigError(f"{remote.public_url(path)}: Arrow files (saved datasets) are read from local "
                          f"disk only; copy them to a local folder first")
    rel = printable_name(raw)
    why = unsafe_rel(rel)
    if why is not None:
        raise ConfigError(f"{remote.public_url(path)}: the object name {rel!r} cannot name a shard ({why}); "
                          f"rename the object or name the others with a glob")
    return Shard(path=path, root=root, rel=rel, format=fmt, size=size, mtime_ns=mtime_ns,
                 key=shard_key(rel, _key_source(path, root, rel)))


def _key_source(path: str, root: str, rel: str) -> str:
    """What a listed shard's key hashes: its URL; for a Hub file read from the local cache, the
    URL it has on the Hub (root/rel), never the machine's cache path."""
    return path if remote.is_url(path) else f"{root}/{rel}"


def _common_url(roots: list[str]) -> str | None:
    """The longest URL folder above every root URL, or None when they are not all URLs of one
    scheme and host (bucket)."""
    split = [r.partition("://") for r in roots]
    if any(sep != "://" for _, sep, _ in split):
        return None
    heads = {(h.lower(), rest.split("/", 1)[0]) for h, _, rest in split}
    if len(heads) != 1:
        return None
    paths = [rest.split("/") for _, _, rest in split]
    common = paths[0]
    for parts in paths[1:]:
        n = 0
        while n < min(len(common), len(parts)) and common[n] == parts[n]:
            n += 1
        common = common[:n]
    return f"{split[0][0]}://{'/'.join(common)}"


def _unique_names(shards: list[Shard]) -> list[Shard]:
    """Shards whose names (rel) are unique: CLEAN is laid out by name, and the ``shard`` column
    tells documents apart by it. When two inputs hold files of the same name ('a/part-0.jsonl'
    and 'b/part-0.jsonl' given as 'a b'), every shard is named from the folder above all inputs
    instead ('a/part-0.jsonl', 'b/part-0.jsonl'); otherwise names stay relative to their own input."""
    if len({s.rel for s in shards}) == len(shards):
        return shards
    renamed = []
    if any(remote.is_url(s.root) for s in shards):
        common = _common_url([s.root for s in shards])
        if common is None:
            clash = next(rel for rel, n in Counter(s.rel for s in shards).items() if n > 1)
            raise ConfigError(f"input files in different places (local folders, buckets) share the shard name "
                              f"{clash!r}; scan them into separate --out folders")
        for s in shards:
            rel = f"{s.root}/{s.rel}"[len(common) + 1:]
            renamed.append(dataclasses.replace(s, root=common, rel=rel, key=shard_key(rel, _key_source(s.path, s.root, s.rel))))
    else:
        common = os.path.commonpath([s.root for s in shards])
        for s in shards:
            rel = printable_name(os.path.relpath(s.path, common).replace(os.sep, "/"))
            renamed.append(dataclasses.replace(s, root=common, rel=rel, key=shard_key(rel, s.path)))
    renamed.sort(key=lambda s: (s.root, s.rel, s.path))
    clashes = [rel for rel, n in Counter(s.rel for s in renamed).items() if n > 1]
    if clashes:  # only names that differ in control characters written as %XX
        paths = [s.path for s in renamed if s.rel == clashes[0]]
        raise ConfigError(f"{len(paths)} input files would share the shard name {clashes[0]!r} "
                          f"({', '.join(repr(p) for p in paths[:2])}); rename one of them")
    return renamed


def _resolved_match(m: str) -> str:
    """A glob match as an absolute path. A match through '..' is resolved as the file system
    does (a '..' after a symlink leads to the link target's parent, not back up the pattern)."""
    lexical = os.path.abspath(m)
    if os.pardir not in m.split(os.sep):
        return lexical
    physical = os.path.realpath(m)
    try:
        return lexical if os.path.samefile(lexical, physical) else physical
    except OSError:
        return physical


def _in_own_dir(path: str, base: str, known: dict[str, bool]) -> bool:
    """Whether a glob match lies in (or is) llama-audit's bookkeeping below the pattern's base:
    filter's _llama_audit/ or .filter/, or a scan's OUT ('CLEAN/**' must not read them).
    ``known`` caches the answer per folder across the matches of one pattern."""
    rel = os.path.relpath(path, base)
    if rel == os.curdir or rel.startswith(os.pardir):
        return False
    d = base
    for part in rel.split(os.sep):
        d = os.path.join(d, part)
        own = known.get(d)
        if own is None:
            own = known[d] = part in _OWN_DIRS or (os.path.isdir(d) and _is_scan_out(d))
        if own:
            return True
    return False
