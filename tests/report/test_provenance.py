"""The report's provenance (issue 11 item 2): which corpus, when, with which tool, configuration,
lexicons and models the numbers were made — read from OUT only, the same bytes on every render."""

import csv
import datetime as dt
import hashlib
import io
import json
import platform
from importlib import metadata
from pathlib import Path

import pytest

import llama_audit
from llama_audit.job import ScanRequest, run_scan
from llama_audit.report.render import render_csv, render_html, render_json, render_markdown, render_terminal
from llama_audit.report.tables import build_report

ROOT = Path(__file__).resolve().parents[2]
EMAIL, PHONE = "carol.private@example.org", "+1 202 555 0143"
TEXTS = [
    "She is a Christian woman who lives in the city with her family and friends.",
    "He is an American engineer working on bridges and tunnels in the mountains.",
    f"Write to {EMAIL} or call {PHONE} about the quarterly meeting notes today.",
    "Ceci est un texte en français sur la cuisine et les voyages en Europe.",
]


def iso(text: str) -> dt.datetime:
    assert text.endswith("Z"), text
    return dt.datetime.fromisoformat(text.removesuffix("Z") + "+00:00")


@pytest.fixture
def scanned(tmp_path, make_jsonl):
    make_jsonl("a.jsonl", [{"id": i, "text": t} for i, t in enumerate(TEXTS[:2])])
    make_jsonl("sub/b.jsonl", [{"id": i, "text": t} for i, t in enumerate(TEXTS[2:])])
    (tmp_path / "corpus" / "sub" / "b.jsonl").open("a").write("{not json\n")
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "out"),
                         analyzers=["language", "pronouns", "identities", "pii"]))
    after = dt.datetime.now(dt.timezone.utc)
    return tmp_path / "out", before, after


def test_every_key_holds_what_out_recorded(scanned, tmp_path):
    out, before, after = scanned
    manifest = json.loads((out / "manifest.json").read_text())
    config = json.loads((out / "config.json").read_text())
    plan = json.loads((out / "plan.json").read_text())
    p = build_report(str(out))["provenance"]
    assert {"tool_version", "python", "dependencies", "config_hash", "corpus_roots", "shards", "started",
            "finished", "lexicon_sha256", "models", "languages", "thresholds", "sampling", "skipped",
            "bad_records_by_reason", "complete"} <= set(p)
    assert p["tool_version"] == llama_audit.__version__
    assert p["python"] == platform.python_version()
    assert p["dependencies"]["pyarrow"] == metadata.version("pyarrow")
    assert p["dependencies"]["numpy"] == metadata.version("numpy")
    assert "python" not in p["dependencies"]
    assert p["config_hash"] == config["config_hash"] == plan["config_hash"]
    assert p["corpus_roots"] == [str((tmp_path / "corpus").resolve())]
    assert p["shards"]["total"] == len(plan["shards"]) == 2
    assert p["shards"]["done"] == 2 and p["shards"]["failed"] == 0 and p["shards"]["pending"] == 0
    assert before <= iso(p["started"]) <= iso(p["finished"]) <= after
    recorded = config["config"]["analyzers"]
    lexicons = {"pronouns": "pronouns.tsv", "identities": "identities.tsv"}
    if "senses_sha256" in recorded["identities"]:  # the built-in sense list, a lexicon too
        lexicons["identities.senses"] = "identity_senses.tsv"
    assert p["lexicon_sha256"] == {
        name: hashlib.sha256((ROOT / "llama_audit/lexicons" / file).read_bytes()).hexdigest()
        for name, file in lexicons.items()}
    assert p["lexicon_sha256"]["pronouns"] == recorded["pronouns"]["lexicon_sha256"]
    lid = ROOT / "llama_audit/models/lid.176.ftz"
    assert p["models"] == {"language": {"id": "lid.176.ftz", "sha256": hashlib.sha256(lid.read_bytes()).hexdigest()}}
    assert p["languages"] == ["en"]
    assert p["thresholds"] == {"language": recorded["language"]["threshold"]}
    assert p["sampling"] == {}  # nothing ran on a sample
    assert p["skipped"] == {}
    assert p["bad_records_by_reason"] and sum(p["bad_records_by_reason"].values()) == 1
    assert p["complete"] is True and manifest["summary"]["complete"] is True


