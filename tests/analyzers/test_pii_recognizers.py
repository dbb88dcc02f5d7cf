"""Detectors of llama_audit.analyzers.pii: positives, hard negatives, boundaries.

Test values are public examples (documentation numbers, test card numbers, example.com). Token
shapes for SECRET are assembled at run time so no token-like literal sits in the source.
"""

from __future__ import annotations

import pytest

from llama_audit.analyzers.pii import PiiDetector
from llama_audit.analyzers.pii.iban import iban_valid, mod97_valid
from llama_audit.analyzers.pii.recognizers import card_number_valid, luhn_valid, ssn_valid
from llama_audit.analyzers.pii.spans import resolve_overlaps

ALL = PiiDetector()


def found(text: str, detector: PiiDetector = ALL) -> list[tuple[str, str]]:
    """(type, matched text) for each span; also checks that batch detection agrees."""
    spans = detector.detect(text)
    assert detector.detect_batch([text]) == [spans]
    assert spans == sorted(spans, key=lambda s: s[1])
    return [(t, text[s:e]) for t, s, e in spans]


def only(text: str, detector: PiiDetector = ALL) -> str:
    hits = found(text, detector)
    assert len(hits) == 1, hits
    return hits[0][1]


# ----------------------------------------------------------------------------------- email


@pytest.mark.parametrize(
    "text, value",
    [
        ("contact john.doe+tag@example.co.uk today", "john.doe+tag@example.co.uk"),
        ("Write to <jane@example.org> please", "jane@example.org"),
        ("From: Jane [mailto:jane@example.org]", "jane@example.org"),
        ('<a href="mailto:bob@example.com">mail</a>', "bob@example.com"),
        ("https://example.com/share?to=alice@example.com&x=1", "alice@example.com"),
        ("Questions? tera@example.com.", "tera@example.com"),
        ("a@b.io", "a@b.io"),
        ("user@xn--80ak6aa92e.com", "user@xn--80ak6aa92e.com"),
        ("schreib an müller@example.de", "müller@example.de"),
        ("用户@例子.广告", "用户@例子.广告"),
    ],
)
def test_email_positives(text, value):
    assert found(text) == [("EMAIL_ADDRESS", value)]


@pytest.mark.parametrize(
    "text",
    [
        "my email is info@presidio.",
        "this is not an email: hello-world here",
        "follow @someone on social media",
        "ssh user@localhost",
        "retina image logo@2x.png",
        "npm install lodash@4.17.21",
        "References: <c40sdm$mov$1@news.example.net>",
        "a..b@example.com",
        "weird@-example.com",
        "git clone git@github.com:org/repo.git",
        "ssh -T GIT@gitlab.example.org",
    ],
)
def test_email_negatives(text):
    assert [t for t, _ in found(text)] == []


def test_email_offsets_are_code_points_after_non_ascii():
    text = "Grüße aus Köln 🎉 — mail: ana@example.com"
    ((typ, start, end),) = ALL.detect(text)
    assert typ == "EMAIL_ADDRESS"
    assert text[start:end] == "ana@example.com"
    assert start == text.index("ana@")
    assert len(text.encode("utf-8")) > len(text)  # byte offsets would differ


# ----------------------------------------------------------------------------------- phone


@pytest.mark.parametrize(
    "text, value",
    [
        ("My US number is (415) 555-0132.", "(415) 555-0132"),
        ("US: 415-555-0132", "415-555-0132"),
        ("call 505.562.2229 now", "505.562.2229"),
        ("toll free 1-800-476-0446", "1-800-476-0446"),
        ("(310)392-4944", "(310)392-4944"),
        ("international +1 415 555 0132", "+1 415 555 0132"),
        ("London +44 20 7123 4567", "+44 20 7123 4567"),
        ("Berlin +49 30 1234567", "+49 30 1234567"),
        ("Paris: +33 1 42 68 53 00", "+33 1 42 68 53 00"),
        ("Brazil: +55 11 98456 5666", "+55 11 98456 5666"),
        ("CONTACT: Julie (719-440-1050) or", "719-440-1050"),
    ],
)
def test_phone_positives_default_region(text, value):
    assert found(text) == [("PHONE_NUMBER", value)]


