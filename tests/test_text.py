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


def _random_texts(seed: int, n: int, length: int) -> list[str]:
    import random

    rng = random.Random(seed)
    words = ["she", "He", "african", "American", "african-american", "gay", "her's", "über", "ＳＨＥ", "ﬁne", "中文",
             "Bahá'í", "x_y", "they", "é\u0301", "\u2019s", "—", "…", "12", "İstanbul"]
    seps = [" ", " ", " ", "\n", "\t", ", ", ". ", "\xa0", "\r\n"]
    out = []
    for _ in range(n):
        parts, size = [], 0
        while size < length:
            w = rng.choice(words) + rng.choice(seps)
            parts.append(w)
            size += len(w)
        out.append("".join(parts))
    out.append("plain ascii words only " * (length // 20))  # ASCII: the bytes form
    return out


def test_long_documents_tokenised_in_pieces_give_the_whole_document_sets_and_joined(monkeypatch):
    """A document over LONG_DOC_CHARS is tokenised in pieces cut at whitespace (bounded memory):
    its token set and joined form (what lexicon matching reads) equal the whole-document ones."""
    import llama_audit.text as text_module

    texts = _random_texts(3, 40, 400)
    whole = TokenizedBatch(texts)
    monkeypatch.setattr(text_module, "LONG_DOC_CHARS", 64)
    pieces = TokenizedBatch(texts)
    for i in range(len(texts)):
        assert pieces.tokens[i] is None  # never held whole
        assert pieces.is_bytes[i] == whole.is_bytes[i]
        assert pieces.sets[i] == whole.sets[i]
        joined = whole.joined(i)
        assert pieces.joined(i).decode() == (joined.decode() if whole.is_bytes[i] else joined)
        for needle in (" african american ", " she ", " he s ", " bahá í ", " über she ", " not there "):
            key = needle.encode() if whole.is_bytes[i] and needle.isascii() else needle
            if whole.is_bytes[i] and not needle.isascii():
                continue  # (a bytes document is only ever asked for ASCII needles)
            assert (key in pieces.joined(i)) == (key in joined), (i, needle)
    assert whole.is_bytes[-1] and not whole.is_bytes[0]


def test_whitespace_pieces_cut_only_before_whitespace():
    from llama_audit.text import whitespace_pieces

    text = "word " * 50 + "x" * 300 + " tail\tend" + "y" * 60 + "\nz"
    pieces = list(whitespace_pieces(text, 64))
    assert "".join(pieces) == text
    assert all(len(p) <= 64 for p in pieces)
    # every cut falls before whitespace, except inside the 300-character run (none to cut at)
    starts = [sum(map(len, pieces[:k])) for k in range(1, len(pieces))]
    assert all(text[s] in " \t\n" or text[s - 1] == "x" == text[s] for s in starts)
    assert sum(text[s] == "x" for s in starts) == 300 // 64
    assert list(whitespace_pieces("", 8)) == [""]


def test_utf8_size_equals_encoded_length(monkeypatch):
    import llama_audit.text as text_module
    from llama_audit.text import utf8_size

    samples = ["", "ascii", "é中😀\ud800x", "ab\ud83d\ude00" * 7]
    monkeypatch.setattr(text_module, "LONG_DOC_CHARS", 4)
    for t in samples:
        assert utf8_size(t) == len(t.encode("utf-8", "surrogatepass"))
