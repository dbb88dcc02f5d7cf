"""Executors give the same bytes: in-process, local pool (tests/test_job.py) and Ray."""

import json

import pytest

from llama_audit.job import ScanRequest, run_scan
from llama_audit.types import ConfigError

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    """One local Ray for the module (run_ray reuses a running instance and leaves it up)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def make_corpus(make_jsonl, shards=3):
    texts = ["She is a Catholic teacher.", "He emailed bob@example.org yesterday.", "They are American.", ""]
    for s in range(shards):
        make_jsonl(f"p{s}.jsonl", [{"id": f"{s}-{i}", "text": texts[(s + i) % 4]} for i in range(5)])


def test_ray_executor_equals_in_process(tmp_path, make_jsonl):
    make_corpus(make_jsonl)
    common = dict(paths=[str(tmp_path / "corpus")], analyzers=["language", "pronouns", "identities", "pii"],
                  languages=("all",))
    run_scan(ScanRequest(out=str(tmp_path / "local"), **common))
    res = run_scan(ScanRequest(out=str(tmp_path / "ray"), executor="ray", workers=2, **common))
    assert res.exit_code == 0 and res.shards_run == 3 and res.documents == 15
    for sub in ("summary/counts.parquet",):
        assert (tmp_path / "ray" / sub).read_bytes() == (tmp_path / "local" / sub).read_bytes()
    local = sorted(p.read_bytes() for p in (tmp_path / "local/annotations").iterdir())
    remote = sorted(p.read_bytes() for p in (tmp_path / "ray/annotations").iterdir())
    assert local == remote
    stats = json.loads((tmp_path / "ray/manifest.json").read_text())["runs"][-1]["analyzer_stats"]
    assert any(k.startswith("worker ") for k in stats)


def test_ray_setup_failure_is_one_line(tmp_path, make_jsonl):
    make_corpus(make_jsonl, shards=2)
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="bad.bin"):
        run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "o"), executor="ray", workers=2,
                             analyzers=["language"], languages=("all",), options={"language": {"model": str(bad)}}))