def test_phone_several_in_a_sentence():
    assert found("Call 541-621-9737 or 541-772-6902.") == [
        ("PHONE_NUMBER", "541-621-9737"),
        ("PHONE_NUMBER", "541-772-6902"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "on 12/25/2015 at noon",
        "logged 2015-11-06 10:30",
        "pi is 3.1415926535",
        "ratio 0.1234567890",
        "id 1234567890",  # no US area code starts with 1
        "mask 000 0000 0000",
        "ISBN 978-0-306-40615-7",
        "/DATA/B850/2015167/b8/folder",
        "at 12:30:45 sharp",
        "My UK number is 020 7123 4567",  # national UK format is not a US number
    ],
)
def test_phone_negatives(text):
    assert found(text) == []


def test_phone_region_option():
    ph = PiiDetector(["PHONE_NUMBER"], region="PH")
    tr = PiiDetector(["PHONE_NUMBER"], region="TR")
    assert only("Telepono: 0917 123 4567", ph) == "0917 123 4567"
    assert found("Telepono: 0917 123 4567") == []  # not a US number
    # A Philippine mobile number needs its trunk prefix when written nationally.
    assert found("917-123-4567", ph) == []
    assert only("Cep no: 0532 123 45 67", tr) == "0532 123 45 67"
    # International numbers are found whatever the region.
    assert only("+63 917 123 4567") == "+63 917 123 4567"
    assert only("+1 415 555 0132", tr) == "+1 415 555 0132"


def test_phone_region_is_validated():
    with pytest.raises(ValueError):
        PiiDetector(region="XX")


PHONES = PiiDetector(["PHONE_NUMBER"])


@pytest.mark.parametrize(
    "text, region",
    [
        # Catalogue numbers that are also valid phone numbers of the region, rejected by their
        # label: on the same line, after other numbers of the same label, or on the line before.
        ("ISBN-13: 978-2-266-11156-0, ISBN-10: 2-266-11156-6", "US"),
        ("ISBN 7-309-04547-5", "US"),
        ("isbn: 4-19-830127-1 (pbk.)", "US"),
        ("ISBN-10:\n0596520689", "DE"),
        ("ISBN\n  0-596-52068-9", "JP"),
        ("LCCN 2019123456", "US"),
        ("Library of Congress Control Number: 2019936512", "US"),
        ("LC control no.: 2004-123456", "CN"),
        ("ISSN 2049-3630", "DK"),
        ("ISSN: 2167-8359 (print)", "DK"),
    ],
)
def test_phone_catalogue_numbers_with_a_label_are_not_phones(text, region):
    assert found(text, PiiDetector(["PHONE_NUMBER"], region)) == []


def test_phone_isbn13_without_label_by_checksum():
    # "phone" makes the number admissible as merely possible; the 978 prefix with a valid ISBN-13
    # check digit still says book, not phone.
    assert found("Phone orders: 978-1-4028-9462-6", PiiDetector(["PHONE_NUMBER"], "DE")) == []
    assert found("Phone orders: 9781402894626", PiiDetector(["PHONE_NUMBER"], "DE")) == []


def test_phone_isbn10_hyphenated_as_an_isbn_without_label():
    # Valid US numbers as digits; the 1-3-5-1 grouping and the check digit say ISBN.
    assert found("see 7-309-04547-5 and 2-266-11156-6", PHONES) == []


def test_phone_after_a_catalogue_label_a_phone_word_wins():
    text = "ISBN 0-306-40615-2; orders: tel. (212) 555-0123"
    assert found(text, PHONES) == [("PHONE_NUMBER", "(212) 555-0123")]
    # A label two lines up says nothing about this line.
    assert found("ISBN 0-306-40615-2\nsomething else\n(212) 555-0123", PHONES) == [
        ("PHONE_NUMBER", "(212) 555-0123")
    ]


