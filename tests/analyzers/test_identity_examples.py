"""Review samples of identity descriptors (issue 10 item 3): scan --keep-examples K keeps, per
descriptor and language, K documents with a +-80 character window, PII masked; report --examples
shows them. Deterministic whatever the workers, the slicing or a resume."""

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from llama_audit.analyzers.identities.examples import CONTEXT_CHARS, find_occurrence, masked_context
from llama_audit.analyzers.pii.detector import PiiDetector
from llama_audit.cli import command
from llama_audit.job import ScanRequest, run_scan
from llama_audit.manifest import merge
from llama_audit.store import OutDir

EMAIL = "rosa.park.2231@example-mail.org"
PHONE = "+44 20 7946 0958"
SHARDS = 4


@pytest.fixture(scope="module")
def detector():
    return PiiDetector()


def test_occurrence_is_found_in_the_original_text():
    text = "Shop at ACE Hardware. The African-American museum; the ﬁrst Gay pride."
    a, b = find_occurrence(text, "african american")
    assert text[a:b] == "African-American"
    a, b = find_occurrence(text, "gay")
    assert text[a:b] == "Gay"
    assert find_occurrence(text, "ace") == (text.index("ACE"), text.index("ACE") + 3)
    assert find_occurrence("the space race", "ace") is None  # whole tokens only


def test_window_is_80_characters_each_side_with_pii_masked_inside(detector):
    text = "x" * 300 + f" mail {EMAIL} now, a gay couple, call {PHONE} today " + "y" * 300
    start, end = find_occurrence(text, "gay")
    context, a, b = masked_context(text, start, end, detector)
    assert context[a:b] == "gay"
    assert EMAIL not in context and "7946" not in context
    assert "[EMAIL_ADDRESS]" in context and "[PHONE_NUMBER]" in context
    assert context.startswith("\u2026") and context.endswith("\u2026")
    plain = text[start - CONTEXT_CHARS:end + CONTEXT_CHARS]
    assert context.replace("[EMAIL_ADDRESS]", EMAIL).replace("[PHONE_NUMBER]", PHONE) == "\u2026" + plain + "\u2026"


