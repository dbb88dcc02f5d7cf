"""`export dolma` / `scan --attributes-out`: dolma attribute files, checked with a re-implementation
of dolma's mixer join (allenai/dolma ``src/shard.rs``, ``Shard::process``; ``src/filters.rs``;
``src/io.rs``, ``MultiStream::infer_compression``), since the ``dolma`` package cannot be
installed beside ours (it pins numpy < 2).

What the re-implementation does, as the Rust mixer does:
- the attribute file of a document file is its path with ``/documents/`` replaced by
  ``/attributes/<name>/`` (same file name); a missing file gives no attributes, silently;
- compression of each file is inferred from its own name (the last extension: ``gz``, ``zst``,
  anything else plain);
- documents and attribute files are read line by line in lockstep; every attribute line's ``id``
  must equal the document's ``id`` (JSON value equality) and carry an ``attributes`` object; the
  attribute objects are merged into the document's ``attributes``;
- the filter (``syntax: jq``) keeps a document when an include expression yields a truthy value
  (or there is none) and no exclude expression does;
- ``span_replacement``: ``[start, end, score]`` spans with ``min_score <= score < max_score``
  are replaced in ``text``, walking its Unicode scalar values (Rust ``char_indices``), sorted by
  start; ``{}`` in the replacement stands for the replaced text.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from llama_audit.cli import command

runner = CliRunner()
DOCS = Path(__file__).resolve().parents[2] / "docs"

EN1 = ("Grüße aus Zürich 😀 — she wrote to bob.smith@example.com about the budget meeting that the "
       "committee holds next Tuesday in the town hall, and she asked for the minutes of the last one.")
EN2 = ("The committee met on Tuesday to discuss the budget for next year and the new school; he said "
       "the plan was good and that the Christian charity would help the children of the village.")
FR = "Le comité s'est réuni mardi pour discuter du budget de l'année prochaine et de la nouvelle école."
EN3 = ("Write to alice@example.org or to 𝒶𝓁𝒾𝒸𝑒 at carol@example.net if you want to join the reading group "
       "that meets every Thursday evening at the public library near the station.")
EMAILS = ("bob.smith@example.com", "alice@example.org", "carol@example.net")
ANALYZERS = "language,pii,pronouns,identities"


def invoke(*args):
    return runner.invoke(command(), [str(a) for a in args])


# -- a faithful re-implementation of dolma's mixer join -------------------------------------------

def dolma_compression(name: str) -> str:
    """MultiStream::infer_compression: the text after the file name's first dot, then its last part."""
    ext = name.split(".", 1)[1] if "." in name else ""
    return ext.rsplit(".", 1)[1] if "." in ext else ext


def dolma_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    kind = dolma_compression(path.name)
    if kind == "gz":
        data = gzip.decompress(data)
    elif kind == "zst":
        import zstandard

        data = zstandard.ZstdDecompressor().stream_reader(data).read()
    lines = data.decode("utf-8").split("\n")  # BufRead::lines: "\n" or "\r\n" ends a line
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def json_equal(a, b) -> bool:
    """serde_json Value equality (no True == 1, no 1 == 1.0)."""
    return type(a) is type(b) and a == b


