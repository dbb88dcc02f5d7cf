"""Toxicity engine and analyzer on CPU with a tiny randomly initialised BERT classifier.

The model (hidden 32, 2 layers) and a small WordPiece tokenizer are built here and saved with
``save_pretrained`` (safetensors); nothing is downloaded.
"""

from __future__ import annotations

import inspect
import shutil
import time

import numpy as np
import pyarrow as pa
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from llama_audit.analyzers.base import AnalyzerUnavailable, BatchContext, DocBatch  # noqa: E402
from llama_audit.analyzers.toxicity import ToxicityAnalyzer, model as tm  # noqa: E402
from llama_audit.analyzers.toxicity.engine import LineCache, ToxicityEngine  # noqa: E402
from llama_audit.analyzers.toxicity.lines import document_lines  # noqa: E402
from llama_audit.analyzers.toxicity.sampling import sample_mask  # noqa: E402
from llama_audit.analyzers.toxicity.selftest import ToxicitySelfTestError  # noqa: E402

WORDS = ("the a of and to in is was he she it they hate love good bad people dog cat house all are not you "
         "we this that with for on my your our their very never always").split()
CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-")


def _tokenizer(vocab_file):
    from transformers import BertTokenizerFast

    params = inspect.signature(BertTokenizerFast.__init__).parameters
    if "vocab" in params and "vocab_file" not in params:  # transformers 5
        return BertTokenizerFast(vocab=str(vocab_file))
    return BertTokenizerFast(vocab_file=str(vocab_file))


def build_tiny(path, seed=0, invert=False):
    from transformers import BertConfig, BertForSequenceClassification

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + CHARS + ["##" + c for c in CHARS] + WORDS
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = _tokenizer(path / "vocab.txt")
    tok.model_max_length = 512
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512, num_labels=2, initializer_range=0.3)
    model = BertForSequenceClassification(cfg).eval()
    if invert:  # toxic label moved to index 0
        with torch.no_grad():
            model.classifier.weight.copy_(model.classifier.weight.flip(0))
            model.classifier.bias.copy_(model.classifier.bias.flip(0))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def make_lines(n=240, seed=0):
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n):
        k = int(min(rng.geometric(0.08), 120))
        lines.append(" ".join(rng.choice(WORDS, size=k)))
    lines += ["the " * 700, "she loves the dog!", "a", "zebra quixotic ünïcödé 東京 ☃", "x" * 300]
    lines += [lines[i] for i in rng.integers(0, len(lines), size=60)]  # exact duplicates
    order = rng.permutation(len(lines))
    return [lines[i] for i in order]


def reference(model, tok, lines):
    """One line at a time, the plain transformers way."""
    out = []
    with torch.no_grad():
        for line in lines:
            enc = tok(line, truncation=True, max_length=512, return_tensors="pt")
            out.append(torch.softmax(model(**enc).logits, dim=-1)[0, 1].item())
    return np.array(out)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny(tmp_path_factory.mktemp("tox") / "tiny")


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    loc = tm.locate(str(tiny_dir), None, kind="model", option="--toxicity-model")
    model = tm.load_model(loc)
    tok = tm.load_tokenizer(tm.locate(str(tiny_dir), None, kind="tokenizer", option="--toxicity-tokenizer"))
    return model, tok


@pytest.fixture(scope="module")
def lines_and_ref(tiny):
    lines = make_lines()
    return lines, reference(*tiny, lines)


def options(model_dir, **kw):
    """The toxicity analyzer's options ({key: value}) for a local model; no self-test unless given."""
    return {"model": str(model_dir), "tokenizer": str(model_dir), "device": "cpu", "self_test": False, **kw}


def typed(**kw):
    """Typed toxicity options (what ``unavailable_reason`` takes)."""
    return ToxicityAnalyzer.options_from(kw)


# -- engine --------------------------------------------------------------------------------------