def test_phone_full_width_and_other_unicode_digits_keep_original_offsets():
    text = "電話：（２１２）５５５－０１２３ まで"
    spans = PHONES.detect(text)
    assert PHONES.detect_batch([text]) == [spans]
    assert [text[s:e] for _, s, e in spans] == ["（２１２）５５５－０１２３"]
    arabic = "هاتف: +٤٤ ٢٠ ٧٩٤٦ ٠٩٥٨ شكرا"
    assert found(arabic, PHONES) == [("PHONE_NUMBER", "+٤٤ ٢٠ ٧٩٤٦ ٠٩٥٨")]
    glued = "ご予約は＋１ ４１５ ５５５ ０１４４へ"  # no space between CJK words and numbers
    assert found(glued, PHONES) == [("PHONE_NUMBER", "＋１ ４１５ ５５５ ０１４４")]
    mixed = "Grüße 🎉 tel ２１２-５５５-０１２３."
    assert found(mixed, PHONES) == [("PHONE_NUMBER", "２１２-５５５-０１２３")]


@pytest.mark.parametrize(
    "text, value",
    [
        ("London office (+44) 20 7946 0958.", "(+44) 20 7946 0958"),
        ("London office (0044) 20 7946 0958.", "(0044) 20 7946 0958"),
        ("London office 0044 20 7946 0958.", "0044 20 7946 0958"),
        ("Sydney (+61) 2 5550 1234", "(+61) 2 5550 1234"),
    ],
)
def test_phone_international_prefix_in_parentheses(text, value):
    assert found(text, PHONES) == [("PHONE_NUMBER", value)]


@pytest.mark.parametrize(
    "text, value",
    [
        ("Call (212) 555-0123 x123 today", "(212) 555-0123 x123"),
        ("Call (212) 555-0123x45.", "(212) 555-0123x45"),
        ("desk: 212-555-0123 ext. 123, fax", "212-555-0123 ext. 123"),
        ("desk: 212-555-0123 Ext 9", "212-555-0123 Ext 9"),
        ("desk: +1 212 555 0123 EXT123", "+1 212 555 0123 EXT123"),
        ("desk: 212.555.0123, extension 4410", "212.555.0123, extension 4410"),
    ],
)
def test_phone_extension_is_part_of_the_span(text, value):
    assert found(text, PHONES) == [("PHONE_NUMBER", value)]


@pytest.mark.parametrize(
    "text, value",
    [
        ("Tel: (555) 555-0123", "(555) 555-0123"),  # area code 555 is not in service
        ("call +44 7700 900123 now", "+44 7700 900123"),  # Ofcom's drama range
        ("Fax 555 555 0199", "555 555 0199"),
        ("PHONE: +44 (0) 7700 900 461", "+44 (0) 7700 900 461"),
    ],
)
def test_phone_context_word_admits_a_possible_number(text, value):
    assert found(text, PHONES) == [("PHONE_NUMBER", value)]
    # without the word, the number is not valid and is not reported
    bare = text.split(" ", 1)[1]
    assert found(bare, PHONES) == []


@pytest.mark.parametrize(
    "text",
    [
        "Call number: 5555550123",  # a library shelf mark, not a phone
        "call 2015-11-06 10:30",  # a date stays a date
        "phone model 1234567",  # too short for a possible US number
        "call me at 9999999999",  # one repeated digit
    ],
)
def test_phone_context_word_does_not_admit_everything(text):
    assert found(text, PHONES) == []


# -------------------------------------------------------------------------------------- ip


@pytest.mark.parametrize(
    "text, typ, value",
    [
        ("resolver 8.8.8.8 answered", "IP_ADDRESS", "8.8.8.8"),
        ("router at 192.168.0.1,", "IP_ADDRESS_PRIVATE", "192.168.0.1"),
        ("localhost 127.0.0.1", "IP_ADDRESS_PRIVATE", "127.0.0.1"),
        ("group 224.0.0.1", "IP_ADDRESS_PRIVATE", "224.0.0.1"),  # multicast
        ("Route is 10.0.0.0/8.", "IP_ADDRESS_PRIVATE", "10.0.0.0/8"),
        ("bad prefix 10.0.0.0/123", "IP_ADDRESS_PRIVATE", "10.0.0.0"),
        ("dns 2001:4860:4860::8888", "IP_ADDRESS", "2001:4860:4860::8888"),
        ("Connect to [2001:4860:4860::8888]:443", "IP_ADDRESS", "2001:4860:4860::8888"),
        ("docs use 2001:db8::1.", "IP_ADDRESS_PRIVATE", "2001:db8::1"),
        ("my ip: ::1", "IP_ADDRESS_PRIVATE", "::1"),
        ("fe80::1%eth0 up", "IP_ADDRESS_PRIVATE", "fe80::1%eth0"),
        ("Prefix: 2001:db8::/32", "IP_ADDRESS_PRIVATE", "2001:db8::/32"),
        ("mapped ::ffff:8.8.8.8", "IP_ADDRESS", "::ffff:8.8.8.8"),
        ("Tunnel to 2001:db8::10.0.0.1", "IP_ADDRESS_PRIVATE", "2001:db8::10.0.0.1"),
        ("192.168.2.1@eth0", "IP_ADDRESS_PRIVATE", "192.168.2.1"),
    ],
)
def test_ip_positives(text, typ, value):
    assert found(text) == [(typ, value)]


