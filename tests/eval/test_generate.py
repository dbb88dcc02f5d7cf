"""`llama-audit prompts BENCHMARK --generate-with MODEL_DIR`: generations from a tiny causal LM built
here (nothing downloaded): deterministic with a seed, resumable part by part, scored by `eval`."""

from __future__ import annotations

import inspect
import json

import pytest

from eval_helpers import invoke, report_json

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

WORDS = "the a of and is was he she they good bad people american actor actress known for film".split()
CHARS = list("abcdefghijklmnopqrstuvwxyz.,'")


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from transformers import BertTokenizerFast

    path = tmp_path_factory.mktemp("tiny_lm")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + CHARS + ["##" + c for c in CHARS] + WORDS
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    params = inspect.signature(BertTokenizerFast.__init__).parameters
    tok = (BertTokenizerFast(vocab=str(path / "vocab.txt")) if "vocab" in params and "vocab_file" not in params
           else BertTokenizerFast(vocab_file=str(path / "vocab.txt")))
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=len(vocab), n_positions=256, n_embd=32, n_layer=1, n_head=2,
                                  pad_token_id=0, bos_token_id=2, eos_token_id=3)
    transformers.GPT2LMHeadModel(cfg).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path


def generate(out, model, *extra):
    return invoke("prompts", "bold", "--generate-with", model, "--out", out, "--limit", 20, "--max-new-tokens", 6,
                  "--batch-size", 4, "--device", "cpu", *extra)


def parts(out):
    return {p.name: p.read_bytes() for p in sorted(out.glob("part-*.jsonl"))}


def test_seeded_generation_is_deterministic_and_resumable(tmp_path, tiny_lm, monkeypatch):
    from llama_audit.eval import generate as gen

    monkeypatch.setattr(gen, "PART_SIZE", 8)  # 20 prompts: 3 parts
    first = tmp_path / "first"
    res = generate(first, tiny_lm)
    assert res.exit_code == 0, res.output
    assert len(parts(first)) == 3
    rows = [json.loads(line) for b in parts(first).values() for line in b.decode().splitlines()]
    assert len(rows) == 20 and all("generation" in r for r in rows) and rows[0]["meta"]["benchmark"] == "bold"
    assert sum(bool(r["generation"]) for r in rows) >= 10  # special tokens only decode to ""
    # a run killed after its first part: the rerun writes the rest, byte-identical to the uninterrupted run
    second = tmp_path / "second"
    second.mkdir()
    (second / "part-00000.jsonl").write_bytes(parts(first)["part-00000.jsonl"])
    res = generate(second, tiny_lm)
    assert res.exit_code == 0 and "2 part(s) generated, 1 already there" in res.output.replace("\n", " ")
    assert parts(second) == parts(first)
    other = tmp_path / "other"
    assert generate(other, tiny_lm, "--seed", 7).exit_code == 0
    assert parts(other) != parts(first)
    res = invoke("eval", first, "--benchmark", "bold", "--out", tmp_path / "out", "-q")
    assert res.exit_code == 0, res.output
    assert report_json(tmp_path / "out")["bold_sentiment"]["overall"]["generations"] == 20


def test_a_directory_without_a_model_is_a_one_line_error(tmp_path):
    res = invoke("prompts", "bold", "--generate-with", tmp_path, "--out", tmp_path / "o", "--limit", 2)
    assert res.exit_code == 2 and "not a model directory" in res.output and "Traceback" not in res.output


