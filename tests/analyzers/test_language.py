import numpy as np
import pyarrow as pa

from llama_audit.analyzers.base import BatchContext, DocBatch
from llama_audit.analyzers.language import EMBEDDED_SHA256, LanguageAnalyzer, embedded_model_path, model_sha256


def batch(texts):
    return DocBatch("s", np.arange(len(texts)), [str(i) for i in range(len(texts))], list(texts))


def run(texts, threshold=0.5):
    a = LanguageAnalyzer({"threshold": threshold})
    b = batch(texts)
    ctx = BatchContext(np.ones(len(texts), bool), {"chars": pa.array([len(t) for t in texts], pa.int64())})
    cols = a.annotate(b, ctx)
    return cols["lang"].to_pylist(), cols["lang_score"].to_pylist(), a.fold(cols, ctx)


def test_embedded_model_checksum():
    assert model_sha256(embedded_model_path()) == EMBEDDED_SHA256


def test_scope_labels_are_the_models_language_codes():
    """The language analyzer provides the scope gate: its column, and the labels --languages is checked against."""
    assert LanguageAnalyzer.scope_column == "lang" and "lang" in [f.name for f in LanguageAnalyzer().fields()]
    labels = LanguageAnalyzer().scope_labels()
    assert len(labels) == 176 and {"en", "fr", "de", "zh"} <= labels
    assert not any(label.startswith("__label__") for label in labels)
    assert LanguageAnalyzer({"engine": "fasttext"}).scope_labels() == labels


def test_labels_threshold_and_empty_documents():
    texts = ["The quick brown fox jumps over the lazy dog and runs into the forest.",
             "Le renard brun rapide saute par-dessus le chien paresseux.",
             "", "   \n\t ", "x"]
    labels, scores, counts = run(texts)
    assert labels[:2] == ["en", "fr"]
    assert labels[2] == labels[3] == "unknown" and scores[2] is None and scores[3] is None
    assert 0 < scores[0] <= 1.0
    assert counts["documents/en"] == 1 and counts["documents/unknown"] >= 2
    assert counts["chars/en"] == len(texts[0])


def test_threshold_turns_low_confidence_into_unknown():
    texts = ["The quick brown fox jumps over the lazy dog and runs into the forest."]
    labels, scores, _ = run(texts, threshold=1.0)
    assert labels == ["unknown"] and scores[0] < 1.0 or labels == ["en"] and scores[0] >= 1.0
    labels, _, _ = run(texts, threshold=0.0)
    assert labels == ["en"]


def test_newlines_are_spaces_for_the_whole_document():
    one = "The committee met on Tuesday to discuss the budget for next year."
    labels, scores, _ = run([one.replace(" ", "\n"), one])
    assert labels == ["en", "en"] and abs(scores[0] - scores[1]) < 1e-6


def test_fastlid_and_fasttext_engines_agree():
    texts = ["The quick brown fox jumps over the lazy dog.", "Der schnelle braune Fuchs springt.",
             "東京は日本の首都です。", "", "12345 !!!", "x" * 5000, "Ça va très bien, merci beaucoup mon ami."]
    out = {}
    for engine in ("fastlid", "fasttext"):
        a = LanguageAnalyzer({"engine": engine})
        out[engine] = a.predict(texts)
    assert out["fastlid"][0] == out["fasttext"][0]
    np.testing.assert_allclose(out["fastlid"][1], out["fasttext"][1], atol=1e-4)
    assert isinstance(a.stats(), dict)
