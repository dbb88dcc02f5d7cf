"""OUT on disk: atomic writes that honour the umask, annotation bytes independent of batching,
stale temporaries, damaged shard outputs detected by a footer read."""

import os
import stat
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llama_audit import partials
from llama_audit.store import (AtomicParquetWriter, OutDir, atomic_output, atomic_write_bytes, atomic_write_json,
                               atomic_write_table)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_every_output_file_honours_the_umask(tmp_path, umask):
    """Files were 0600 whatever the umask (tempfile.mkstemp): a team could not read them."""
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        atomic_write_json(tmp_path / "b.json", {"a": 1})
        atomic_write_table(tmp_path / "c.parquet", pa.table({"a": [1]}))
        with atomic_output(tmp_path / "clean" / "d.jsonl") as tmp:  # how filter writes CLEAN
            tmp.write_text("{}\n")
        w = AtomicParquetWriter(tmp_path / "e.parquet", pa.schema([("a", pa.int64())]))
        w.write(pa.table({"a": [1, 2]}))
        w.commit()
    finally:
        os.umask(old)
    for name in ("a.bin", "b.json", "c.parquet", "clean/d.jsonl", "e.parquet"):
        assert _mode(tmp_path / name) == 0o666 & ~umask, name


def test_annotation_bytes_do_not_depend_on_how_rows_arrive(tmp_path):
    """--batch-docs changed the annotation bytes (one row group per batch)."""
    n = 10_000
    table = pa.table({"doc_id": [f"d{i}" for i in range(n)], "row": list(range(n)),
                      "tags": [[f"t{i % 7}"] if i % 3 else None for i in range(n)]})
    outputs = []
    for batch in (1000, 997, 4096, n):  # 997 divides neither the group size nor the rows
        path = tmp_path / f"b{batch}.parquet"
        w = AtomicParquetWriter(path, table.schema, row_group_rows=4096)
        for start in range(0, n, batch):
            w.write(table.slice(start, batch))
        w.commit()
        outputs.append(path.read_bytes())
    assert all(o == outputs[0] for o in outputs)
    meta = pq.read_metadata(tmp_path / "b997.parquet")
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [4096, 4096, 1808]
    assert pq.read_table(tmp_path / "b997.parquet").equals(table)


def test_stale_temporaries_of_our_naming_are_removed_but_not_a_live_holders(tmp_path):
    out = OutDir(tmp_path / "out")
    for d in (out.annotations, out.partials, out.done, out.summary):
        d.mkdir(parents=True)
    old_tmp = out.annotations / ".a.parquet.1a2b3c4d.tmp"
    old_tmp.write_bytes(b"half")
    legacy = out.partials / ".p.parquet.k_9zq0ab.tmp"  # tempfile.mkstemp's naming of earlier versions
    legacy.write_bytes(b"half")
    past = time.time() - 3600
    os.utime(old_tmp, (past, past))
    os.utime(legacy, (past, past))
    live_tmp = out.annotations / ".b.parquet.0f0f0f0f.tmp"  # written by a holder that started after `past`
    live_tmp.write_bytes(b"being written")
    mine = out.annotations / "notes.tmp"  # not our naming: never touched
    mine.write_bytes(b"user file")
    removed = out.remove_stale_temporaries(older_than=time.time() - 60)
    assert sorted(removed) == sorted([old_tmp, legacy])
    assert live_tmp.exists() and mine.exists()
    assert out.remove_stale_temporaries(older_than=None) == [live_tmp]  # no live holder at all
    assert mine.exists()


def _finished_shard(out: OutDir, key: str = "k") -> dict:
    atomic_write_table(out.annotation_path(key), pa.table({"doc_id": ["a", "b"], "row": [0, 1]}))
    atomic_write_table(out.partial_path(key), partials.to_table({"corpus": {"documents": 2}}))
    rec = {"key": key, "shard": "k.jsonl", "documents": 2, "bad_records": 0}
    atomic_write_json(out.done_path(key), rec)
    return rec


def test_damaged_shard_outputs_are_detected_from_their_footers(tmp_path):
    out = OutDir(tmp_path / "out")
    rec = _finished_shard(out)
    assert out.damaged("k", rec) is None
    for path, what in ((out.partial_path("k"), "partial file unreadable"),
                       (out.annotation_path("k"), "annotations file unreadable")):
        good = path.read_bytes()
        path.write_bytes(good[: len(good) // 2])  # truncated: no footer
        assert out.damaged("k", rec).startswith(what)
        path.write_bytes(good)
    assert "2 rows, the done marker says 3" in out.damaged("k", {**rec, "documents": 3})
    assert "lacks" in out.damaged("k", {"key": "k"})
    out.partial_path("k").unlink()
    assert out.damaged("k", rec) == "partial file missing"
    out.done_path("k").write_text('{"key": "k", "sha')  # truncated done marker
    assert out.read_done("k") is None


def test_clear_removes_every_output_of_a_scan_and_its_report(tmp_path):
    """``scan --overwrite`` starts from an empty OUT: old figures of ``report`` (OUT/report/) and
    review samples go with the annotations, or they would describe another configuration."""
    out = OutDir(tmp_path / "out")
    for d in (out.annotations, out.partials, out.done, out.summary, out.errors, out.samples, out.figures):
        d.mkdir(parents=True, exist_ok=True)
        (d / "x").write_text("old")
    for p in (out.config_path, out.manifest_path, out.plan_path):
        p.write_text("{}")
    out.clear()
    assert [p.name for p in (tmp_path / "out").iterdir()] == []