@pytest.mark.parametrize(
    "text",
    [
        "running version 1.2.3.4 now",
        "Version: 10.0.0.1",
        "release v1.2.3.4",
        "OID 1.3.6.1.4.1.311",
        "256.256.256.256",
        "192.168.01.1",
        "IP192.168.1.1text",
        "Time 12:34:56",
        "Ratio 1:2:3:4",
        "MAC address aa:bb:cc:dd:ee:ff",
        "MAC 00:1A:2B:3C:4D:5E",
        "std::cout << x;",
        "foo :: Int -> Int",
        "dead::beef",
        "684D:1111:222:3333:4444:5555:77",
        "2001::db8::1",
        "12345:db8::1",
        "fe80::1text",
    ],
)
def test_ip_negatives(text):
    assert found(text) == []


def test_ipv4_inside_ipv6_is_one_span():
    assert found("::ffff:192.0.2.1") == [("IP_ADDRESS_PRIVATE", "::ffff:192.0.2.1")]


# ----------------------------------------------------------------------------- credit card


@pytest.mark.parametrize(
    "text, value",
    [
        ("card 4111 1111 1111 1111 exp 12/29", "4111 1111 1111 1111"),
        ("4012-8888-8888-1881", "4012-8888-8888-1881"),
        ("amex 378282246310005.", "378282246310005"),
        ("amex 3782 822463 10005", "3782 822463 10005"),
        ("mc 5555555555554444", "5555555555554444"),
        ("discover 6011000990139424", "6011000990139424"),
        ("jcb 3530111333300000", "3530111333300000"),
    ],
)
def test_credit_card_positives(text, value):
    assert found(text) == [("CREDIT_CARD", value)]


def test_credit_cards_in_one_run():
    text = "4012888888881881 4012-8888-8888-1881 4012 8888 8888 1881"
    assert [v for _, v in found(text)] == ["4012888888881881", "4012-8888-8888-1881", "4012 8888 8888 1881"]


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # Luhn fails
        "my card is 4012-8888-8888-1882",
        "9111111111111003",  # Luhn-valid, no issuer uses 9
        "41111111111110008",  # Visa prefix, 17 digits: not a Visa length
        "0000 0000 0000 0000",
        "4111-1111 1111 1111",  # mixed separators
        "ID4111111111111111",
        "0.4111111111111111",
        "36168002586008",  # Luhn fails
    ],
)
def test_credit_card_negatives(text):
    assert [t for t, _ in found(text) if t == "CREDIT_CARD"] == []


def test_card_validators():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert card_number_valid("378282246310005")
    assert not card_number_valid("37828224631000")  # Amex is 15 digits


# ------------------------------------------------------------------------------------- ssn


@pytest.mark.parametrize("value", ["078-05-1123", "078 05 1123", "078.05.1123", "123-45-6788"])
def test_ssn_positives(value):
    assert found(f"SSN: {value}.") == [("US_SSN", value)]