class JqSubset:
    """The jq expressions a dolma filter uses on attributes, with jq's semantics: paths
    (``.a.b``, ``[i]``, negative indices), ``|``, ``length``, ``not``, comparisons (jq's total
    order: null < false < true < numbers < strings < arrays < objects), ``and``, ``or``,
    parentheses, literals. Missing keys and indices give null, as in jq."""

    TOKEN = re.compile(r"\s*(?:(\d+\.\d+|\d+)|(\"(?:[^\"\\]|\\.)*\")|(==|!=|<=|>=|<|>)|([A-Za-z_][A-Za-z0-9_]*)|(.))")

    def __init__(self, text: str):
        self.tokens = [m for m in self.TOKEN.finditer(text) if m.group(0).strip()]
        self.i = 0
        self.tree = self._pipe()
        assert self.i == len(self.tokens), f"unparsed jq: {text!r}"

    def _peek(self):
        return self.tokens[self.i].group(0).strip() if self.i < len(self.tokens) else None

    def _take(self):
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def _pipe(self):
        left = self._or()
        while self._peek() == "|":
            self._take()
            left = ("pipe", left, self._or())
        return left

    def _or(self):
        left = self._and()
        while self._peek() == "or":
            self._take()
            left = ("or", left, self._and())
        return left

    def _and(self):
        left = self._cmp()
        while self._peek() == "and":
            self._take()
            left = ("and", left, self._cmp())
        return left

    def _cmp(self):
        left = self._postfix()
        if self._peek() in ("==", "!=", "<", "<=", ">", ">="):
            return ("cmp", self._take().group(0).strip(), left, self._postfix())
        return left

    def _postfix(self):
        node = self._primary()
        while self._peek() in (".", "["):
            if self._take().group(0).strip() == ".":
                node = ("key", node, self._take().group(0).strip())
            else:
                sign = -1 if self._peek() == "-" and self._take() else 1
                node = ("index", node, sign * int(self._take().group(0)))
                assert self._take().group(0).strip() == "]"
        return node

    def _primary(self):
        tok = self._take()
        text = tok.group(0).strip()
        if text == ".":
            if self.i < len(self.tokens) and self.tokens[self.i].group(4) and self.tokens[self.i].start() == tok.end():
                return ("key", ("identity",), self._take().group(0).strip())
            return ("identity",)
        if text == "(":
            inner = self._pipe()
            assert self._take().group(0).strip() == ")"
            return inner
        if tok.group(1):
            return ("lit", float(text) if "." in text else int(text))
        if tok.group(2):
            return ("lit", json.loads(text))
        if text in ("null", "true", "false"):
            return ("lit", {"null": None, "true": True, "false": False}[text])
        if text in ("length", "not"):
            return (text,)
        raise AssertionError(f"jq token {text!r} not in the subset")

    @staticmethod
    def _rank(v):
        for r, t in enumerate((type(None), bool, (int, float), str, list, dict)):
            if isinstance(v, t) and not (r == 2 and isinstance(v, bool)):
                return r, (v if r in (1, 2, 3) else 0)
        raise TypeError(v)

    def run(self, value, node=None):
        node = self.tree if node is None else node
        op = node[0]
        if op == "identity":
            return value
        if op == "lit":
            return node[1]
        if op == "key":
            base = self.run(value, node[1])
            if base is None:
                return None
            if not isinstance(base, dict):
                raise ValueError(f"cannot index {type(base).__name__} with {node[2]!r}")
            return base.get(node[2])
        if op == "index":
            base = self.run(value, node[1])
            if base is None:
                return None
            if not isinstance(base, list):
                raise ValueError(f"cannot index {type(base).__name__} with a number")
            k = node[2]
            return base[k] if -len(base) <= k < len(base) else None
        if op == "pipe":
            return self.run(self.run(value, node[1]), node[2])
        if op == "length":
            if value is None:
                return 0
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return abs(value)
            return len(value)
        if op == "not":
            return not truthy(value)
        if op in ("and", "or"):
            left = truthy(self.run(value, node[1]))
            if op == "and":
                return left and truthy(self.run(value, node[2]))
            return left or truthy(self.run(value, node[2]))
        if op == "cmp":
            a, b = self._rank(self.run(value, node[2])), self._rank(self.run(value, node[3]))
            return {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[node[1]]
        raise AssertionError(op)


def truthy(v) -> bool:
    """JqDocFilter::evaluate_match."""
    if v is None or v is False:
        return False
    if isinstance(v, bool):
        return True
    if isinstance(v, (int, float)):
        return v != 0
    if isinstance(v, (str, list, dict)):
        return len(v) > 0
    return True


def should_keep(data: dict, include: list[str], exclude: list[str]) -> bool:
    """JqDocFilter::should_keep (each expression yields one value here)."""
    keep = not include
    for expr in include:
        if keep:
            break
        keep = truthy(JqSubset(expr).run(data))
    for expr in exclude:
        if not keep:
            break
        keep = not truthy(JqSubset(expr).run(data))
    return keep


def replace_spans(text: str, replacements: list[tuple[int, int, str]]) -> str:
    """The span replacement loop of Shard::process, over Unicode scalar values (Python str
    indices are the same units); ``start``/``end`` index characters, not bytes."""
    replacements = sorted(replacements, key=lambda r: r[0])  # Rust sort_by is stable
    new, span_index, span_start = [], 0, 0
    for i, c in enumerate(text):
        if span_index < len(replacements):
            start, end, repl = replacements[span_index]
            inside = start <= i < end
            if i == start:
                span_start = i
            if not inside:
                if i == end:
                    if repl:
                        new.append(repl.replace("{}", text[span_start:i]))
                    while span_index < len(replacements) and replacements[span_index][0] < i:
                        span_index += 1
                if span_index < len(replacements) and replacements[span_index][0] == i:
                    span_start = i
                else:
                    new.append(c)
        else:
            new.append(c)
    if span_index < len(replacements) and replacements[span_index][2]:
        new.append(replacements[span_index][2].replace("{}", text[span_start:]))
    return "".join(new)


class IdMismatch(Exception):
    pass


def dolma_mix(doc_path: Path, attribute_names: list[str], stream: dict) -> list[dict]:
    """Shard::process for one document file: the documents written to the output, in order."""
    attr_paths = [Path(str(doc_path).replace("/documents/", f"/attributes/{n}/")) for n in attribute_names]
    readers = [iter(dolma_lines(p)) for p in attr_paths if p.exists()]  # no file: no reader, no error
    flt = stream.get("filter") or {}
    assert flt.get("syntax", "jq") == "jq"
    written = []
    for line_number, line in enumerate(dolma_lines(doc_path), 1):
        data = json.loads(line)
        attrs: dict = {}
        for reader in readers:
            attr_line = next(reader, None)
            if attr_line is None:  # "Missing attributes ... at line": that reader gives nothing more
                break
            attr = json.loads(attr_line)
            if not json_equal(attr.get("id"), data.get("id")):
                raise IdMismatch(f"Mismatched ids for line {line_number} of {doc_path}: "
                                 f"{attr.get('id')!r} != {data.get('id')!r}")
            assert isinstance(attr.get("attributes"), dict), f"Missing attributes for line {line_number}"
            attrs.update(attr["attributes"])
        if readers:
            if isinstance(data.get("attributes"), dict):
                data["attributes"].update(attrs)
            else:
                data["attributes"] = attrs
        if not should_keep(data, flt.get("include", []), flt.get("exclude", [])):
            continue
        replacements = []
        for cfg in stream.get("span_replacement", []):
            assert cfg.get("syntax") == "jq"
            spans = JqSubset(cfg["span"]).run(data)
            if spans is None:
                continue
            lo, hi = cfg.get("min_score", float("-inf")), cfg.get("max_score", float("inf"))
            replacements += [(int(s[0]), int(s[1]), cfg["replacement"]) for s in spans if lo <= s[2] < hi]
        if replacements:
            if not isinstance(data["text"], str):  # as_str().unwrap(): the mixer panics
                raise TypeError(f"line {line_number}: text is not a string")
            data["text"] = replace_spans(data["text"], replacements)
        if not isinstance(data.get("text"), str):  # curr_text_length: as_str().unwrap()
            raise TypeError(f"line {line_number}: text is not a string")
        data.setdefault("metadata", {})
        data["metadata"]["provenance"] = f"{doc_path.name}:{line_number}"
        written.append(data)
    return written


def test_reference_replacement_matches_dolma_semantics():
    """The transcription of the Rust loop: adjacent and overlapping spans, a span at the end, {}."""
    assert replace_spans("abcdef", [(1, 3, "<X>")]) == "a<X>def"
    assert replace_spans("abcdef", [(4, 6, "[{}]")]) == "abcd[ef]"
    assert replace_spans("aé😀bc", [(1, 3, "_")]) == "a_bc"
    assert JqSubset(".attributes.x[0][2] >= 0.5").run({"attributes": {"x": [[0, 3, 0.7]]}}) is True
    assert JqSubset(".attributes.y[0][2] >= 0.5").run({"attributes": {}}) is False  # null < numbers
    assert JqSubset("(.attributes.x | length) > 0").run({"attributes": {"x": [[0, 1, 1.0]]}}) is True
    assert JqSubset(".attributes.x != null").run({"attributes": {}}) is False


# -- the corpus ------------------------------------------------------------------------------------

def write_jsonl(path: Path, lines: list, gz: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join((x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)) + "\n" for x in lines).encode()
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)


