"""Byte streams of shard files: counted reads, gzip / zstd decompression in bounded blocks, line
splitting, and compressed writers, shared by the formats that are streams of bytes (JSON lines,
plain text) so that both read and rewrite a ``.gz`` / ``.zst`` file the same way.

A stream that stops early (I/O error, corrupt or cut-off compressed data) raises
:class:`StreamEnd` while iterating; the format turns it into one bad record at the next row.
"""

from __future__ import annotations

import gzip
import hashlib
import sys
import zlib
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from ..types import ConfigError
from . import remote
from .records import STDIN_PATH, ShardUnreadable

PLAIN_CHUNK = 1 << 22  # bytes read at a time from an uncompressed file
GZ_IN_CHUNK = 1 << 18  # compressed bytes fed to zlib at a time
GZ_OUT_MAX = 1 << 22  # decompressed bytes taken from zlib at a time
ZST_IN_CHUNK = 1 << 17  # compressed bytes fed to zstd at a time
ZST_WRITE_LEVEL = 3  # zstd level of rewritten .zst shards
BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class StreamEnd(Exception):
    """The stream stopped early; the format makes it one BadRecord at the next row."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def error_text(e: BaseException) -> str:
    """Exception class and the first line of its message (library messages, never record data)."""
    msg = (getattr(e, "strerror", None) or str(e)).splitlines()
    first = msg[0][:160] if msg else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def compression(fmt: str) -> str | None:
    """``"gz"``, ``"zst"`` or None, from a shard format name such as ``jsonl.gz``."""
    if fmt.endswith(".gz"):
        return "gz"
    if fmt.endswith(".zst"):
        return "zst"
    return None


#: what the last stream read from standard input was: (bytes read, sha256 of them), see stdin_read
_stdin_seen: list[tuple[int, str]] = []


def stdin_read() -> dict | None:
    """``{"size": bytes read, "fingerprint": sha256 of them}`` of standard input as this process
    read it (``scan -``), or None before it was read. A stream cannot be read twice, so its done
    marker records this identity, computed while reading, in place of a file's fingerprint."""
    if not _stdin_seen:
        return None
    size, digest = _stdin_seen[-1]
    return {"size": size, "fingerprint": digest}


class ByteSource:
    """An unbuffered file that counts the bytes read and turns I/O errors into StreamEnd.

    A URL ``path`` (``s3://...``) is streamed by range requests (:func:`remote.open_input`),
    never downloaded whole; its errors are OSErrors as a local file's are.

    ``stream``: read this open binary stream instead of opening ``path`` (standard input for
    :data:`~llama_audit.corpus.records.STDIN_PATH`); it cannot seek, so the bytes peeked at are
    kept and read again, and a sha256 of everything read is kept (:func:`stdin_read`). The
    stream is not closed (it is not ours)."""

    def __init__(self, path: str, stream: BinaryIO | None = None):
        self.stream = stream is not None
        if stream is not None:
            self.f = stream
        else:
            try:
                self.f = remote.open_input(path) if remote.is_url(path) else open(path, "rb", buffering=0)
            except OSError as e:
                raise ShardUnreadable(f"{path}: cannot open: {error_text(e)}") from None
            except ConfigError as e:  # a URL whose backend this worker cannot load
                raise ShardUnreadable(str(e)) from None
        self.path = path
        self.pos = 0
        self.head = b""  # bytes peeked at on a stream, handed out again by the next read
        self.sha = hashlib.sha256() if self.stream else None

    def read(self, n: int) -> bytes:
        if self.head:
            b, self.head = self.head[:n], self.head[n:]
            self.pos += len(b)
            return b
        try:
            b = self.f.read(n)
        except OSError as e:
            raise StreamEnd("read_error", f"I/O error at byte {self.pos}: {error_text(e)}") from None
        b = b or b""
        if self.sha is not None:
            self.sha.update(b)
        self.pos += len(b)
        return b

    def peek_magic(self, path: str) -> bytes:
        if self.stream:
            head = self.read(4)  # a pipe may hand over fewer bytes per read: read up to 4 or EOF
            while 0 < len(head) < 4 and (more := self.read(4 - len(head))):
                head += more
            self.head, self.pos = head, self.pos - len(head)
            return head
        try:
            head = self.f.read(4)
            self.f.seek(0)
        except OSError as e:
            self.close()
            raise ShardUnreadable(f"{path}: cannot read: {error_text(e)}") from None
        return head

    def close(self) -> None:
        if not self.stream:
            self.f.close()
        elif self.sha is not None:
            _stdin_seen.append((self.pos + len(self.head), self.sha.hexdigest()[:32]))
            self.sha = None


def plain_chunks(src: ByteSource) -> Iterator[bytes]:
    while True:
        b = src.read(PLAIN_CHUNK)
        if not b:
            return
        yield b