def test_provenance_is_derived_from_out_the_same_bytes_each_time(scanned):
    out, _, _ = scanned
    first, second = build_report(str(out)), build_report(str(out))
    assert render_json(first) == render_json(second)
    for render in (render_markdown, render_csv, render_html):
        assert render(first) == render(second)
    # the manifest's runs are the record: a report on another day says the same
    assert first["provenance"]["report"] == {"tool_version": llama_audit.__version__}


def test_header_in_every_human_format(scanned):
    from rich.console import Console

    out, _, _ = scanned
    r = build_report(str(out))
    p = r["provenance"]
    short = p["config_hash"][:12]
    lex = p["lexicon_sha256"]["identities"][:12]
    md = render_markdown(r)
    assert md.startswith("### Provenance") and short in md and lex in md and p["corpus_roots"][0] in md
    assert p["tool_version"] in md and "complete" in md and p["started"] in md
    assert p["config_hash"] not in md  # shortened
    html = render_html(r)
    assert html.index("Provenance") < html.index("Corpus") and short in html and p["models"]["language"]["sha256"][:12] in html
    console = Console(record=True, width=200)
    render_terminal(r, console)
    text = console.export_text()
    assert text.index("Provenance") < text.index("Corpus") and short in text
    rows = list(csv.reader(io.StringIO(render_csv(r))))
    assert rows[0][:6] == ["table", "group", "label", "documents", "pct", "matches"]
    assert all(len(row) == len(rows[0]) for row in rows)
    assert all(not any(row[3:]) for row in rows if row[0] == "provenance")  # number columns stay numbers
    mine = [row[:3] for row in rows if row[0] == "provenance"]
    assert ["provenance", "config_hash", p["config_hash"]] in mine
    assert ["provenance", "models.language.sha256", p["models"]["language"]["sha256"]] in mine
    assert ["provenance", "corpus_roots", p["corpus_roots"][0]] in mine
    assert ["provenance", "complete", "true"] in mine
    assert rows[1][0] == "provenance"  # a header: first


def test_partial_out_says_complete_false(tmp_path, make_jsonl):
    for name in ("a.jsonl", "b.jsonl"):
        make_jsonl(name, [{"text": "She said he would call her tomorrow about the trip."}])
    run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "out"),
                         analyzers=["pronouns"], languages=("all",), num_shards=2, shard_index=0))
    r = build_report(str(tmp_path / "out"))
    p = r["provenance"]
    assert p["complete"] is False and p["shards"]["total"] == 2 and p["shards"]["done"] == 1
    assert p["shards"]["pending"] == 1
    assert "PARTIAL" in render_markdown(r).split("### Corpus")[0]


def test_a_scan_killed_before_its_manifest_has_no_run_to_cite(tmp_path, make_jsonl):
    make_jsonl("a.jsonl", [{"text": "She said he would call her tomorrow about the trip."}])
    run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "out"),
                         analyzers=["pronouns"], languages=("all",)))
    (tmp_path / "out" / "manifest.json").unlink()  # killed before the manifest was written
    p = build_report(str(tmp_path / "out"))["provenance"]
    assert p["started"] is None and p["tool_version"] is None and p["dependencies"] == {}
    assert p["corpus_roots"] == [str((tmp_path / "corpus").resolve())]  # from the plan
    assert p["config_hash"] and p["lexicon_sha256"]["pronouns"]


def test_skipped_analyzers_with_their_reasons(tmp_path, make_jsonl):
    make_jsonl("a.jsonl", [{"text": "hello there"}])
    run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "out"), languages=("all",),
                         analyzers=None, options={"language": {"model": str(tmp_path / "missing.bin")}}))
    config = json.loads((tmp_path / "out" / "plan.json").read_text())
    p = build_report(str(tmp_path / "out"))["provenance"]
    assert p["skipped"] == config["skipped_analyzers"] and "missing.bin" in p["skipped"]["language"]
    assert "language" not in p["models"]  # it did not run


def test_no_record_text_or_personal_data_in_provenance(scanned):
    out, _, _ = scanned
    r = build_report(str(out))
    blobs = [json.dumps(r["provenance"], ensure_ascii=False), render_markdown(r).split("### Corpus")[0],
             "".join(row for row in render_csv(r).splitlines() if row.startswith("provenance,"))]
    for blob in blobs:
        for secret in (EMAIL, PHONE, "202 555", "carol", "quarterly", "Christian woman"):
            assert secret not in blob


