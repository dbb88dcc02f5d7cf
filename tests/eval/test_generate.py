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
