from llama_audit.text import TokenizedBatch, normalize, term_key, tokenize


def test_normalize_is_nfkc_then_casefold():
    assert normalize("ＳＨＥ") == "she"  # full-width letters (NFKC)
    assert normalize("ﬁne") == "fine"  # ligature (NFKC)
    assert normalize("Straße") == "strasse"  # casefold, not lower


def test_tokens_split_on_punctuation_hyphens_apostrophes_underscores():
    assert tokenize("She's an African-American author_writer.") == ["she", "s", "an", "african", "american", "author", "writer"]
    assert tokenize("  ") == []
    assert tokenize("über 3 Bahá'í") == ["über", "3", "bahá", "í"]


def test_term_key_merges_spelling_variants():
    assert term_key("LGBTQ+") == term_key("LGBTQ") == "lgbtq"
    assert term_key("African-American") == "african american"


def test_tokenized_batch_masks_out_of_scope_docs():
    tb = TokenizedBatch(["He said", "She said"], mask=[True, False])
    assert tb.sets[0] == {b"he", b"said"} and tb.sets[1] == set()  # ASCII fast path: bytes tokens
    assert tb.joined(0) == b" he said "
    tb = TokenizedBatch(["Él dijo"])
    assert tb.sets[0] == {"él", "dijo"} and tb.joined(0) == " él dijo "


def test_fast_path_tokens_equal_the_reference_tokenizer():
    import random

    rng = random.Random(7)
    alphabet = list("abcXYZ019 _-'.,\n\t") + ["\u2019", "\u201c", "\u2014", "\u2026", "\xa0", "é", "ß", "ﬁ", "Ｓ", "İ", "\u00b7", "中",
                                          "™", "²", "①", "½", "£", "©", "■", "\u0301", "\ufffd", "\u200b", "㎏", "ﬀ", "Å",
                                          "\u0385", "ǅ", "ⅷ", "\u1100", "\u1161"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    texts += ["Brand™ costs £5 © 2020 ■ x²", "She’s here — “they” said…", "plain ascii text, with_underscores and CAPS"]
    tb = TokenizedBatch(texts)
    for i, t in enumerate(texts):
        toks = [x.decode() if isinstance(x, bytes) else x for x in tb.tokens[i]]
        assert toks == tokenize(t), t
    assert tb.is_bytes[-1] and tb.is_bytes[-2]
