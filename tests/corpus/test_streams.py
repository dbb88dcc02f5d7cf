"""Byte streams of shard files (llama_audit/corpus/streams.py): what a rewrite writes."""

from __future__ import annotations

import gzip

import pytest

from llama_audit.corpus.streams import open_writer


@pytest.mark.parametrize("fmt", ["jsonl.gz", "jsonl.zst", "txt.gz", "jsonl"])
def test_a_rewritten_shard_does_not_depend_on_its_temporary_name(tmp_path, fmt):
    """filter writes each shard to a random temporary name first: a gzip header that recorded it
    made every rewrite of the same input differ (same input and config must give the same bytes)."""
    written = []
    for name in (".a.jsonl.gz.1234abcd.tmp", ".a.jsonl.gz.ffff0000.tmp"):
        with open_writer(tmp_path / name, fmt) as f:
            f.write(b'{"text":"x"}\n')
        written.append((tmp_path / name).read_bytes())
    assert written[0] == written[1]
    if fmt.endswith(".gz"):
        assert gzip.decompress(written[0]) == b'{"text":"x"}\n'