@pytest.mark.parametrize(
    "text",
    [
        "000-12-3456",  # area 000
        "666-12-3456",  # area 666
        "912-34-5678",  # area 9xx
        "078-00-1123",  # group 00
        "078-05-0000",  # serial 0000
        "078-05-1120",  # the Woolworth wallet card number
        "123-45-6789",  # the standard placeholder
        "078-05.1123",  # mixed separators
        "078051123",  # bare nine digits are not reported
        "1078-05-1123",
        "078-05-11234",
        "12 078 05 1123",
        "078 05 1123 45",
    ],
)
def test_ssn_negatives(text):
    assert [t for t, _ in found(text) if t == "US_SSN"] == []


def test_ssn_rules():
    assert ssn_valid("078", "05", "1123")
    assert not ssn_valid("900", "05", "1123")
    assert not ssn_valid("111", "11", "1111")


# ------------------------------------------------------------------------------------ iban


@pytest.mark.parametrize(
    "text, value",
    [
        ("IBAN DE89 3704 0044 0532 0130 00.", "DE89 3704 0044 0532 0130 00"),
        ("GB29NWBK60161331926819", "GB29NWBK60161331926819"),
        ("pay to DE89-3704-0044-0532-0130-00 today", "DE89-3704-0044-0532-0130-00"),
        ("this is an iban VG96 VPVG 0000 0123 4567 8901 X in a sentence", "VG96 VPVG 0000 0123 4567 8901"),
        ("NO9386011117947", "NO9386011117947"),
    ],
)
def test_iban_positives(text, value):
    assert found(text) == [("IBAN_CODE", value)]


@pytest.mark.parametrize(
    "text",
    [
        "DE89 3704 0044 0532 0130 01",  # wrong check
        "DE89 3704 0044 0532 0130 0",  # too short
        "DE89 3704 0044 0532 0130 0000",  # runs on inside a group
        "de89 3704 0044 0532 0130 00",  # lower case
        "XX89 3704 0044 0532 0130 00",  # no such country
        "DE89 37040044 0532 0130 00",  # irregular grouping
        "GI75 aWBK 0000 0000 7099 453",
    ],
)
def test_iban_negatives(text):
    assert [t for t, _ in found(text) if t == "IBAN_CODE"] == []


def test_iban_validators():
    assert mod97_valid("GB82WEST12345698765432")
    assert iban_valid("GB82WEST12345698765432")
    assert not iban_valid("GB82WEST1234569876543")  # length
    assert not iban_valid("GB8212345612345698765432"[:22])  # GB needs 4 letters (bank code)


# ---------------------------------------------------------------------------------- secret


def _tok(prefix: str, body: str, n: int) -> str:
    return prefix + (body * n)[:n]


@pytest.mark.parametrize(
    "value",
    [
        _tok("AKIA", "ABCDEFGHIJ", 16),
        _tok("ghp_", "a1B2c3D4e5", 36),
        _tok("github_pat_", "11AbCdEf_", 82),
        _tok("xoxb-", "1234-AbCd", 40),
        _tok("AIza", "Sy0-_AbCd", 35),
        _tok("sk_live_", "4eC39HqLyj", 24),
        _tok("glpat-", "aB3-xY9_", 20),
    ],
)
def test_secret_tokens(value):
    text = f"export TOKEN={value}\n"
    assert found(text) == [("SECRET", value)]


def test_private_key_block_is_one_span():
    begin, end = "-----BEGIN RSA " + "PRIVATE KEY-----", "-----END RSA " + "PRIVATE KEY-----"
    block = f"{begin}\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n{end}"
    text = f"key:\n{block}\nthanks"
    assert found(text) == [("SECRET", block)]


@pytest.mark.parametrize(
    "text",
    [
        "ghp_short",
        _tok("AKIA", "ABCDEFGHIJ", 15),
        _tok("sk_test_", "4eC39HqLyj", 24),
        "-----BEGIN PUBLIC KEY-----",
        "the ASIA region",
    ],
)
def test_secret_negatives(text):
    assert found(text) == []


# ------------------------------------------------------------------- overlaps, selection, batch


def test_card_is_not_also_a_phone():
    assert found("4111 1111 1111 1111") == [("CREDIT_CARD", "4111 1111 1111 1111")]


def test_resolve_overlaps_longer_then_priority():
    spans = [("PHONE_NUMBER", 0, 10), ("CREDIT_CARD", 0, 19), ("US_SSN", 30, 41), ("PHONE_NUMBER", 30, 41)]
    assert resolve_overlaps(spans) == [("CREDIT_CARD", 0, 19), ("US_SSN", 30, 41)]
    assert resolve_overlaps(list(reversed(spans))) == resolve_overlaps(spans)


