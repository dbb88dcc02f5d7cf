"""The Ray Data pipeline behind ``--executor ray`` (llama_audit/executors/ray_data.py): a CPU stage,
an accelerator actor pool for staged analyzers (CPU actors here), writes in order per shard; the
same bytes as the in-process executor, retries after a killed worker or actor, and a shard that
keeps killing its worker is failed with its reason while the others finish.

One local Ray with 2 CPUs for the module. Two plugin analyzers (registered through a real entry
point, seen by the Ray workers through PYTHONPATH) kill their own process on marked documents.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import pickle
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from llama_audit.job import ScanRequest, run_scan
from llama_audit.scan import ReadOptions
from llama_audit.types import ConfigError

ray = pytest.importorskip("ray")

PLUGIN = '''
import dataclasses
import os
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llama_audit.analyzers.base import Analyzer, AnalyzerOptions, option


def _note(folder, what):
    with open(Path(folder) / what, "a") as f:
        f.write(f"{os.getpid()}\\n")


def _die_once(folder, what):
    """The first call for ``what`` kills this process (a marker file remembers it)."""
    try:
        os.close(os.open(Path(folder) / f"died-{what}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os._exit(1)


@dataclasses.dataclass(frozen=True)
class MarkerOptions(AnalyzerOptions):
    folder: str = option("", "where marker files are kept")


class CrashCpu(Analyzer):
    """Kills its worker on 'CRASH-ONCE' (the first time) and on 'POISON' (every time)."""
    name = "crash_cpu"
    Options = MarkerOptions

    def fields(self):
        return [pa.field("crash_len", pa.int64())]

    def annotate(self, batch, ctx):
        for t in batch.texts:
            if t == "POISON":
                os._exit(1)
            if t == "CRASH-ONCE":
                _die_once(self.options.folder, "cpu")
        return {"crash_len": pa.array([len(t or "") for t in batch.texts], pa.int64())}

    def fold(self, columns, ctx):
        return {"chars": int(pc.sum(columns["crash_len"]).as_py() or 0)}


class StagedEcho(Analyzer):
    """Two stages: prepare (lengths), infer (squares; kills its actor once on 'CRASH-ACTOR'), finish."""
    name = "staged_echo"
    staged = True
    Options = MarkerOptions

    def fields(self):
        return [pa.field("echo_sq", pa.int64())]

    def prepare(self, batch, ctx):
        _note(self.options.folder, "prepare-pids")
        return {"lens": np.array([len(t or "") for t in batch.texts], dtype=np.int64),
                "crash": "CRASH-ACTOR" in batch.texts}

    def infer(self, payload):
        _note(self.options.folder, "infer-pids")
        if payload["crash"]:
            _die_once(self.options.folder, "actor")
        return dict(payload, sq=payload["lens"] ** 2)

    def finish(self, batch, ctx, payload):
        _note(self.options.folder, "finish-pids")
        if "CRASH-FINISH" in batch.texts:
            _die_once(self.options.folder, "writer")
        return {"echo_sq": pa.array(payload["sq"], pa.int64())}

    def annotate(self, batch, ctx):
        return self.finish(batch, ctx, self.infer(self.prepare(batch, ctx)))

    def fold(self, columns, ctx):
        return {"sum": int(pc.sum(columns["echo_sq"]).as_py() or 0), "docs": len(columns["echo_sq"])}
'''


@pytest.fixture(scope="module", autouse=True)
def ray_with_plugins(tmp_path_factory):
    """The plugins on sys.path (this process) and PYTHONPATH (Ray's workers), then one local Ray."""
    where = tmp_path_factory.mktemp("plugins")
    (where / "raytest_plugin.py").write_text(PLUGIN)
    dist = where / "llama_audit_raytest-0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: llama-audit-raytest\nVersion: 0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""\
        [llama_audit.analyzers]
        crash_cpu = raytest_plugin:CrashCpu
        staged_echo = raytest_plugin:StagedEcho
        """))
    sys.path.insert(0, str(where))
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(where)] + ([saved] if saved else []))
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    yield
    ray.shutdown()
    sys.path.remove(str(where))
    sys.modules.pop("raytest_plugin", None)


def same_outputs(a: Path, b: Path, summary: bool = True) -> None:
    """Annotations, partials, review samples (and the summary): the same bytes."""
    for sub in ("annotations", "partials", "samples"):
        left = {p.name: p.read_bytes() for p in sorted((a / sub).glob("*"))} if (a / sub).exists() else {}
        right = {p.name: p.read_bytes() for p in sorted((b / sub).glob("*"))} if (b / sub).exists() else {}
        assert left.keys() == right.keys(), sub
        for name in left:
            assert left[name] == right[name], f"{sub}/{name}"
    if summary:
        assert (a / "summary/counts.parquet").read_bytes() == (b / "summary/counts.parquet").read_bytes()


def run_record(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())["runs"][-1]


def pids(folder: Path, what: str) -> set[int]:
    f = folder / what
    return {int(x) for x in f.read_text().split()} if f.exists() else set()


def test_killed_workers_are_retried_and_a_poisoned_shard_fails_alone(tmp_path, make_jsonl):
    """p0 kills its CPU worker once, p1 its actor once: retried, exact totals. p3 kills its CPU
    worker every time: failed with its reason after the retries, the others finish."""
    marks = tmp_path / "marks"
    marks.mkdir()
    for s, special in enumerate(["CRASH-ONCE", "CRASH-ACTOR", "plain", "POISON"]):
        make_jsonl(f"p{s}.jsonl", [{"id": f"{s}-{i}", "text": special if i == 2 else f"doc {s} {i} " * (i + 1)}
                                   for i in range(5)])
    common = dict(paths=[str(tmp_path / "corpus")], analyzers=["crash_cpu", "staged_echo"], languages=("all",),
                  options={"crash_cpu": {"folder": str(marks)}, "staged_echo": {"folder": str(marks)}},
                  read=ReadOptions(batch_docs=2))
    res = run_scan(ScanRequest(out=str(tmp_path / "ray"), executor="ray", workers=2, **common))
    assert res.shards_run == 4 and res.documents == 15 and res.exit_code != 0
    assert (marks / "died-cpu").exists() and (marks / "died-actor").exists()  # both were killed once
    [(key, reason)] = res.failed.items()
    assert key.startswith("p3.jsonl") and "p3.jsonl" in reason and "died" in reason and "\n" not in reason
    manifest = json.loads((tmp_path / "ray/manifest.json").read_text())
    assert {e["shard"]: e["status"] for e in manifest["shards"]} == {
        "p0.jsonl": "done", "p1.jsonl": "done", "p2.jsonl": "done", "p3.jsonl": "error"}
    # the pipeline's shape: prepare in CPU tasks, infer in actors, finish in the write actors; three
    # kinds of Ray process, and never the scan process (it only routes rows, it never unpickles a batch)
    prepare, infer, finish = pids(marks, "prepare-pids"), pids(marks, "infer-pids"), pids(marks, "finish-pids")
    assert os.getpid() not in prepare | infer | finish
    assert finish and not prepare & infer and not finish & (prepare | infer)
    assert len(infer) >= 2  # the killed actor was replaced
    record = manifest["runs"][-1]["executor"]
    assert record["engine"] == "ray.data" and record["stages"] == ["cpu", "infer", "write"]
    assert record["gpu_actors"] == 1 and record["actor_gpus"] == 0  # no GPU here: one CPU actor
    # the same corpus without the poisoned shard, in this process (the markers exist: nothing dies)
    (tmp_path / "corpus/p3.jsonl").unlink()
    local = run_scan(ScanRequest(out=str(tmp_path / "local"), **common))
    assert local.exit_code == 0 and local.documents == 15
    same_outputs(tmp_path / "ray", tmp_path / "local", summary=False)  # no summary while p3 failed


def test_a_killed_write_actor_fails_its_open_shards_alone_and_a_rerun_completes_them(tmp_path, make_jsonl):
    """The write stage's actor dies (once, in a finish): the shards it was writing fail with a
    one-line reason, no done marker claims them, the rest finish; a rerun redoes only those and
    ends with the in-process bytes."""
    marks = tmp_path / "marks"
    marks.mkdir()
    for s in range(4):
        make_jsonl(f"w{s}.jsonl", [{"id": f"{s}-{i}", "text": "CRASH-FINISH" if (s, i) == (1, 3) else f"w {s} {i}"}
                                   for i in range(6)])
    common = dict(paths=[str(tmp_path / "corpus")], analyzers=["staged_echo"], languages=("all",),
                  options={"staged_echo": {"folder": str(marks)}}, read=ReadOptions(batch_docs=2))
    first = run_scan(ScanRequest(out=str(tmp_path / "ray"), executor="ray", workers=2, **common))
    assert (marks / "died-writer").exists() and first.exit_code != 0
    assert any(k.startswith("w1.jsonl") for k in first.failed)
    for key, reason in first.failed.items():
        assert "write" in reason and "died" in reason and "\n" not in reason, reason
    manifest = json.loads((tmp_path / "ray/manifest.json").read_text())
    status = {e["shard"]: e["status"] for e in manifest["shards"]}
    assert status["w1.jsonl"] == "error" and list(status.values()).count("error") == len(first.failed)
    assert not (tmp_path / "ray/summary/counts.parquet").exists()  # never "complete" while a shard failed
    again = run_scan(ScanRequest(out=str(tmp_path / "ray"), executor="ray", workers=2, **common))
    assert again.exit_code == 0 and again.shards_run == len(first.failed) and not again.failed
    local = run_scan(ScanRequest(out=str(tmp_path / "local"), **common))
    same_outputs(tmp_path / "ray", tmp_path / "local")


# -- the toxicity analyzer's two stages through the pipeline, with the tiny model ------------------

def _tiny_builder():
    path = Path(__file__).parents[1] / "analyzers" / "test_toxicity_engine.py"
    spec = importlib.util.spec_from_file_location("_tox_engine_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_tiny


def test_toxicity_pipeline_equals_in_process(tmp_path, make_jsonl):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    tiny = _tiny_builder()(tmp_path / "tiny")
    lines = ["she loves the dog", "they hate the cat", "the house is very good", "you are bad", "a"]
    for s in range(2):  # lines repeat across batches: the duplicate-line cache crosses batches
        make_jsonl(f"p{s}.jsonl", [{"id": f"{s}-{i}", "text": "\n".join(lines[(i + k) % 5] for k in range(i % 4 + 1))}
                                   for i in range(9)] + [{"id": f"{s}-e", "text": ""}])
    # one torch thread, as in the CPU actor (Ray sets OMP_NUM_THREADS to its one CPU): on a CPU the
    # last bits of a sum depend on the thread count
    tox = {"model": str(tiny), "tokenizer": str(tiny), "device": "cpu", "self_test": False, "sample": 0.7,
           "threads": 1}
    common = dict(paths=[str(tmp_path / "corpus")], analyzers=["pronouns", "identities", "toxicity",
                                                               "identity_toxicity"],
                  languages=("all",), options={"toxicity": tox}, read=ReadOptions(batch_docs=3))
    res = run_scan(ScanRequest(out=str(tmp_path / "ray"), executor="ray", workers=2, **common))
    assert res.exit_code == 0 and res.shards_run == 2 and res.documents == 20
    assert run_record(tmp_path / "ray")["executor"]["engine"] == "ray.data"
    local = run_scan(ScanRequest(out=str(tmp_path / "local"), **common))
    assert local.exit_code == 0
    same_outputs(tmp_path / "ray", tmp_path / "local")


# -- choosing the mode (no Ray started) -----------------------------------------------------------

def test_mode_follows_the_declared_stages():
    from llama_audit.analyzers.registry import build_analyzers
    from llama_audit.executors import make_executor
    from llama_audit.executors.ray import RayExecutor
    from llama_audit.executors.ray_data import RayDataExecutor

    cpu_only = build_analyzers(["pronouns"], {})
    staged = build_analyzers(["staged_echo"], {})
    make = lambda analyzers, **kw: make_executor("ray", workers=1, shards=2, analyzers=analyzers, **kw)  # noqa: E731
    assert isinstance(make(cpu_only), RayExecutor)
    assert isinstance(make(staged), RayDataExecutor)
    assert isinstance(make(staged, ray_options={"mode": "tasks"}), RayExecutor)
    assert isinstance(make(cpu_only, ray_options={"mode": "data"}), RayDataExecutor)
    assert make(staged).describe()["engine"] == "ray.data"
    with pytest.raises(ConfigError, match="--ray-mode"):
        make(staged, ray_options={"mode": "fast"})
    with pytest.raises(ConfigError, match="--ray-gpu-actors"):
        make(staged, ray_options={"gpu_actors": 0})


# -- the task-per-shard mode (auto with CPU analyzers only) ----------------------------------------

def test_task_mode_fails_a_shard_that_keeps_killing_its_worker_and_finishes_the_rest(tmp_path, make_jsonl):
    """CPU analyzers only: auto picks a Ray task per shard. A shard whose task kills its worker on
    every attempt is failed with its reason (one line, after --ray-max-retries), not the whole run."""
    marks = tmp_path / "marks"
    marks.mkdir()
    for s, special in enumerate(["plain", "POISON"]):
        make_jsonl(f"t{s}.jsonl", [{"id": f"{s}-{i}", "text": special if i == 1 else f"doc {s} {i}"} for i in range(3)])
    res = run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "ray"), executor="ray",
                               workers=2, analyzers=["crash_cpu"], languages=("all",),
                               options={"crash_cpu": {"folder": str(marks)}}, ray_options={"max_retries": 0}))
    assert res.shards_run == 2 and res.documents == 3 and res.exit_code != 0
    [(key, reason)] = res.failed.items()
    assert key.startswith("t1.jsonl") and "t1.jsonl" in reason and "died" in reason and "\n" not in reason
    record = run_record(tmp_path / "ray")["executor"]
    assert record["engine"] == "ray.tasks" and record["max_retries"] == 0


def test_pipeline_sizes_are_refused_in_task_mode():
    from llama_audit.analyzers.registry import build_analyzers
    from llama_audit.executors import make_executor

    for mode in ("tasks", "auto"):  # auto with CPU analyzers only is the task mode: sizes would be ignored
        for given in ({"gpu_actors": 2}, {"cpu_tasks": 3}, {"write_actors": 2}):
            with pytest.raises(ConfigError, match="--ray-mode data"):
                make_executor("ray", workers=1, shards=2, analyzers=build_analyzers(["pronouns"], {}),
                              ray_options={"mode": mode, **given})


def test_the_run_record_names_only_the_stages_that_ran(tmp_path, make_jsonl):
    """--ray-mode data with CPU analyzers only has no infer stage: the manifest must not claim one."""
    make_jsonl("c0.jsonl", [{"id": f"c-{i}", "text": f"she said {i}"} for i in range(3)])
    res = run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "ray"), executor="ray",
                               analyzers=["pronouns"], languages=("all",), ray_options={"mode": "data"}))
    assert res.exit_code == 0 and res.documents == 3
    record = run_record(tmp_path / "ray")["executor"]
    assert record["engine"] == "ray.data" and record["stages"] == ["cpu", "write"] and record["gpu_actors"] == 0


def test_a_write_actor_with_interleaved_shards_writes_each_as_alone(tmp_path, make_jsonl):
    """A write actor has several shards open at once (one per CPU task feeding it: 16 by default),
    their rows interleaved. Toxicity's finish replays the shard's duplicate-line cache, which
    start_shard clears: one set of analyzers shared by the open shards mixed their caches (lines
    scored from another shard's cache, or left unscored). The actor's own code, in this process,
    on rows made by the pipeline's stage functions: each shard's bytes as the in-process scan's."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from llama_audit.corpus import discover
    from llama_audit.executors.ray_data import InferStage, ShardWriter, cpu_stage

    tiny = _tiny_builder()(tmp_path / "tiny")
    lines = ["she loves the dog", "they hate the cat", "the house is very good", "you are bad", "a"]
    for s in range(2):  # lines repeat across batches and shards: the cache crosses batches
        make_jsonl(f"i{s}.jsonl", [{"id": f"{s}-{i}",
                                    "text": "\n".join(lines[(i + k + s) % 5] for k in range(i % 4 + 1))}
                                   for i in range(9)])
    tox = {"model": str(tiny), "tokenizer": str(tiny), "device": "cpu", "self_test": False, "threads": 1}
    names, options = ["pronouns", "toxicity"], {"toxicity": tox}
    read = ReadOptions(batch_docs=2)
    local = run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "local"), analyzers=names,
                                 languages=("all",), options=options, read=read))
    assert local.exit_code == 0

    plan, split, out = _plan_here(tmp_path / "actor", names, options, read)
    shards = discover([str(tmp_path / "corpus")])
    infer = InferStage(plan, split)
    streams = []
    for shard in shards:
        rows = []
        for row in cpu_stage({"blob": pickle.dumps(shard)}, plan, split):
            one = {k: np.array([v], dtype=object) for k, v in row.items()}
            done = infer(one)
            rows.append((shard, int(done["seq"][0]), done["kind"][0], done["blob"][0]))
        streams.append(rows)
    writer = ShardWriter(plan, split)
    outcomes = []
    for pair in itertools.zip_longest(*streams):  # the shards' rows interleaved, as from concurrent tasks
        for row in pair:
            if row is not None and (outcome := writer.add(*row)) is not None:
                outcomes.append(outcome)
    writer.close()
    assert sorted(o.status for o in outcomes) == ["done", "done"], outcomes
    for sub in ("annotations", "partials"):
        for path in sorted((tmp_path / "local" / sub).glob("*")):
            assert (out.root / sub / path.name).read_bytes() == path.read_bytes(), f"{sub}/{path.name}"