@pytest.fixture
def corpus(tmp_path):
    docs = tmp_path / "data" / "documents"
    write_jsonl(docs / "web" / "part-0.jsonl.gz", [
        {"id": "d1", "text": EN1, "source": "web"},
        {"id": "d2", "text": EN2, "source": "web"},
        {"id": "bad-1", "text": 42, "source": "web"},  # non_string_text: a bad record of the scan
        {"id": "d3", "text": FR, "source": "web"},
    ], gz=True)
    write_jsonl(docs / "web" / "part-1.jsonl", [
        {"id": "d4", "text": EN3, "source": "web"},
        {"id": "bad-2", "body": "no text here", "source": "web"},  # missing_text
        {"id": "d5", "text": EN2, "source": "web"},
    ])
    return tmp_path


def scan(corpus, *extra):
    out = corpus / "out"
    res = invoke("scan", corpus / "data" / "documents", "--out", out, "--analyzers", ANALYZERS,
                 "--languages", "all", "--quiet", *extra)
    assert res.exit_code == 0, res.output
    return out


def read_attribute_lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in dolma_lines(path)]


def test_export_is_line_aligned_and_joins_in_dolmas_mixer(corpus):
    out = scan(corpus)
    attrs = corpus / "data" / "attributes" / "llama_audit"
    res = invoke("export", "dolma", out, "--to", attrs)
    assert res.exit_code == 0, res.output
    # the mixer's own path rule finds them: same relative path and file name as the documents
    files = sorted(p.relative_to(attrs).as_posix() for p in attrs.rglob("*") if p.is_file())
    assert [f for f in files if not f.startswith("_llama_audit/")] == ["web/part-0.jsonl.gz", "web/part-1.jsonl"]
    assert (attrs / "web" / "part-0.jsonl.gz").read_bytes()[:2] == b"\x1f\x8b"  # gzip, as its name says
    assert (attrs / "web" / "part-1.jsonl").read_bytes()[:1] == b"{"  # plain, as its name says

    rows = read_attribute_lines(attrs / "web" / "part-0.jsonl.gz")
    assert [r["id"] for r in rows] == ["d1", "d2", "bad-1", "d3"]  # one line per record, bad ones included
    assert rows[2]["attributes"] == {"llama_audit__scan__bad_record": [[0, 0, 1.0]]}
    d1 = rows[0]["attributes"]
    assert d1["llama_audit__language__en"][0][:2] == [0, len(EN1)]
    assert 0.5 <= d1["llama_audit__language__en"][0][2] <= 1.0
    assert d1["llama_audit__pronouns__she"] == [[0, len(EN1), 1.0]]
    # the span indexes code points (the text holds ü, ß, an emoji outside the BMP and an em dash)
    (start, end, score), = d1["llama_audit__pii__EMAIL_ADDRESS"]
    assert EN1[start:end] == "bob.smith@example.com" and score == 1.0
    assert d1["llama_audit__pii__doc_count"] == [[0, len(EN1), 1.0]]
    assert "llama_audit__language__fr" in rows[3]["attributes"]
    assert rows[1]["attributes"]["llama_audit__identities__religion"] == [[0, len(EN2), 1.0]]
    rows1 = read_attribute_lines(attrs / "web" / "part-1.jsonl")
    assert [r["id"] for r in rows1] == ["d4", "bad-2", "d5"]
    spans = rows1[0]["attributes"]["llama_audit__pii__EMAIL_ADDRESS"]
    assert [EN3[s:e] for s, e, _ in spans] == ["alice@example.org", "carol@example.net"]

    # the join: every id matches, line for line, in both files
    for doc in sorted((corpus / "data" / "documents").rglob("*.jsonl*")):
        mixed = dolma_mix(doc, ["llama_audit"], {"filter": {"syntax": "jq", "include": [],
                                                            "exclude": [".attributes.llama_audit__scan__bad_record"]}})
        assert all("attributes" in d for d in mixed)
    # no personal data in any output: spans only
    for p in attrs.rglob("*"):
        if p.is_file():
            blob = gzip.decompress(p.read_bytes()) if p.read_bytes()[:2] == b"\x1f\x8b" else p.read_bytes()
            assert not any(e.encode() in blob for e in EMAILS), p


