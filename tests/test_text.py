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
    assert tb.sets[0] == {"he", "said"} and tb.sets[1] == set()
    assert tb.joined(0) == " he said "
