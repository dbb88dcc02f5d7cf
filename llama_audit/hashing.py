"""The one place files are hashed: whole-file sha256 (models, lexicons; cached per path, size and
mtime) and the cheap fingerprint that tells whether a shard file is still the one scanned."""

from __future__ import annotations

import errno
import hashlib
import os
from functools import lru_cache

FINGERPRINT_BLOCK = 1 << 20  # bytes hashed at each end of a shard file


def _open_shard(path: str):
    """A shard file for reading: local, or a remote object read by range requests of one block."""
    from .corpus import remote  # imported when used: hashing is imported by layers below corpus
    from .types import ConfigError

    if remote.is_url(path):
        try:  # no read-ahead: exactly the two blocks hashed are fetched
            return remote.open_input(path, block_size=FINGERPRINT_BLOCK, cache_type="none")
        except ConfigError as e:  # its backend is not installed here
            raise OSError(errno.EIO, str(e)) from None
    return open(path, "rb")


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
    """Cheap identity of a shard file: its size and the sha256 of its first and last MiB.

    A remote object (a URL) is fingerprinted the same way, by two range requests of one MiB: the
    same bytes give the same fingerprint wherever they are read from (a corpus copied to a bucket
    keeps the report's shard fingerprint). An ETag would save the two requests but is no content
    hash (a multipart upload's depends on its part size) and not every backend has one."""
    h = hashlib.sha256(str(size).encode())
    with _open_shard(os.fspath(path)) as f:
        h.update(f.read(FINGERPRINT_BLOCK))
        if size > 2 * FINGERPRINT_BLOCK:
            f.seek(size - FINGERPRINT_BLOCK)
            h.update(f.read(FINGERPRINT_BLOCK))
    return h.hexdigest()[:32]