def test_a_plugins_lexicons_models_thresholds_and_sample_are_read_by_convention():
    from llama_audit.report.provenance import build_provenance

    recorded = {"model": "org/scorer", "model_commit": "c0ffee", "tokenizer": "org/tok", "tokenizer_commit": "feed",
                "sha256": {"model": "a" * 64, "tokenizer": "b" * 64}, "lexicon": "/x/words.tsv",
                "lexicon_sha256": "c" * 64, "senses": "s.tsv", "senses_sha256": "d" * 64,
                "ranker_model": "r.bin", "ranker_model_sha256": "e" * 64, "min_threshold": 0.25,
                "sample_rate": 0.1, "seed": 7, "batch": 3}
    manifest = {"config": {"languages": ["all"]}, "config_hash": "h", "shards": [], "summary": {}, "runs": []}
    p = build_provenance(manifest, {}, {"scorer": (recorded, {"threshold": 0.5, "pct": 1.0})})
    assert p["models"] == {"scorer": {"id": "org/scorer", "sha256": "a" * 64, "revision": "c0ffee"},
                           "scorer.tokenizer": {"id": "org/tok", "sha256": "b" * 64, "revision": "feed"},
                           "scorer.ranker_model": {"id": "r.bin", "sha256": "e" * 64}}
    assert p["lexicon_sha256"] == {"scorer": "c" * 64, "scorer.senses": "d" * 64}
    assert p["thresholds"] == {"scorer.min": 0.25, "scorer": 0.5}  # the section's constant as well
    assert p["sampling"] == {"scorer": {"sample_rate": 0.1, "seed": 7}}
    assert p["complete"] is False and p["shards"]["total"] == 0 and p["shards"]["fingerprint"] is None


def test_a_scored_sample_cites_its_model_files_and_sample(tmp_path, make_jsonl):
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    words = "[PAD] [UNK] [CLS] [SEP] [MASK] the a dog cat good bad people".split()
    (tiny / "vocab.txt").write_text("\n".join(words) + "\n")
    try:
        tok = transformers.BertTokenizerFast(vocab_file=str(tiny / "vocab.txt"))
    except TypeError:  # transformers 5
        tok = transformers.BertTokenizerFast(vocab=str(tiny / "vocab.txt"))
    tok.model_max_length = 64
    cfg = transformers.BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=64, num_labels=2)
    transformers.BertForSequenceClassification(cfg).eval().save_pretrained(tiny)
    tok.save_pretrained(tiny)
    make_jsonl("a.jsonl", [{"id": str(i), "text": "the good dog and the bad cat"} for i in range(20)])
    run_scan(ScanRequest(paths=[str(tmp_path / "corpus")], out=str(tmp_path / "out"), analyzers=["toxicity"],
                         languages=("all",), options={"toxicity": {"model": str(tiny), "tokenizer": str(tiny),
                                                                   "self_test": "off", "device": "cpu",
                                                                   "sample": "0.5", "seed": "3"}}))
    recorded = json.loads((tmp_path / "out" / "config.json").read_text())["config"]["analyzers"]["toxicity"]
    p = build_report(str(tmp_path / "out"))["provenance"]
    model, tokenizer = p["models"]["toxicity"], p["models"]["toxicity.tokenizer"]
    assert model["id"] == tokenizer["id"] == str(tiny)
    weights = hashlib.sha256((tiny / "model.safetensors").read_bytes()).hexdigest()
    assert model["files"]["model.safetensors"] == weights and model["files"] == recorded["sha256"]["model"]
    listing = "".join(f"{n}\t{model['files'][n]}\n" for n in sorted(model["files"]))
    assert model["sha256"] == hashlib.sha256(listing.encode()).hexdigest()
    assert tokenizer["files"]["vocab.txt"] == hashlib.sha256((tiny / "vocab.txt").read_bytes()).hexdigest()
    assert p["sampling"] == {"toxicity": {"sample_rate": 0.5, "seed": 3}}
    assert "torch" in p["dependencies"] and "transformers" in p["dependencies"]
