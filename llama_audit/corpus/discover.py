"""Find the shards of a corpus from files, directories and glob patterns."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import sys
from typing import Callable, Iterator, Sequence

from .records import Shard, UnsupportedFormat
from .registry import SUFFIXES, SUPPORTED_FORMATS_TEXT

_HF_STATE = "state.json"
_HF_INFO = "dataset_info.json"
_HF_DICT = "dataset_dict.json"
_MAX_KEY_REL = 160  # characters of the sanitized rel kept in a key (file names max out at 255 bytes)


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
    """A filesystem-safe, unique, deterministic output name: sanitized rel + '-' + sha1(path)[:8]."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", rel.replace("/", "__"))
    if len(safe) > _MAX_KEY_REL:
        half = _MAX_KEY_REL // 2
        safe = safe[:half] + "~" + safe[-half:]
    if safe.startswith((".", "-")):
        safe = "_" + safe[1:]
    digest = hashlib.sha1(os.path.abspath(path).encode("utf-8", "surrogateescape")).hexdigest()[:8]
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
    st = os.stat(path)
    rel = os.path.relpath(path, root).replace(os.sep, "/")
    return Shard(path=path, root=root, rel=rel, format=fmt, size=st.st_size,
                 mtime_ns=st.st_mtime_ns, key=shard_key(rel, path))


def _unsupported_message(path: str) -> str:
    return (f"unsupported file type: {path} (supported: {SUPPORTED_FORMATS_TEXT}; "
            f"use --skip-unknown to skip other files)")


def _ignored_name(name: str) -> bool:
    """Files skipped silently inside directories: hidden, Hadoop/Spark markers, checksums."""
    return name.startswith((".", "_")) or name.lower().endswith(".crc")


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
    return [os.path.join(d, n) for n in names]


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
            if name.startswith("."):
                continue
            sub = os.path.join(dirpath, name)
            if _is_hf_dict(sub) or _is_hf_dataset(sub):
                yield from _walk(sub, warn)
            else:
                keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            if not _ignored_name(name):
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
    """The shards named by ``paths`` (files, directories searched recursively, or glob patterns).

    The result is sorted by (root, rel) and each file appears once (the same real file reached
    through several arguments or symlinks is read once, under the first root in that order).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]  # type: ignore[list-item]
    # (absolute path, root, explicit, format-or-None)
    candidates: list[tuple[str, str, bool, str | None]] = []
    for arg in paths:
        arg = os.fspath(arg)
        expanded = os.path.expanduser(arg)
        if os.path.exists(expanded):
            matches, root, explicit = [expanded], None, True
        elif glob.has_magic(expanded):
            matches = sorted(glob.glob(expanded, recursive=True))
            if not matches:
                raise FileNotFoundError(f"no files match {arg!r}")
            root, explicit = _glob_base(expanded), False
        else:
            raise FileNotFoundError(f"no such file or directory: {arg}")
        before = len(candidates)
        for m in matches:
            m = os.path.abspath(m)
            if os.path.isdir(m):
                droot = root if root is not None else m
                for p, fmt in _walk(m, warn):
                    candidates.append((os.path.abspath(p), droot, False, fmt))
            else:
                froot = root if root is not None else os.path.dirname(m)
                if not explicit:
                    name = os.path.basename(m)
                    if _ignored_name(name):
                        continue
                    if _in_hf_dir(m):
                        # a glob reached into a saved dataset: take its data files only
                        if name.lower().endswith(".arrow"):
                            candidates.append((m, froot, False, "hf_arrow"))
                        continue
                candidates.append((m, froot, explicit, None))
        if len(candidates) == before:
            warn(f"no corpus files found in {arg}")

    shards: list[Shard] = []
    for path, root, explicit, fmt in candidates:
        if fmt is None:
            fmt = detect_format(os.path.basename(path))
        if fmt is None:
            if skip_unknown:
                warn(f"skipping {path}: unsupported file type")
                continue
            raise UnsupportedFormat(_unsupported_message(path))
        try:
            shards.append(make_shard(path, root, fmt))
        except FileNotFoundError:  # a dangling symlink, or a file listed in state.json but gone
            raise FileNotFoundError(f"no such file: {path}") from None

    shards.sort(key=lambda s: (s.root, s.rel, s.path))
    out: list[Shard] = []
    seen: set[str] = set()
    for s in shards:
        real = os.path.realpath(s.path)
        if real not in seen:
            seen.add(real)
            out.append(s)
    return out
