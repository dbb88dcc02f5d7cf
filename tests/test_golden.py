"""Golden outputs: the same input and configuration give the same annotations, partials, summary
and ``report --format json`` today as when the golden file was written, for every executor.

Driven through the command line only, so that refactors of the Python API cannot change what is
compared. Parquet files are compared by content (schema + rows, canonical JSON), so that a newer
pyarrow writing other bytes does not fail the test; within one run the executors are compared
byte for byte.

To rewrite the golden file after an intended change of output: ``LLAMA_AUDIT_WRITE_GOLDEN=1 pytest
tests/test_golden.py`` and say why in the commit.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import EXAMPLES

GOLDEN = Path(__file__).resolve().parent / "golden" / "scan_outputs.json"
CPU_ANALYZERS = "language,pronouns,identities,pii"


def cli(*args, check=True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LLAMA_AUDIT_NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-m", "llama_audit.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"llama-audit {' '.join(map(str, args))} -> {proc.returncode}\n{proc.stderr[-3000:]}")
    return proc


def mixed_corpus(root: Path) -> Path:
    """Every input format, with bad records, built deterministically."""
    import zstandard

    texts = []
    with gzip.open(EXAMPLES / "part-00000.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            texts.append(json.loads(line)["text"])
            if len(texts) == 60:
                break
    texts += ["She said he would call her.", "They are Catholic and Muslim teachers.",
              "Email bob@example.org or call +1 202 555 0143.", "", "   ", "Das ist ein deutscher Satz über Wetter."]
    root.mkdir(parents=True)
    lines = [json.dumps({"id": f"j{i}", "text": t}) for i, t in enumerate(texts[:30])]
    lines.insert(3, "{not json")
    lines.insert(7, json.dumps({"id": "no-text"}))
    lines.insert(9, json.dumps([1, 2]))
    (root / "a.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor(level=3).compress(
        "".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts[30:])).encode()))
    table = pa.table({"id": [f"p{i}" for i in range(len(texts))], "text": texts[::-1]})
    pq.write_table(table, root / "c.parquet", row_group_size=17)
    with pa.OSFile(str(root / "d.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table.slice(0, 20), max_chunksize=7)
    (root / "e.txt").write_text(texts[0] + "\n" + texts[-6], encoding="utf-8")
    with gzip.GzipFile(root / "f.txt.gz", "wb", mtime=0) as f:
        f.write(texts[1].encode())
    return root


def content(path: Path) -> str:
    """sha256 of a Parquet file's schema and rows (floats rounded to 6 digits), or of a file's bytes."""
    if path.suffix != ".parquet":
        return hashlib.sha256(path.read_bytes()).hexdigest()
    t = pq.read_table(path)

    def norm(v):
        if isinstance(v, float):
            return round(v, 6)
        if isinstance(v, list):
            return [norm(x) for x in v]
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        return v

    blob = json.dumps({"schema": str(t.schema.remove_metadata()), "rows": norm(t.to_pylist())}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def outputs(out: Path) -> dict[str, str]:
    """Content hash per output file, named without the shard key's path hash (the mixed corpus
    lives in a temporary directory whose path changes from run to run)."""
    files = {}
    for sub in ("annotations", "partials", "summary"):
        for p in sorted((out / sub).glob("*.parquet")):
            files[f"{sub}/{re.sub(r'-[0-9a-f]{8}[.]parquet$', '.parquet', p.name)}"] = content(p)
    report = json.loads(cli("report", out, "--format", "json").stdout)
    report.pop("provenance", None)  # run times, corpus paths, versions: provenance of the run, not the data's outputs
    files["report.json"] = hashlib.sha256(json.dumps(report, sort_keys=True).encode()).hexdigest()
    return files


def raw_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for sub in ("annotations", "partials", "summary")
            for p in sorted((out / sub).glob("*.parquet"))}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("golden")
    return {"examples": EXAMPLES, "mixed": mixed_corpus(root / "mixed")}, root


def scan_all_executors(corpus: Path, work: Path) -> dict[str, Path]:
    common = ["--analyzers", CPU_ANALYZERS, "--quiet"]
    outs = {name: work / name for name in ("local", "pool", "slices", "ray")}
    cli("scan", corpus, "--out", outs["local"], *common)
    cli("scan", corpus, "--out", outs["pool"], "--workers", "2", *common)
    for i in range(2):
        cli("scan", corpus, "--out", outs["slices"], "--num-shards", "2", "--shard-index", i, *common, check=False)
    cli("merge", outs["slices"])
    try:
        import ray  # noqa: F401
    except ImportError:
        outs.pop("ray")
    else:
        cli("scan", corpus, "--out", outs["ray"], "--executor", "ray", "--workers", "2", *common)
    return outs


@pytest.mark.parametrize("name", ["examples", "mixed"])
def test_outputs_equal_golden_for_every_executor(corpora, name):
    paths, root = corpora
    outs = scan_all_executors(paths[name], root / f"run-{name}")
    local = raw_bytes(outs["local"])
    for executor, out in outs.items():
        assert raw_bytes(out) == local, f"{executor} wrote other bytes than the in-process executor"
    got = outputs(outs["local"])
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
    if os.environ.get("LLAMA_AUDIT_WRITE_GOLDEN"):
        golden[name] = got
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    assert got == golden[name]
