#!/usr/bin/env python3
"""Peak memory of one huge single-line document: a JSON-lines shard holding one document of
``--mb`` MB of text (default 200), and the same text as a ``.txt`` file.

Each row is a fresh child process (a scan into a temporary OUT, or ``estimate``) that prints its
own peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) as it ends, so rows do not share
memory: each analyzer alone, all CPU analyzers (language, pronouns, identities, pii), the
``.txt`` file, and ``estimate``. The text is the bundled example documents repeated, joined by
newlines (escaped in the JSON line), so it is ordinary English web text on one line.

    python bench/huge_document.py --rss [--mb 200] [--only all,txt]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, example_docs  # noqa: E402

CPU_ANALYZERS = ["language", "pronouns", "identities", "pii"]


def build_huge(mb: float) -> tuple[Path, Path]:
    """(a .jsonl with one document of about ``mb`` MB, a .txt with the same text); cached."""
    folder = DATA / f"huge_{mb:g}mb"
    jsonl, txt = folder / "jsonl" / "huge.jsonl", folder / "txt" / "huge.txt"
    if (folder / ".done").is_file():
        return jsonl, txt
    jsonl.parent.mkdir(parents=True, exist_ok=True)
    txt.parent.mkdir(parents=True, exist_ok=True)
    texts = [d["text"] for d in example_docs()]
    one_round = "\n".join(texts)
    rounds = max(1, round(mb * 1e6 / len(one_round.encode())))
    with open(txt, "w", encoding="utf-8") as f:
        for r in range(rounds):
            f.write(one_round if r == 0 else "\n" + one_round)
    with open(jsonl, "w", encoding="utf-8") as f:
        f.write('{"id": "huge", "text": "')
        for r in range(rounds):
            piece = json.dumps(one_round if r == 0 else "\n" + one_round, ensure_ascii=False)[1:-1]
            f.write(piece)
        f.write('"}\n')
    (folder / ".done").write_text("ok")
    return jsonl, txt


def child_peak(code: str) -> tuple[float, float, str]:
    """(seconds, peak RSS in MiB, stdout) of ``python -c code`` in a fresh process."""
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    secs = time.perf_counter() - t
    if res.returncode != 0:
        raise RuntimeError(f"child failed (rc {res.returncode}): {res.stderr.strip().splitlines()[-1:]}")
    # RUSAGE_CHILDREN's ru_maxrss is the largest child so far (a smaller row would read an
    # earlier one's peak), so each child prints its own peak (RUSAGE_SELF, KiB) as its last line
    return secs, int(res.stdout.split()[-1]) / 1024, res.stdout


def scan_code(path: Path, analyzers: list[str]) -> str:
    return ("import resource, tempfile\n"
            "from llama_audit.job import ScanRequest, run_scan\n"
            "with tempfile.TemporaryDirectory() as out:\n"
            f"    r = run_scan(ScanRequest(paths=[{str(path)!r}], out=out, analyzers={analyzers!r}))\n"
            "    assert not r.failed, r.failed\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")


def estimate_code(path: Path) -> str:
    return ("import resource\n"
            "from llama_audit.estimate import estimate\n"
            f"estimate([{str(path)!r}], analyzers={CPU_ANALYZERS!r})\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=200, help="size of the one document, MB of text")
    ap.add_argument("--rss", action="store_true", help="measure peak RSS per row (the only mode)")
    ap.add_argument("--only", default="", help="comma-separated rows: language,pronouns,identities,pii,all,txt,estimate")
    args = ap.parse_args()
    if not args.rss:
        ap.error("give --rss (peak RSS of child processes is what this benchmark measures)")
    jsonl, txt = build_huge(args.mb)
    rows = [(a, lambda a=a: scan_code(jsonl, [a])) for a in CPU_ANALYZERS]
    rows += [("all", lambda: scan_code(jsonl, CPU_ANALYZERS)), ("txt", lambda: scan_code(txt, CPU_ANALYZERS)),
             ("estimate", lambda: estimate_code(jsonl))]
    labels = {"all": "scan, all CPU analyzers (.jsonl)", "txt": "scan, all CPU analyzers (.txt)",
              "estimate": "estimate, all CPU analyzers (.jsonl)"}
    wanted = set(filter(None, args.only.split(",")))
    print(f"one document of {jsonl.stat().st_size / 1e6:.0f} MB on one line; peak RSS of a fresh process per row")
    print(f"{'row':40s} {'peak RSS MiB':>12s} {'seconds':>8s}")
    for name, code in rows:
        if wanted and name not in wanted:
            continue
        label = labels.get(name, f"scan, {name} alone (.jsonl)")
        try:
            secs, mib, _ = child_peak(code())
        except RuntimeError as exc:
            print(f"{label:40s} {'failed':>12s}  {exc}")
            continue
        print(f"{label:40s} {mib:12,.0f} {secs:8.1f}", flush=True)


if __name__ == "__main__":
    main()