def gzip_chunks(src: ByteSource) -> Iterator[bytes]:
    """Decompressed blocks of a (possibly multi-member) gzip file, with bounded output per step."""
    d = zlib.decompressobj(31)
    started = False
    while True:
        data = src.read(GZ_IN_CHUNK)
        if not data:
            break
        while data:
            if not started:
                data = data.lstrip(b"\0")  # zero padding between/after members, as gzip allows
                if not data:
                    break
                started = True
            try:
                out = d.decompress(data, GZ_OUT_MAX)
            except zlib.error as e:
                raise StreamEnd("read_error", f"corrupt gzip data before byte {src.pos}: {str(e)[:160]}") from None
            if out:
                yield out
            if d.eof:
                data = d.unused_data
                d = zlib.decompressobj(31)
                started = False
            else:
                data = d.unconsumed_tail
    if started and not d.eof:
        try:
            tail = d.flush()
        except zlib.error:
            tail = b""
        if tail:
            yield tail
        raise StreamEnd("truncated_stream", f"gzip stream ends early at byte {src.pos} (file cut short?)")


def zstd_chunks(src: ByteSource) -> Iterator[bytes]:
    """Decompressed blocks of a (possibly multi-frame) zstd file; detects a cut-off last frame."""
    import zstandard

    dctx = zstandard.ZstdDecompressor(max_window_size=1 << 31)
    d = dctx.decompressobj()
    started = False
    while True:
        data = src.read(ZST_IN_CHUNK)
        if not data:
            break
        while data:
            started = True
            try:
                out = d.decompress(data)
            except zstandard.ZstdError as e:
                raise StreamEnd("read_error", f"corrupt zstd data before byte {src.pos}: {error_text(e)}") from None
            if out:
                yield out
            if d.eof:
                data = d.unused_data
                d = dctx.decompressobj()
                started = False
            else:
                data = b""
    if started and not d.eof:
        raise StreamEnd("truncated_stream", f"zstd stream ends early at byte {src.pos} (file cut short?)")


def open_stream(path: str, fmt: str, stream: BinaryIO | None = None) -> tuple[ByteSource, Iterator[bytes]]:
    """The file's bytes (or ``stream``'s: standard input for
    :data:`~llama_audit.corpus.records.STDIN_PATH`), decompressed as the format name says
    (``.gz`` / ``.zst``), in blocks.

    Raises ShardUnreadable when the file cannot be opened, its magic bytes do not match, or a
    stream is empty (nothing was piped in: a mistake, where an empty file is a shard of none)."""
    if stream is None and path == STDIN_PATH:
        stream = sys.stdin.buffer
    src = ByteSource(path) if stream is None else ByteSource(path, stream)
    kind = compression(fmt)
    if src.stream and not src.peek_magic(path):
        src.close()
        raise ShardUnreadable(f"{path}: standard input is empty (nothing was piped in?)" if path == STDIN_PATH
                              else f"{path}: the stream is empty")
    if kind is None:
        return src, plain_chunks(src)
    magic = src.peek_magic(path)
    if kind == "gz":
        if magic and not magic.startswith(GZIP_MAGIC):
            src.close()
            raise ShardUnreadable(f"{path}: not a gzip file (bad magic bytes)")
        return src, gzip_chunks(src)
    skippable = len(magic) == 4 and magic[0] & 0xF0 == 0x50 and magic[1:] == b"\x2a\x4d\x18"
    if magic and not (magic == ZSTD_MAGIC or skippable):
        src.close()
        raise ShardUnreadable(f"{path}: not a zstd file (bad magic bytes)")
    return src, zstd_chunks(src)


def line_blocks(chunks: Iterable[bytes]) -> Iterator[list[bytes]]:
    """Lists of complete lines (without b'\\n'); a last line without newline comes last. A UTF-8
    byte order mark at the start is dropped."""
    tail: list[bytes] = []
    first = True
    for chunk in chunks:
        if first:
            first = False
            if chunk.startswith(BOM):
                chunk = chunk[3:]
        lines = chunk.split(b"\n")
        if len(lines) == 1:
            tail.append(chunk)
            continue
        if tail:
            tail.append(lines[0])
            lines[0] = b"".join(tail)
            tail = []
        last = lines.pop()
        if last:
            tail.append(last)
        yield lines
    if tail:
        yield [b"".join(tail)]


class _GzipWriter(gzip.GzipFile):
    """A gzip file with no name and no time in its header: a rewrite is written to a random
    temporary name first (store.atomic_output), which GzipFile would record, so that the same
    input gave other bytes on every run."""

    def __init__(self, path: Path):
        self._raw = open(path, "wb")
        super().__init__(filename="", mode="wb", fileobj=self._raw, mtime=0)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


def open_writer(path: Path, fmt: str) -> BinaryIO:
    """A binary file at ``path`` that compresses what is written as the format name says, so a
    rewritten shard keeps the compression of its input."""
    kind = compression(fmt)
    if kind == "gz":
        return _GzipWriter(path)
    if kind == "zst":
        import zstandard

        return zstandard.ZstdCompressor(level=ZST_WRITE_LEVEL).stream_writer(open(path, "wb"), closefd=True)
    return open(path, "wb")