def test_spans_at_start_and_end_of_text():
    text = "8.8.8.8 and then ana@example.com"
    assert found(text) == [("IP_ADDRESS", "8.8.8.8"), ("EMAIL_ADDRESS", "ana@example.com")]


def test_type_selection():
    text = "ana@example.com 8.8.8.8 078-05-1123"
    assert [t for t, _ in found(text, PiiDetector(["EMAIL_ADDRESS"]))] == ["EMAIL_ADDRESS"]
    assert [t for t, _ in found(text, PiiDetector(["ip_address", "US_SSN"]))] == ["IP_ADDRESS", "US_SSN"]
    with pytest.raises(ValueError, match="NOPE"):
        PiiDetector(["NOPE"])


MIXED = [
    "",
    "no pii here at all, just words and 12 numbers 3.5",
    "line one 8.8.8.8\nline two (415) 555-0132\r\nthird: ana@example.com\u2028sep 078-05-1123",
    "multi\nIBAN\nDE89 3704 0044 0532 0130 00\nend",
    "version\n1.2.3.4",
    "tail number 4111 1111 1111 1111",
    "bad surrogate \ud800 then bob@example.com and 8.8.4.4",
    "Ünïcödé ✓ 2001:4860:4860::8888 — +44 20 7123 4567",
]


def test_batch_equals_per_document():
    assert ALL.detect_batch(MIXED) == [ALL.detect(t) for t in MIXED]
    batch = ALL.detect_batch(MIXED)
    assert ("EMAIL_ADDRESS" in {t for t, *_ in batch[6]}) and ("IP_ADDRESS" in {t for t, *_ in batch[6]})
    assert [t for t, *_ in batch[4]] == ["IP_ADDRESS"]  # the version word is on another line


def test_the_digit_table_is_unicode_category_nd_above_ascii():
    """The fast table (the regex engine's ``\\d``) equals the definition, code point by code point."""
    import sys
    import unicodedata

    from llama_audit.analyzers.pii.phone import _DIGIT_RANGES

    reference = []
    for cp in range(0x80, sys.maxunicode + 1):
        if unicodedata.category(chr(cp)) == "Nd":
            if reference and reference[-1][1] == cp - 1:
                reference[-1] = (reference[-1][0], cp)
            else:
                reference.append((cp, cp))
    assert _DIGIT_RANGES == reference


INVISIBLE = ["\u00ad", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]


@pytest.mark.parametrize("mark", INVISIBLE)
def test_invisible_characters_inside_pii_do_not_hide_it(mark):
    """A soft hyphen or a zero-width character inside an address (hyphenation, obfuscation, copy
    and paste) is invisible to the reader: the span is found, on the original text, and covers
    the invisible characters inside it; everything before and after keeps its offsets."""
    email = f"jo{mark}hn.doe@exam{mark}ple.com"
    text = f"Wr{mark}ite to {email} or call (212) 555{mark}-0199 today"
    spans = found(text)
    assert ("EMAIL_ADDRESS", email) in spans
    assert ("PHONE_NUMBER", f"(212) 555{mark}-0199") in spans
    assert found(f"{mark}{mark}x@example.org{mark}") == [("EMAIL_ADDRESS", "x@example.org")]


def test_invisible_characters_keep_the_batch_equal_to_one_by_one():
    texts = ["plain a@example.com", "soft\u00adhyphen b@exam\u00adple.com", "", "\u200b" * 3,
             "c@example.com\u200b and d\u200b@example.com", "no pii \u00ad here"]
    assert ALL.detect_batch(texts) == [ALL.detect(t) for t in texts]
    # the path of ids and metadata fields (many short strings) too
    assert ALL.detect_sparse(texts) == {i: ALL.detect(t) for i, t in enumerate(texts) if ALL.detect(t)}
    email = "jo\u00adhn@exam\u200bple.com"
    assert ALL.detect_sparse(["id-1", email]) == {1: [("EMAIL_ADDRESS", 0, len(email))]}