def _recipe() -> dict:
    """The `dolma mix` configuration of docs/scaling.md's "Hand-off to dolma" recipe."""
    text = (DOCS / "scaling.md").read_text()
    section = text.split("## Hand-off to dolma", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    return yaml.safe_load(block)


def test_docs_recipe_filters_and_redacts_like_our_filter(corpus):
    """The recipe's filter and span_replacement, run by the reference mixer on our attribute
    files, keep the same documents and produce the same texts as `llama-audit filter` with the
    equivalent rules (the recipe says which)."""
    out = scan(corpus, "--attributes-out", corpus / "data" / "attributes" / "llama_audit")
    recipe = _recipe()
    stream = recipe["streams"][0]
    assert stream["attributes"] == ["llama_audit"]
    clean = corpus / "clean"
    # the recipe's toxicity rule has nothing to act on here (no toxicity model in tests)
    res = invoke("filter", out, "--out", clean, "--drop", "lang != 'en'",
                 "--redact", "pii:EMAIL_ADDRESS,PHONE_NUMBER,IP_ADDRESS")
    assert res.exit_code == 0, res.output
    for doc in sorted((corpus / "data" / "documents").rglob("*.jsonl*")):
        rel = doc.relative_to(corpus / "data" / "documents")
        mixed = dolma_mix(doc, stream["attributes"], stream)
        ours = dolma_lines(clean / rel)
        ours = [json.loads(x) for x in ours]
        assert [(d["id"], d["text"]) for d in mixed] == [(d["id"], d["text"]) for d in ours], rel
    texts = [d["text"] for doc in (corpus / "data" / "documents").rglob("*.jsonl*")
             for d in dolma_mix(doc, stream["attributes"], stream)]
    assert texts and not any(e in t for t in texts for e in EMAILS)
    assert any("Grüße aus Zürich 😀 — she wrote to <EMAIL_ADDRESS> about" in t for t in texts)


def test_scan_attributes_out_equals_export_bytes_and_export_resumes(corpus):
    a = corpus / "data" / "attributes" / "llama_audit"
    out = scan(corpus, "--attributes-out", a)
    b = corpus / "b"
    assert invoke("export", "dolma", out, "--to", b).exit_code == 0
    for rel in ("web/part-0.jsonl.gz", "web/part-1.jsonl"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()  # deterministic (gzip mtime 0)
    before = {p: p.stat().st_mtime_ns for p in b.rglob("*") if p.is_file()}
    res = invoke("export", "dolma", out, "--to", b)
    assert res.exit_code == 0 and "2 resumed" in res.output
    assert {p: p.stat().st_mtime_ns for p in b.rglob("*") if p.is_file()} == before
    # another --name renames every attribute: the files are rewritten
    res = invoke("export", "dolma", out, "--to", b, "--name", "audit_v2")
    assert res.exit_code == 0 and "2 written" in res.output
    keys = read_attribute_lines(b / "web" / "part-0.jsonl.gz")[0]["attributes"]
    assert keys and all(k.startswith("audit_v2__") for k in keys)


def test_non_jsonl_shards_are_named_as_dolma_jsonl(tmp_path):
    docs = tmp_path / "documents"
    docs.mkdir()
    pq.write_table(pa.table({"id": ["p1", "p2"], "text": [EN2, FR]}), docs / "books.parquet")
    out = tmp_path / "out"
    assert invoke("scan", docs, "--out", out, "--analyzers", "language", "--languages", "all", "-q").exit_code == 0
    dest = tmp_path / "attrs"
    assert invoke("export", "dolma", out, "--to", dest).exit_code == 0
    rows = [json.loads(x) for x in gzip.decompress((dest / "books.jsonl.gz").read_bytes()).splitlines()]
    assert [r["id"] for r in rows] == ["p1", "p2"]


def test_toxicity_hook_gives_document_level_scores():
    from llama_audit.analyzers.toxicity.analyzer import ToxicityAnalyzer

    columns = {"chars": pa.array([10, 4]), "toxicity_mean": pa.array([0.75, None], pa.float32()),
               "toxicity_max": pa.array([0.9, None], pa.float32()),
               "toxicity_frac_ge_0_5": pa.array([0.5, None], pa.float32()),
               "toxicity_lines": pa.array([2, None], pa.int32())}
    rows = ToxicityAnalyzer.dolma_attributes(columns)
    assert rows[0] == {"mean": [[0, 10, 0.75]], "max": [[0, 10, float(pa.scalar(0.9, pa.float32()).as_py())]],
                       "frac_ge_0_5": [[0, 10, 0.5]], "lines": [[0, 10, 2.0]]}
    assert rows[1] == {}  # not scored: no attribute, so `.attributes.X[0][2] >= t` is false


@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.1])
def test_toxicity_threshold_decides_in_dolma_as_in_filter(threshold):
    """Scores are exported as the float32 value exactly, so a jq threshold in `dolma mix` keeps the
    same documents as `filter --drop "toxicity_mean >= T"`, also for values one float32 step away."""
    import numpy as np

    from llama_audit.analyzers.toxicity.analyzer import ToxicityAnalyzer
    from llama_audit.filter.expr import Predicate

    t32 = np.float32(threshold)
    values = [np.nextafter(t32, np.float32(0)), t32, np.nextafter(t32, np.float32(1)), np.float32(threshold / 3)]
    table = pa.table({"chars": pa.array([5] * len(values)), "toxicity_mean": pa.array(values, pa.float32()),
                      "toxicity_max": pa.array(values, pa.float32()),
                      "toxicity_frac_ge_0_5": pa.array(values, pa.float32()),
                      "toxicity_lines": pa.array([1] * len(values), pa.int32())})
    ours = Predicate(f"toxicity_mean >= {threshold}", table.schema)(table).to_pylist()
    rows = ToxicityAnalyzer.dolma_attributes({c: table[c].combine_chunks() for c in table.column_names})
    docs = [{"attributes": {f"llama_audit__toxicity__{k}": v for k, v in row.items()}}
            for row in json.loads(json.dumps(rows))]  # through JSON text, as dolma reads it
    theirs = [JqSubset(f".attributes.llama_audit__toxicity__mean[0][2] >= {threshold}").run(d) for d in docs]
    assert theirs == ours and any(ours) and not all(ours)