@pytest.mark.parametrize("gap", [CONTEXT_CHARS - 5, CONTEXT_CHARS - 12, CONTEXT_CHARS])
def test_pii_straddling_the_window_edge_is_masked_whole(detector, gap):
    # the email (and the phone) start inside the window and end outside it, or the reverse
    filler_after = "z" * (gap - 1)
    filler_before = "w" * (gap - len(PHONE) + 4)
    text = f"{PHONE} {filler_before} gay {filler_after} {EMAIL} end"
    start, end = find_occurrence(text, "gay")
    context, a, b = masked_context(text, start, end, detector)
    assert context[a:b] == "gay"
    for value in (EMAIL, PHONE):
        for piece in (value[:6], value[-6:], value[len(value) // 2 - 3: len(value) // 2 + 3]):
            assert piece not in context, (piece, context)


def test_a_masked_occurrence_points_at_its_mask(detector):
    text = "write to gay.rights.4410@example-mail.org for details"
    start, end = find_occurrence(text, "gay")
    context, a, b = masked_context(text, start, end, detector)
    assert context[a:b] == "[EMAIL_ADDRESS]" and "gay" not in context


def test_layout_characters_become_spaces(detector):
    text = "first line\nthe gay\tcouple\r\nlast"
    start, end = find_occurrence(text, "gay")
    context, a, b = masked_context(text, start, end, detector)
    assert context == "first line the gay couple  last" and context[a:b] == "gay"


# -- end to end ----------------------------------------------------------------------------------------

TEXTS = [
    "She is a gay woman from Ireland. Write to {email}.",
    "The Catholic church and the Jewish community met. Call {phone} today.",
    "ACE hardware sells a frying pan; he is bi and Muslim.",
    "An American man and a French woman, both queer, married.",
    "No descriptor here at all.",
]


def write_corpus(root):
    (root / "corpus").mkdir(parents=True)
    for s in range(SHARDS):
        lines = []
        for i in range(40):
            text = TEXTS[(s + i) % len(TEXTS)].format(email=f"u{s}x{i}.{EMAIL}", phone=PHONE)
            doc_id = f"{s}-{i}" if i % 7 else f"owner {EMAIL}"  # some ids hold PII
            lines.append(json.dumps({"id": doc_id, "text": text}))
        (root / "corpus" / f"part-{s}.jsonl").write_text("\n".join(lines) + "\n")
    return root / "corpus"


def request(corpus, out, k=3, **kw):
    options = {"identities": {"keep_examples": k}} if k else {}
    return ScanRequest(paths=[str(corpus)], out=str(out), analyzers=["identities"], languages=("all",),
                       options=options, **kw)


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    root = tmp_path_factory.mktemp("examples")
    corpus = write_corpus(root)
    run_scan(request(corpus, root / "one"))
    return root, corpus


def sample_files(out) -> dict[str, bytes]:
    files = {f"samples/{p.name}": p.read_bytes() for p in sorted((out / "samples").iterdir())}
    files["summary/samples.parquet"] = (out / "summary" / "samples.parquet").read_bytes()
    return files


def test_samples_are_kept_bottom_k_per_descriptor_and_written_before_the_done_marker(scanned):
    root, _ = scanned
    out = root / "one"
    table = pq.read_table(out / "summary" / "samples.parquet").to_pylist()
    groups = {}
    for row in table:
        groups.setdefault(row["group"], []).append(row)
    assert groups and all(len(rows) <= 3 for rows in groups.values())
    assert all(r["analyzer"] == "identities" for r in table)
    gay = json.loads(groups[json.dumps(["paper", "sexual_orientation", "gay", "und"])][0]["payload"])
    assert set(gay) == {"shard", "row", "id", "axis", "term", "language", "context", "match"}
    assert gay["context"][gay["match"][0]:gay["match"][1]].lower() == "gay"
    # the per-shard bottom-k merged is the bottom-k of all candidates: 3 smallest orders per group
    per_shard = [r for p in sorted((out / "samples").iterdir()) for r in pq.read_table(p).to_pylist()]
    for group, rows in groups.items():
        orders = sorted(r["order"] for r in per_shard if r["group"] == group)[:3]
        assert [r["order"] for r in rows] == orders
    for key in (p.stem for p in (out / "done").iterdir()):
        rec = OutDir(out).read_done(key)
        assert rec["review_samples"] == pq.read_metadata(out / "samples" / f"{key}.parquet").num_rows
    everything = json.dumps(table)
    assert EMAIL not in everything and "7946" not in everything
    ids = {json.loads(r["payload"])["id"] for r in table}
    assert None in ids and not any(i and "@" in i for i in ids)  # ids holding PII are withheld


def test_same_samples_whatever_workers_or_slices(scanned):
    root, corpus = scanned
    reference = sample_files(root / "one")
    run_scan(request(corpus, root / "two", workers=2))
    assert sample_files(root / "two") == reference
    for index in range(2):
        run_scan(request(corpus, root / "sliced", num_shards=2, shard_index=index))
    merge(str(root / "sliced"))
    assert sample_files(root / "sliced") == reference


def test_without_keep_examples_nothing_new_is_written(tmp_path):
    corpus = write_corpus(tmp_path)
    run_scan(request(corpus, tmp_path / "out", k=0))
    out = tmp_path / "out"
    assert not (out / "samples").exists() and not (out / "summary" / "samples.parquet").exists()
    config = json.loads((out / "config.json").read_text())["config"]
    assert "review_samples" not in config
    assert all("review_samples" not in OutDir(out).read_done(p.stem) for p in (out / "done").iterdir())


def test_a_missing_samples_file_makes_the_shard_undone(scanned, tmp_path):
    root, corpus = scanned
    out = tmp_path / "out"
    run_scan(request(corpus, out))
    victim = sorted((out / "samples").iterdir())[0]
    victim.unlink()
    res = run_scan(request(corpus, out))
    assert res.shards_run == 1
    assert sample_files(out) == sample_files(root / "one")


def test_resume_after_a_kill_while_writing_samples_keeps_them_exact(scanned, tmp_path):
    root, corpus = scanned
    out = tmp_path / "out"
    flag = tmp_path / "paused"
    env = {**os.environ, "LLAMA_AUDIT_TEST_PAUSE_AT": "write:samples@2", "LLAMA_AUDIT_TEST_PAUSE_FILE": str(flag)}
    proc = subprocess.Popen([sys.executable, "-m", "llama_audit.cli", "scan", str(corpus), "--out", str(out),
                             "--analyzers", "identities", "--languages", "all", "--keep-examples", "3"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while proc.poll() is None and not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert flag.exists(), proc.stderr.read().decode()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    done = list((out / "done").iterdir())
    assert len(done) == 1  # the second shard's samples were not in place: it is not done
    res = run_scan(request(corpus, out))
    assert res.shards_run == SHARDS - 1
    assert sample_files(out) == sample_files(root / "one")
    assert not [p for p in out.rglob("*.tmp")]


def test_report_shows_samples_in_every_format(scanned):
    root, _ = scanned
    out = str(root / "one")
    runner, app = CliRunner(), command()
    plain = json.loads(runner.invoke(app, ["report", out, "--format", "json"]).stdout)
    assert "examples" not in plain["identities"]  # off unless asked for
    res = runner.invoke(app, ["report", out, "--format", "json", "--examples"])
    assert res.exit_code == 0, res.output
    examples = json.loads(res.stdout)["identities"]["examples"]
    terms = {e["term"] for e in examples}
    assert {"gay", "catholic", "ace", "pan"} <= terms
    assert all(1 <= len(e["samples"]) <= 3 and e["language"] == "und" for e in examples)
    res = runner.invoke(app, ["report", out, "--format", "json", "--examples-terms", "Gay,ACE"])
    assert {e["term"] for e in json.loads(res.stdout)["identities"]["examples"]} == {"gay", "ace"}
    html = runner.invoke(app, ["report", out, "--format", "html", "--examples-terms", "gay"]).stdout
    assert "<details class='collapsible'><summary>Review samples: gay" in html and "[EMAIL_ADDRESS]" in html
    md = runner.invoke(app, ["report", out, "--format", "markdown", "--examples"]).stdout
    assert "Review samples: pan" in md and "frying pan" in md
    table = runner.invoke(app, ["report", out, "--examples-terms", "catholic"])
    assert table.exit_code == 0 and "Review samples: catholic" in table.stdout
    assert "[PHONE_NUMBER]" in table.stdout
    csv = runner.invoke(app, ["report", out, "--format", "csv", "--examples"])
    assert csv.exit_code == 0, csv.output
    for text in (html, md, table.stdout, csv.stdout):
        assert EMAIL not in text and "7946" not in text


def test_unknown_example_term_is_a_one_line_error(scanned):
    root, _ = scanned
    res = CliRunner().invoke(command(), ["report", str(root / "one"), "--examples-terms", "gayy"])
    assert res.exit_code == 2 and "gayy" in res.output and "Traceback" not in res.output


def test_keep_examples_out_of_range_is_refused_before_work(tmp_path):
    res = CliRunner().invoke(command(), ["scan", str(tmp_path), "--out", str(tmp_path / "o"), "--keep-examples", "-1"])
    assert res.exit_code == 2 and "--keep-examples" in res.output
    assert not (tmp_path / "o").exists()


def test_a_sense_mode_sample_shows_an_occurrence_sense_mode_counts():
    """Paper mode's sample shows the first occurrence; sense mode's the first it counts, so the
    reviewer of the sense-mode table reads what was counted ("pan people", not "frying pan")."""
    from llama_audit.analyzers.identities.examples import find_counted_occurrence
    from llama_audit.analyzers.identities.senses import SenseRules
    from llama_audit.lexicon import Lexicon, builtin_path

    matcher = SenseRules.load(builtin_path("identity_senses.tsv")).bind(Lexicon.load(builtin_path("identities.tsv")))
    text = "Heat a frying pan. " + "filler words here. " * 40 + "Pan people marched."
    assert find_occurrence(text, "pan") == (text.index("pan"), text.index("pan") + 3)
    a, b = find_counted_occurrence(text, "pan", matcher)
    assert text[a:b] == "Pan" and text[b:b + 7] == " people"
    assert find_counted_occurrence("Heat a frying pan.", "pan", matcher) is None


def test_an_occurrence_glued_to_a_word_at_a_piece_cut_is_no_occurrence():
    from llama_audit.analyzers.identities.examples import FIND_PIECE_CHARS

    text = "a" * (FIND_PIECE_CHARS - 2) + "ungay" + " filler" * 10 + " gay people"
    a, b = find_occurrence(text, "gay")
    assert text[a - 1: b + 7] == " gay people"


def test_a_combining_mark_makes_another_word_as_for_the_tokenizer():
    text = "gay\u0301 word then gay men"
    a, b = find_occurrence(text, "gay")
    assert (a, b) == (text.rindex("gay"), text.rindex("gay") + 3)


def test_a_combining_mark_right_at_a_piece_cut_is_read_with_its_base():
    from llama_audit.analyzers.identities.examples import FIND_PIECE_CHARS

    text = "é" * (FIND_PIECE_CHARS - 1) + "e\u0301" + " gay men"
    a, b = find_occurrence(text, "gay")
    assert text[a:b] == "gay"