@pytest.mark.parametrize("forward", ["packed", "transformers"])
@pytest.mark.parametrize("budget,window,chunk,cache", [
    (1, 1, 1, 0), (64, 5, 3, 0), (300, 37, 16, 1000), (513, 10_000, 64, 1000),
    (2048, 100, 7, 0), (100_000, 10_000, 2048, 500_000), (96, 3, 2, 10),
])
def test_engine_matches_one_line_at_a_time(tiny, lines_and_ref, budget, window, chunk, cache, forward):
    lines, ref = lines_and_ref
    eng = ToxicityEngine(*tiny, device="cpu", batch_tokens=budget, window_lines=window, tokenize_chunk=chunk,
                         cache_lines=cache, forward=forward)
    assert eng.forward_impl == forward
    got = eng.score(lines)
    assert got.dtype == np.float32 and got.shape == (len(lines),)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    again = eng.score(lines[::-1])  # cached (when on) and order restored
    np.testing.assert_allclose(again, ref[::-1], atol=1e-5, rtol=0)
    s = eng.stats()
    assert s["lines"] == 2 * len(lines)
    assert s["padded_tokens"] >= s["tokens"] > 0 and 0.0 <= s["padding_waste"] < 1.0
    assert s["truncated_lines"] >= (1 if cache else 2)
    if cache >= len(lines):
        distinct = len(set(lines))
        assert s["lines_scored"] == distinct
        assert s["cache_hit_rate"] == pytest.approx((2 * len(lines) - distinct) / (2 * len(lines)))
    elif cache == 0:
        assert s["lines_scored"] == 2 * len(lines) and s["cache_hits"] == 0


def _batch_shape(win, rows):
    return len(rows), int(win.lens[rows].max())


@pytest.mark.parametrize("forward", ["packed", "transformers"])
def test_engine_batches_are_sorted_and_budgeted(tiny, lines_and_ref, monkeypatch, forward):
    lines, ref = lines_and_ref
    seen = []
    eng = ToxicityEngine(*tiny, device="cpu", batch_tokens=256, cache_lines=0, forward=forward)
    real = ToxicityEngine._forward_batch

    def spy(self, worker, win, rows):
        seen.append(_batch_shape(win, rows))
        return real(self, worker, win, rows)

    monkeypatch.setattr(ToxicityEngine, "_forward_batch", spy)
    np.testing.assert_allclose(eng.score(lines), ref, atol=1e-5, rtol=0)
    widths = [w for _, w in seen]
    assert widths == sorted(widths, reverse=True)  # longest first inside the (single) window
    assert all(n * w <= 256 or n == 1 for n, w in seen)
    assert eng.stats()["padding_waste"] < 0.25