@pytest.mark.parametrize("case", ["missing_out", "not_a_scan", "inside_out", "bad_name", "over_input"])
def test_mistakes_are_one_line_errors(corpus, case):
    out = scan(corpus) if case not in ("missing_out", "not_a_scan") else corpus / "nowhere"
    dest = corpus / "attrs"
    args = ["export", "dolma", out, "--to", dest]
    if case == "not_a_scan":
        out.mkdir()
    elif case == "inside_out":
        args[-1] = out / "attrs"
    elif case == "bad_name":
        args += ["--name", "9 lives"]
    elif case == "over_input":
        args[-1] = corpus / "data" / "documents"  # same names as the documents: would overwrite them
    res = invoke(*args)
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error:") and len(res.output.strip().splitlines()) == 1, res.output
    assert "Traceback" not in res.output
    if case == "over_input":
        assert json.loads(gzip.decompress((corpus / "data" / "documents" / "web" / "part-0.jsonl.gz")
                                          .read_bytes()).splitlines()[0])["id"] == "d1"


def test_scan_attributes_out_inside_out_is_refused_before_work(corpus):
    out = corpus / "out"
    res = invoke("scan", corpus / "data" / "documents", "--out", out, "--analyzers", "language", "-q",
                 "--attributes-out", out / "attrs")
    assert res.exit_code == 2 and "error:" in res.output
    assert not (out / "annotations").exists()