def _plan_here(root: Path, names, options, read):
    """``(plan, split, OutDir)`` as run_scan makes them, for driving the stage functions in this process."""
    from llama_audit.analyzers.registry import build_analyzers
    from llama_audit.executors.base import ScanPlan
    from llama_audit.executors.ray_data import split_stages
    from llama_audit.job import build_config, choose_analyzers, locked_config, read_options
    from llama_audit.scan import Scope
    from llama_audit.store import OutDir, config_hash

    choice = choose_analyzers(names, ("all",), options, lambda m: None)
    analyzers = build_analyzers(choice.names, choice.options)
    scope = Scope(("all",), None)
    read = read_options(analyzers, read)
    locked = locked_config(build_config(analyzers, choice.skipped, scope, read))
    out = OutDir(root)
    out.prepare(locked, overwrite=False)
    plan = ScanPlan(tuple(choice.names), choice.options, scope, str(out.root.resolve()), read, False,
                    config_hash(locked))
    return plan, split_stages(analyzers), out


def test_a_write_actor_ignores_rows_of_a_shard_it_finished(tmp_path, make_jsonl):
    """A row that reaches the write actor after its shard was written (a copy from a retried CPU
    task, behind the first attempt's rows) must not open the shard again: no second outcome, no
    second done marker, no temporary left open in OUT until the actor ends."""
    from llama_audit.corpus import discover
    from llama_audit.executors.ray_data import ShardWriter, cpu_stage

    make_jsonl("d0.jsonl", [{"id": f"d-{i}", "text": f"she said {i}"} for i in range(3)])
    (tmp_path / "corpus" / "empty.jsonl").write_text("")
    plan, split, out = _plan_here(tmp_path / "out", ["pronouns"], {}, ReadOptions(batch_docs=2))
    writer = ShardWriter(plan, split)
    for shard in discover([str(tmp_path / "corpus")]):
        rows = [(shard, r["seq"], r["kind"], r["blob"]) for r in cpu_stage({"blob": pickle.dumps(shard)}, plan, split)]
        outcomes = [o for row in rows if (o := writer.add(*row)) is not None]
        assert [o.status for o in outcomes] == ["done"]
        marker = out.done / f"{shard.key}.json"
        before = marker.read_bytes()
        assert [writer.add(*row) for row in rows] == [None] * len(rows)  # every row again, the end row too
        assert marker.read_bytes() == before and not writer.open
        assert not [p.name for p in out.root.rglob("*.tmp")]
    writer.close()