@pytest.mark.parametrize("forward", ["packed", "transformers"])
def test_engine_out_of_memory_halves_budget_and_loses_nothing(tiny, lines_and_ref, monkeypatch, forward):
    lines, ref = lines_and_ref
    real = ToxicityEngine._forward_batch
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError

    def flaky(self, worker, win, rows):
        n, w = _batch_shape(win, rows)
        if n * w > 700:
            raise oom("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return real(self, worker, win, rows)

    monkeypatch.setattr(ToxicityEngine, "_forward_batch", flaky)
    eng = ToxicityEngine(*tiny, device="cpu", batch_tokens=4096, cache_lines=0, forward=forward)
    eng.min_batch_tokens = 4096  # fill the budget, so the first batches are too big
    got = eng.score(lines)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    s = eng.stats()
    assert s["oom_retries"] > 0 and s["batch_tokens"] <= 700 and s["lines_scored"] == len(lines)

    def always(self, worker, win, rows):
        raise oom("CUDA out of memory (simulated)")

    monkeypatch.setattr(ToxicityEngine, "_forward_batch", always)
    with pytest.raises(RuntimeError, match="out of memory on a single line"):
        ToxicityEngine(*tiny, device="cpu", batch_tokens=4096, cache_lines=0).score(["the dog"])


def test_engine_other_errors_propagate(tiny, monkeypatch):
    def broken(self, worker, win, rows):
        raise ValueError("boom")

    monkeypatch.setattr(ToxicityEngine, "_forward_batch", broken)
    with pytest.raises(ValueError, match="boom"):
        ToxicityEngine(*tiny, device="cpu").score(["the dog"] * 50)


def test_engine_odd_strings(tiny):
    eng = ToxicityEngine(*tiny, device="cpu")
    got = eng.score(["bad \ud800 surrogate", "", "ok"])
    assert np.isfinite(got).all()
    assert eng.score([]).shape == (0,)


def test_line_cache_is_bounded_lru():
    c = LineCache(3)
    c.put_many([b"a", b"b", b"c"], np.array([0.1, 0.2, 0.3]))
    assert c.get(b"a") == pytest.approx(0.1)  # a becomes most recent
    c.put_many([b"d"], np.array([0.4]))
    assert len(c) == 3 and c.get(b"b") is None and c.get(b"a") is not None
    off = LineCache(0)
    off.put_many([b"a"], np.array([1.0]))
    assert len(off) == 0


def test_device_resolution():
    from llama_audit.analyzers.base import ConfigError
    from llama_audit.analyzers.toxicity.engine import resolve_devices

    assert [d.type for d in resolve_devices("cpu")] == ["cpu"]
    if not torch.cuda.is_available():
        assert [d.type for d in resolve_devices("auto")] == ["cpu"]
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_devices("cuda:0")
    with pytest.raises(ConfigError):
        resolve_devices("tpu")


# -- analyzer ------------------------------------------------------------------------------------

DOCS = [
    "the dog hates the cat\n\nshe loves all people\n   \n",
    "",
    "  \n\t\n\r\n",
    "they are bad " * 300,
    "in scope? no\nthe dog",
    "one line only",
    "windows\r\nline endings\r\n",
    "the dog hates the cat\nthe dog hates the cat\nzebra",
]
IN_SCOPE = np.array([True, True, True, True, False, True, True, True])


def test_analyzer_annotates_per_document(tiny, tiny_dir):
    an = ToxicityAnalyzer(options(tiny_dir))
    an.setup()
    batch = DocBatch("s.jsonl", np.arange(len(DOCS), dtype=np.int64), [f"d{i}" for i in range(len(DOCS))], DOCS)
    cols = an.annotate(batch, BatchContext(IN_SCOPE, {}))
    assert [f.name for f in an.fields()] == list(cols)
    for f in an.fields():
        assert cols[f.name].type == f.type and len(cols[f.name]) == len(DOCS)
    mean, n, mx, frac = (cols[k].to_pylist() for k in ("toxicity_mean", "toxicity_lines", "toxicity_max",
                                                       "toxicity_frac_ge_0_5"))
    for i, text in enumerate(DOCS):
        lines = document_lines(text)
        if not IN_SCOPE[i] or not lines:
            assert mean[i] is None and n[i] is None and mx[i] is None and frac[i] is None, i
            continue
        ref = reference(*tiny, lines)
        assert n[i] == len(lines)
        assert mean[i] == pytest.approx(ref.mean(), abs=1e-5)
        assert mx[i] == pytest.approx(ref.max(), abs=1e-5)
        assert frac[i] == pytest.approx((ref >= 0.5).mean(), abs=1e-6)
    counts = an.fold(cols, BatchContext(IN_SCOPE, {}))
    assert counts["documents_scored"] == sum(m is not None for m in mean)
    assert counts["lines_scored"] == sum(x for x in n if x is not None)
    stats = an.stats()
    assert stats["lines"] == counts["lines_scored"] and stats["cache_hits"] >= 1  # the repeated line
    an.close()


def test_analyzer_sampling_is_deterministic(tiny_dir):
    docs = [f"the dog {i}\nshe loves the cat" for i in range(200)]
    ids = [f"doc-{i}" for i in range(200)]
    batch = DocBatch("s", np.arange(200, dtype=np.int64), ids, docs)
    scope = np.ones(200, dtype=bool)
    scope[::10] = False
    an = ToxicityAnalyzer(options(tiny_dir, sample=0.3, seed=11))
    cols = an.annotate(batch, BatchContext(scope, {}))  # sets itself up on first use
    scored = np.array([m is not None for m in cols["toxicity_mean"].to_pylist()])
    assert np.array_equal(scored, scope & sample_mask(ids, 11, 0.3))
    assert 30 < scored.sum() < 90
    # the same documents in another batch split give the same selection and values
    half = DocBatch("s", np.arange(100, dtype=np.int64), ids[100:], docs[100:])
    cols2 = an.annotate(half, BatchContext(scope[100:], {}))
    assert cols2["toxicity_mean"].to_pylist() == cols["toxicity_mean"].to_pylist()[100:]
    an.close()


def test_analyzer_config_before_and_after_setup(tiny_dir):
    an = ToxicityAnalyzer(options(tiny_dir, self_test={"margin": -1.0}))
    before = an.config()
    assert before == an.config()  # deterministic
    assert before["self_test"] == "on"
    sha = before["sha256"]
    assert set(sha["model"]) == {"config.json", "model.safetensors"}
    assert "vocab.txt" in sha["tokenizer"] or "tokenizer.json" in sha["tokenizer"]
    assert all(len(v) == 64 for part in sha.values() for v in part.values())
    assert before["label_index"] == 1 and before["max_length"] == 512 and before["sample_rate"] == 1.0
    an.setup()
    assert an.config() == before  # the configuration (hashed into OUT) does not change with setup
    assert an.stats()["self_test"]["status"] == "passed"  # the result goes to the run record
    an.close()
    skipped = ToxicityAnalyzer(options(tiny_dir))
    assert skipped.config()["self_test"] == "off"


# -- self-test -----------------------------------------------------------------------------------

def test_self_test_catches_inverted_label(tiny, tiny_dir, tmp_path):
    sentences = ["the dog hates the cat", "she loves all people", "they are very bad", "we never love you",
                 "a good house", "the cat is not good", "our people are always good", "my dog"]
    scores = reference(*tiny, sentences)
    order = np.argsort(scores)
    spec = {"benign": [sentences[i] for i in order[:4]], "toxic": [sentences[i] for i in order[4:]], "margin": 0.0}
    assert scores[order[4:]].mean() > scores[order[:4]].mean()

    ok = ToxicityAnalyzer(options(tiny_dir, self_test=spec))
    ok.setup()
    result = ok.stats()["self_test"]
    assert result["status"] == "passed" and result["toxic_mean"] > result["benign_mean"]
    ok.close()

    inverted = build_tiny(tmp_path / "inverted", invert=True)
    bad = ToxicityAnalyzer(options(inverted, self_test=spec))
    with pytest.raises(ToxicitySelfTestError, match="self-test failed.*label"):
        bad.setup()
    # the same inverted model passes when the label index says where toxic is
    fixed = ToxicityAnalyzer(options(inverted, self_test=spec, label_index=0))
    fixed.setup()
    fixed.close()


# -- finding the model ---------------------------------------------------------------------------

def test_unavailable_reasons(tiny_dir, tmp_path, monkeypatch):
    from llama_audit.analyzers.base import ConfigError

    def named_error(**kw) -> str:  # a named model that cannot be found is an error, not a reason to skip
        with pytest.raises(ConfigError) as info:
            ToxicityAnalyzer.unavailable_reason(typed(**kw))
        return str(info.value)

    assert ToxicityAnalyzer.unavailable_reason(typed(**options(tiny_dir))) is None
    missing = tmp_path / "no-such-model"
    r = named_error(model=str(missing), tokenizer=str(tiny_dir))
    assert "does not exist" in r and "--toxicity-model" in r and str(missing) in r
    r = named_error(model=str(tiny_dir), tokenizer=str(missing))
    assert "--toxicity-tokenizer" in r
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    r = named_error(model=str(empty), tokenizer=str(tiny_dir))
    assert "no weights" in r and "--toxicity-model" in r
    monkeypatch.setattr(tm, "hub_cache_dir", lambda: str(tmp_path / "hf-cache"))
    r = ToxicityAnalyzer.unavailable_reason(typed())
    assert "tomh/toxigen_hatebert" in r and "llama-audit models fetch" in r and "--toxicity-model PATH" in r
    an = ToxicityAnalyzer({"device": "cpu"})
    with pytest.raises(AnalyzerUnavailable, match="models fetch"):
        an.setup()


def test_cached_hub_id_is_found_offline(tiny_dir, tmp_path, monkeypatch):
    """A hub id resolves from a Hugging Face cache layout without any network access."""
    cache = tmp_path / "hub"
    for repo, commit in (("org/tiny-tox", "a" * 40), ("org/tiny-tok", "b" * 40)):
        root = cache / ("models--" + repo.replace("/", "--"))
        (root / "refs").mkdir(parents=True)
        (root / "refs" / "main").write_text(commit)
        shutil.copytree(tiny_dir, root / "snapshots" / commit)
    monkeypatch.setattr(tm, "hub_cache_dir", lambda: str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    opts = typed(model="org/tiny-tox", tokenizer="org/tiny-tok", device="cpu", self_test=False)
    assert ToxicityAnalyzer.unavailable_reason(opts) is None
    an = ToxicityAnalyzer(opts)
    cfg = an.config()
    assert cfg["model_commit"] == "a" * 40 and cfg["tokenizer_commit"] == "b" * 40
    an.setup()
    cols = an.annotate(DocBatch("s", np.arange(1, dtype=np.int64), ["x"], ["the dog"]),
                       BatchContext(np.ones(1, dtype=bool), {}))
    assert cols["toxicity_lines"].to_pylist() == [1]
    an.close()
    from llama_audit.analyzers.base import ConfigError

    with pytest.raises(ConfigError, match="revision v9"):
        ToxicityAnalyzer.unavailable_reason(typed(model="org/tiny-tox", revision="v9", tokenizer="org/tiny-tok"))


def test_tokenizer_model_mismatch_is_reported(tiny_dir, tmp_path):
    from llama_audit.analyzers.base import ConfigError

    big = tmp_path / "bigtok"
    big.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(500)]
    (big / "vocab.txt").write_text("\n".join(vocab) + "\n")
    _tokenizer(big / "vocab.txt").save_pretrained(big)
    an = ToxicityAnalyzer({"model": str(tiny_dir), "tokenizer": str(big), "device": "cpu", "self_test": False})
    with pytest.raises(ConfigError, match="--toxicity-tokenizer"):
        an.setup()


def test_columns_are_arrow_nullable(tiny_dir):
    an = ToxicityAnalyzer(options(tiny_dir))
    cols = an.annotate(DocBatch("s", np.arange(2, dtype=np.int64), ["a", "b"], ["", "the dog"]),
                       BatchContext(np.array([True, True]), {}))
    assert cols["toxicity_mean"].null_count == 1
    assert pa.table(cols).num_rows == 2
    an.close()


def test_scan_and_report_with_toxicity_through_the_cli(tiny_dir, tmp_path):
    import json

    from click.testing import CliRunner

    from llama_audit.cli import command

    corpus = tmp_path / "c" / "a.jsonl"
    corpus.parent.mkdir()
    corpus.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(
        ["The weather is nice today.\nWe walked to the park.", "", "I like apples and pears.\n\n  \nok"])))
    runner = CliRunner()
    app = command()
    res = runner.invoke(app, ["scan", str(corpus.parent), "--out", str(tmp_path / "o"), "--quiet",
                              "--analyzers", "toxicity", "--languages", "all", "--toxicity-model", str(tiny_dir),
                              "--toxicity-tokenizer", str(tiny_dir), "--no-toxicity-self-test", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    report = json.loads(runner.invoke(app, ["report", str(tmp_path / "o"), "--format", "json"]).stdout)
    tox = report["toxicity"]
    assert tox["documents_scored"] == 2 and len(tox["histogram"]["counts"]) == 100
    assert sum(tox["histogram"]["counts"]) == 2 and 0.0 <= tox["pct_ge_0_5"] <= 100.0
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["runs"][-1]["analyzer_stats"]["toxicity"]["lines"] >= 4


def test_default_model_absent_skips_but_a_named_model_that_cannot_load_fails(tmp_path, monkeypatch):
    """The default model missing from the default analyzer set: skipped with a warning. A model
    named with --toxicity-model (missing path, empty folder, hub id not in the cache) is asking for
    toxicity: one line, exit 2, before any shard is read, whether --analyzers names it or not."""
    import json

    from click.testing import CliRunner

    from llama_audit.cli import command

    monkeypatch.setattr(tm, "hub_cache_dir", lambda: str(tmp_path / "empty-hub-cache"))
    corpus = tmp_path / "c" / "a.jsonl"
    corpus.parent.mkdir()
    corpus.write_text(json.dumps({"text": "Hello there, general."}) + "\n")
    runner = CliRunner()
    app = command()
    res = runner.invoke(app, ["scan", str(corpus.parent), "--out", str(tmp_path / "o1"), "--quiet"])
    assert res.exit_code == 0 and "skipping analyzer 'toxicity'" in res.stderr
    report = json.loads(runner.invoke(app, ["report", str(tmp_path / "o1"), "--format", "json"]).stdout)
    assert report["toxicity"]["status"] == "skipped" and "tomh/toxigen_hatebert" in report["toxicity"]["reason"]
    empty = tmp_path / "empty-model"
    empty.mkdir()
    for k, named in enumerate([str(tmp_path / "no-model"), str(empty), "org/not-fetched"]):
        for analyzers in ([], ["--analyzers", "toxicity"]):
            out = tmp_path / f"o-{k}-{len(analyzers)}"
            res = runner.invoke(app, ["scan", str(corpus.parent), "--out", str(out), "--quiet", *analyzers,
                                      "--toxicity-model", named])
            assert res.exit_code == 2, res.output
            assert "--toxicity-model" in res.stderr and named in res.stderr
            assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output
            assert not out.exists()  # refused before the OUT was prepared or any shard read


@pytest.mark.parametrize("broken", ["weights", "config", "tokenizer"])
def test_corrupt_model_files_are_one_line_errors(tiny_dir, tmp_path, broken):
    """Files that exist but do not load: exit 2 with one line naming the directory, no traceback;
    a corrected rerun into the same OUT is accepted (nothing was scanned)."""
    import json

    from click.testing import CliRunner

    from llama_audit.cli import command

    bad = tmp_path / "bad"
    shutil.copytree(tiny_dir, bad)
    if broken == "weights":
        (bad / "model.safetensors").write_bytes((tiny_dir / "model.safetensors").read_bytes()[:1000])
    elif broken == "config":
        (bad / "config.json").write_text("{bad")
    else:
        (bad / "tokenizer.json").write_text("{bad")
    corpus = tmp_path / "c" / "a.jsonl"
    corpus.parent.mkdir()
    corpus.write_text(json.dumps({"text": "Hello there, general."}) + "\n")
    args = ["scan", str(corpus.parent), "--out", str(tmp_path / "o"), "--quiet", "--analyzers", "toxicity",
            "--languages", "all", "--no-toxicity-self-test"]
    model, tok = (str(tiny_dir), str(bad)) if broken == "tokenizer" else (str(bad), str(tiny_dir))
    app = command()
    res = CliRunner().invoke(app, args + ["--toxicity-model", model, "--toxicity-tokenizer", tok])
    kind = "tokenizer" if broken == "tokenizer" else "model"
    assert res.exit_code == 2, res.output
    assert f"toxicity {kind} '{bad}'" in res.stderr and "cannot be loaded" in res.stderr
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1 and res.stdout == ""
    res = CliRunner().invoke(app, args + ["--toxicity-model", str(tiny_dir), "--toxicity-tokenizer", str(tiny_dir)])
    assert res.exit_code == 0, res.output


def test_resumed_or_sliced_scan_gives_the_same_bytes(tiny_dir, tmp_path):
    """Shards share lines (boilerplate); scanning a shard after others, or alone first and then
    resuming, gives the same annotation bytes: the line cache does not carry over between shards."""
    import json

    from llama_audit.job import ScanRequest, run_scan

    rng = np.random.default_rng(1)
    common = make_lines(120, seed=3)
    corpus = tmp_path / "c"
    corpus.mkdir()
    for s in range(3):
        docs = []
        for i in range(30):
            picked = rng.choice(len(common), size=int(rng.integers(1, 12)))
            docs.append({"id": f"{s}-{i}", "text": "\n".join(common[j] for j in picked)})
        (corpus / f"p{s}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))

    def scan(out, **kw):
        return run_scan(ScanRequest(paths=[str(corpus)], out=str(tmp_path / out), analyzers=["toxicity"],
                                    languages=("all",), options={"toxicity": options(tiny_dir)}, **kw))

    scan("whole")
    scan("resumed", num_shards=3, shard_index=2)  # the last shard alone first...
    scan("resumed")  # ...then the rest, in one process, after it
    for sub in ("annotations", "partials"):
        a = sorted((tmp_path / "whole" / sub).iterdir())
        b = sorted((tmp_path / "resumed" / sub).iterdir())
        assert [p.name for p in a] == [p.name for p in b] and len(a) == 3
        assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b], sub


def _overlap_corpus(tmp_path):
    import json

    rng = np.random.default_rng(2)
    common = make_lines(80, seed=4)
    corpus = tmp_path / "c"
    corpus.mkdir()
    for s in range(2):
        docs = [{"id": f"{s}-{i}", "text": "\n".join(common[j] for j in rng.choice(len(common), size=5))}
                for i in range(40)]
        docs[3]["text"] = "   "  # no line to score
        (corpus / f"p{s}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    return corpus


def test_overlapped_toxicity_gives_the_same_bytes(tiny_dir, tmp_path):
    """Toxicity in a background thread, overlapping the next batch (as on a GPU): same annotation,
    partial and emitted bytes, in the same order, as scoring in line with the other analyzers."""
    import pyarrow as pa

    from llama_audit.job import ScanRequest, run_scan

    corpus = _overlap_corpus(tmp_path)
    emitted = {}
    for mode in (False, True):
        tables = emitted[mode] = []
        opts = {"toxicity": options(tiny_dir, overlap=mode)}
        req = ScanRequest(paths=[str(corpus)], out=str(tmp_path / f"o{mode}"), languages=("all",),
                          analyzers=["pronouns", "toxicity"], options=opts, emitter=tables.append)
        req.read.batch_docs = 7  # many batches per shard
        run_scan(req)
    for sub in ("annotations", "partials"):
        a = sorted((tmp_path / "oFalse" / sub).iterdir())
        b = sorted((tmp_path / "oTrue" / sub).iterdir())
        assert len(a) == 2 and [p.read_bytes() for p in a] == [p.read_bytes() for p in b], sub
    assert len(emitted[True]) > 6
    assert pa.concat_tables(emitted[False]).equals(pa.concat_tables(emitted[True]))


def test_overlapped_analyzer_error_fails_the_shard(tiny_dir, tmp_path, monkeypatch):
    from llama_audit.job import ScanRequest, run_scan

    corpus = _overlap_corpus(tmp_path)
    real = ToxicityAnalyzer.annotate
    calls = []

    def flaky(self, batch, ctx):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("device lost")
        return real(self, batch, ctx)

    monkeypatch.setattr(ToxicityAnalyzer, "annotate", flaky)
    opts = {"toxicity": options(tiny_dir, overlap=True)}
    req = ScanRequest(paths=[str(corpus)], out=str(tmp_path / "o"), analyzers=["toxicity"], languages=("all",),
                      options=opts)
    req.read.batch_docs = 7
    res = run_scan(req)
    assert len(res.failed) == 1 and "RuntimeError: device lost" in next(iter(res.failed.values()))
    assert res.shards_run == 2


def test_several_devices_share_the_windows(tiny, lines_and_ref):
    """The multi-GPU path (one replica and thread per device), with two CPU replicas standing in."""
    import copy

    lines, ref = lines_and_ref
    eng = ToxicityEngine(*tiny, device="cpu", batch_tokens=128, cache_lines=0)
    w = eng.workers[0]
    twin = copy.copy(w)
    twin.model = copy.deepcopy(w.model)
    from llama_audit.analyzers.toxicity.packed_bert import packed_or_reason

    twin.packed = packed_or_reason(twin.model)[0]
    eng.workers = [w, twin]
    seen = set()
    real = ToxicityEngine._forward_batch

    def spy(self, worker, win, rows):
        seen.add(id(worker))
        time.sleep(0.002)  # a device is busy for a while: the other thread takes the next batch
        return real(self, worker, win, rows)

    ToxicityEngine._forward_batch = spy
    try:
        np.testing.assert_allclose(eng.score(lines), ref, atol=1e-5, rtol=0)
        np.testing.assert_allclose(eng.score(lines[:50]), ref[:50], atol=1e-5, rtol=0)
    finally:
        ToxicityEngine._forward_batch = real
    assert seen == {id(w), id(twin)}  # both replicas took batches
    assert eng.stats()["lines_scored"] == len(lines) + 50
    eng.close()


def test_closed_analyzer_does_not_load_the_model_again(tiny_dir):
    """A batch still running in the background after Ctrl-C must not reload the model."""
    an = ToxicityAnalyzer(options(tiny_dir))
    an.setup()
    an.close()
    batch = DocBatch("s.jsonl", np.arange(1, dtype=np.int64), ["d0"], ["the dog"])
    with pytest.raises(RuntimeError, match="closed"):
        an.annotate(batch, BatchContext(np.ones(1, dtype=bool), {}))
    assert an._engine is None
    an.setup()  # an explicit setup opens it again
    assert an.annotate(batch, BatchContext(np.ones(1, dtype=bool), {}))["toxicity_mean"][0].as_py() is not None
    an.close()


def test_half_precision_checkpoint_is_loaded_in_fp32(tiny_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    half = tmp_path / "half"
    shutil.copytree(tiny_dir, half)
    m = AutoModelForSequenceClassification.from_pretrained(str(tiny_dir))
    m.to(torch.bfloat16).save_pretrained(half)
    loaded = tm.load_model(tm.locate(str(half), None, kind="model", option="-"))
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    tok = tm.load_tokenizer(tm.locate(str(tiny_dir), None, kind="tokenizer", option="-"))
    assert ToxicityEngine(loaded, tok, device="cpu").forward_impl == "packed"