def test_eval_generate_with_is_one_command_resumable_and_the_same_as_two(tmp_path, tiny_lm, monkeypatch):
    """`eval --generate-with MODEL_DIR --benchmark B --out OUT`: the generations land in
    OUT/generations/B (the parts `prompts --generate-with` writes, byte for byte), then are scored
    into OUT with the same counts as `prompts --generate-with` followed by `eval`; a rerun after a
    kill finishes both halves; other generation settings are refused."""
    from llama_audit.eval import generate as gen

    monkeypatch.setattr(gen, "PART_SIZE", 8)  # 20 prompts: 3 parts
    decoding = ("--limit", 20, "--max-new-tokens", 6, "--batch-size", 4, "--device", "cpu")

    def one_command(out, *extra):
        return invoke("eval", "--generate-with", tiny_lm, "--benchmark", "bold", "--out", out, "-q", *decoding, *extra)

    one = tmp_path / "one"
    res = one_command(one)
    assert res.exit_code == 0, res.output
    two_gen = tmp_path / "two_gen"
    assert generate(two_gen, tiny_lm).exit_code == 0
    assert invoke("eval", two_gen, "--benchmark", "bold", "--out", tmp_path / "two", "-q").exit_code == 0
    assert parts(one / "generations" / "bold") == parts(two_gen) and len(parts(two_gen)) == 3
    counts = (one / "summary" / "counts.parquet").read_bytes()
    assert counts == (tmp_path / "two" / "summary" / "counts.parquet").read_bytes()
    section = report_json(one)["bold_sentiment"]
    assert section == report_json(tmp_path / "two")["bold_sentiment"] and section["overall"]["generations"] == 20

    # killed after one part: the rerun generates the rest and scores everything, same bytes
    resumed = tmp_path / "resumed"
    (resumed / "generations" / "bold").mkdir(parents=True)
    for name in (".generate.json", "part-00000.jsonl"):
        (resumed / "generations" / "bold" / name).write_bytes((one / "generations" / "bold" / name).read_bytes())
    assert one_command(resumed).exit_code == 0
    assert parts(resumed / "generations" / "bold") == parts(two_gen)
    assert (resumed / "summary" / "counts.parquet").read_bytes() == counts
    # killed while scoring: a shard's done marker gone, the rerun redoes that shard only
    next(iter(sorted((resumed / "done").glob("*.json")))).unlink()
    res = one_command(resumed)
    assert res.exit_code == 0, res.output
    assert (resumed / "summary" / "counts.parquet").read_bytes() == counts

    res = one_command(one, "--seed", 7)
    assert res.exit_code == 2 and "other settings" in res.output and "seed" in res.output
    assert "Traceback" not in res.output and parts(one / "generations" / "bold") == parts(two_gen)
    res = invoke("eval", two_gen, "--generate-with", tiny_lm, "--benchmark", "bold", "--out", tmp_path / "x")
    assert res.exit_code == 2 and "exclude each other" in res.output and not (tmp_path / "x").exists()


def test_eval_generate_with_refuses_an_out_of_another_configuration_before_generating(tmp_path, tiny_lm):
    """OUT already holds a scan of another configuration: the one-line refusal comes before the
    model is loaded and before any generation is written into that OUT (not after hours of it)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.jsonl").write_text('{"text": "she said hi"}\n', encoding="utf-8")
    out = tmp_path / "out"
    assert invoke("scan", corpus, "--out", out, "--analyzers", "pronouns", "-q").exit_code == 0
    res = invoke("eval", "--generate-with", tiny_lm, "--benchmark", "bold", "--out", out, "--limit", 4,
                 "--max-new-tokens", 2, "--device", "cpu")
    assert res.exit_code == 2 and "different configuration" in res.output and "Traceback" not in res.output
    assert not (out / "generations").exists()


def test_eval_generate_with_takes_a_file_url_out_as_its_local_path(tmp_path, tiny_lm, monkeypatch):
    """file:///path is a local OUT everywhere else (scan, report): so it is for --generate-with
    (it was a folder named 'file:' under the working directory)."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    res = invoke("eval", "--generate-with", tiny_lm, "--benchmark", "bold", "--limit", "4", "--device", "cpu",
                 "--out", f"file://{out}", "-q")
    assert res.exit_code == 0, res.output
    assert list((out / "generations" / "bold").glob("part-*.jsonl")) and (out / "manifest.json").is_file()
    assert not (tmp_path / "file:").exists()