def test_zstd_shard_gets_a_zstd_file_of_the_same_name(tmp_path):
    import zstandard

    docs = tmp_path / "data" / "documents"
    docs.mkdir(parents=True)
    lines = "".join(json.dumps({"id": f"z{i}", "text": t}) + "\n" for i, t in enumerate([EN1, EN2]))
    (docs / "z.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(lines.encode()))
    out = tmp_path / "out"
    assert invoke("scan", docs, "--out", out, "--analyzers", "pii", "-q").exit_code == 0
    attrs = tmp_path / "data" / "attributes" / "llama_audit"
    assert invoke("export", "dolma", out, "--to", attrs).exit_code == 0
    assert (attrs / "z.jsonl.zst").read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    mixed = dolma_mix(docs / "z.jsonl.zst", ["llama_audit"], {"filter": {"syntax": "jq", "include": [], "exclude": []}})
    assert [d["id"] for d in mixed] == ["z0", "z1"]
    assert "llama_audit__pii__EMAIL_ADDRESS" in mixed[0]["attributes"]


def test_changed_input_refuses_only_the_shard_whose_bad_records_it_needs(corpus):
    out = scan(corpus)
    part0 = corpus / "data" / "documents" / "web" / "part-0.jsonl.gz"
    part0.write_bytes(part0.read_bytes() + gzip.compress(b'{"id": "new", "text": "x"}\n', mtime=0))
    dest = corpus / "attrs"
    res = invoke("export", "dolma", out, "--to", dest)
    assert res.exit_code == 1 and "refusing shard web/part-0.jsonl.gz" in res.output, res.output
    assert not (dest / "web" / "part-0.jsonl.gz").exists()
    assert [r["id"] for r in read_attribute_lines(dest / "web" / "part-1.jsonl")] == ["d4", "bad-2", "d5"]


@pytest.mark.parametrize("where", ["to", "out", "scan_out", "scan_attributes_out"])
def test_remote_locations_are_refused_before_work_not_written_as_local_folders(corpus, tmp_path, monkeypatch,
                                                                               where):
    """DIR and OUT are local folders here: an s3:// DIR must not become a local folder named 's3:'
    (written, then reported as written to the bucket), nor a scan into a bucket OUT end in an
    export error after all its work."""
    monkeypatch.chdir(tmp_path)
    docs = corpus / "data" / "documents"
    if where in ("to", "out"):
        out = scan(corpus)
        args = ["export", "dolma", "s3://bucket/out" if where == "out" else out,
                "--to", "s3://bucket/attributes" if where == "to" else tmp_path / "attrs"]
    else:
        args = ["scan", docs, "--analyzers", "language", "-q",
                "--out", "s3://bucket/out" if where == "scan_out" else tmp_path / "out",
                "--attributes-out", "s3://bucket/attributes" if where == "scan_attributes_out" else tmp_path / "attrs"]
    res = invoke(*args)
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error:") and len(res.output.strip().splitlines()) == 1, res.output
    assert "local" in res.output
    assert not (tmp_path / "s3:").exists() and not (tmp_path / "attrs").exists()
    if where.startswith("scan"):
        assert not (tmp_path / "out").exists()
