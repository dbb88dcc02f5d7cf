"""The one place files are hashed: whole-file sha256 (models, lexicons; cached per path, size and
mtime) and the cheap fingerprint that tells whether a shard file is still the one scanned."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache

FINGERPRINT_BLOCK = 1 << 20  # bytes hashed at each end of a shard file


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a whole file, computed once per (path, size, mtime)."""
    real = os.path.realpath(path)
    st = os.stat(real)
    return _sha256(real, st.st_size, st.st_mtime_ns)


def fingerprint(path: str | os.PathLike, size: int) -> str:
    """Cheap identity of a shard file: its size and the sha256 of its first and last MiB."""
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(FINGERPRINT_BLOCK))
        if size > 2 * FINGERPRINT_BLOCK:
            f.seek(size - FINGERPRINT_BLOCK)
            h.update(f.read(FINGERPRINT_BLOCK))
    return h.hexdigest()[:32]
