#!/usr/bin/env python
"""FastLid (numpy re-implementation of fastText predict) against the fastText binding.

    python bench/fastlid_agreement.py [LID_DEV.jsonl] [--model PATH] [--trials 5]

Datasets: the bundled web samples (``examples/web_samples/*.jsonl.gz``, field ``text``, newlines
replaced by spaces as the language analyzer does, empty documents skipped) and, when its path is
given as LID_DEV.jsonl, labelled sentences: one JSON object per line with the sentence in
``text`` and its gold ISO 639-1 code in ``lang`` (other fields are ignored).

The labelled sentences we measure with are not in the repository (6 MB): the first 300 lines of
each of the 75 files ``language-testdata/sentences/<iso>.txt`` of lingua-py
(https://github.com/pemistahl/lingua-py, commit 754ce21122c0, Apache-2.0; sentences from the
Wortschatz corpora of Leipzig University), stripped of surrounding whitespace: 22,500 sentences,
``lang`` = the file's name. From a checkout of that commit::

    python -c "import json, pathlib, sys; [print(json.dumps({'text': t.strip(), 'lang': p.stem}, ensure_ascii=False))
        for p in sorted(pathlib.Path(sys.argv[1]).glob('*.txt'))
        for t in p.read_text(encoding='utf-8').splitlines()[:300]]" \\
        lingua-py/language-testdata/sentences > lid_dev_sentences.jsonl

For each: top-1 label agreement, max / mean |probability difference|, accuracy against the gold
``lang`` for both (top-1, and with the analyzer's 0.5 threshold), and MB/s of both on one core
(``os.sched_setaffinity(0, {0})``): the binding's ``predict(lines, k=1, threshold=0.0)``, FastLid
with a cold cache (a fresh instance) and warm (the same texts again). MB are 10^6 bytes of UTF-8
text. Each figure is the best of ``--trials`` runs, timed in CPU seconds of this process (the
machine may be shared); wall-clock figures are printed beside them, and the cold figure of the
first trial alone (the process's first multi-MB numpy temporaries cost page faults until the
allocator has grown). Disagreements are listed with the binding's two best probabilities.
Nothing here asserts.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import fasttext  # noqa: E402

from llama_audit.analyzers.fastlid import FastLid  # noqa: E402
from llama_audit.analyzers.language import embedded_model_path  # noqa: E402

THRESHOLD = 0.5


def web_samples() -> tuple[list[str], None]:
    texts = []
    for p in sorted((ROOT / "examples" / "web_samples").glob("*.jsonl.gz")):
        with gzip.open(p, "rt", encoding="utf-8") as f:
            for line in f:
                t = json.loads(line)["text"]
                if t and not t.isspace():
                    texts.append(t.replace("\n", " "))
    return texts, None


def dev_sentences(path: str) -> tuple[list[str], list[str]]:
    texts, gold = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            t = d["text"]
            if t and not t.isspace():
                texts.append(t.replace("\n", " "))
                gold.append(d["lang"])
    return texts, gold


def timed(fn):
    c, w = time.process_time(), time.perf_counter()
    out = fn()
    return time.process_time() - c, time.perf_counter() - w, out


def binding_predict(model, texts, k=1):
    labels, probs = model.predict(texts, k=k, threshold=0.0)
    return labels, probs


def run(name: str, texts: list[str], gold: list[str] | None, model_path: str, trials: int) -> None:
    mb = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts) / 1e6
    model = fasttext.load_model(model_path)
    best = {k: [np.inf, np.inf] for k in ("binding", "cold", "warm")}
    stats = None
    first_cold = None
    for _ in range(trials):
        c, w, (bl, bp) = timed(lambda: binding_predict(model, texts))
        best["binding"] = [min(best["binding"][0], c), min(best["binding"][1], w)]
        fl = FastLid(model_path)
        c, w, (fl_labels, fl_probs) = timed(lambda: fl.predict(texts))
        best["cold"] = [min(best["cold"][0], c), min(best["cold"][1], w)]
        if first_cold is None:
            first_cold = c
        c, w, (fl_labels2, fl_probs2) = timed(lambda: fl.predict(texts))
        best["warm"] = [min(best["warm"][0], c), min(best["warm"][1], w)]
        assert fl_labels2 == fl_labels and np.array_equal(fl_probs2, fl_probs, equal_nan=True)
        stats = fl.stats()

    b_labels = [ls[0][len("__label__"):] if len(ls) else "" for ls in bl]
    b_probs = np.array([p[0] if len(p) else np.nan for p in bp], dtype=np.float32)
    same = np.array([a == b for a, b in zip(fl_labels, b_labels)])
    diff = np.abs(fl_probs - b_probs)
    print(f"== {name}: {len(texts)} documents, {mb:.2f} MB, model {Path(model_path).name}")
    print(f"label agreement: {same.mean() * 100:.4f}% ({int((~same).sum())} differ)")
    print(f"|prob diff|: max {np.nanmax(diff):.3g}  mean {np.nanmean(diff):.3g}")
    if gold is not None:
        g = np.array(gold, dtype=object)
        for who, labels, probs in (("binding", b_labels, b_probs), ("fastlid", fl_labels, fl_probs)):
            lab = np.array(labels, dtype=object)
            thr = np.where(probs >= THRESHOLD, lab, "unknown")
            print(f"accuracy vs gold ({who}): top-1 {np.mean(lab == g) * 100:.3f}%  "
                  f"with threshold {THRESHOLD}: {np.mean(thr == g) * 100:.3f}%")
    bc, bw = best["binding"]
    print(f"{'':8s} {'MB/s (cpu)':>11s} {'MB/s (wall)':>12s} {'x binding (cpu)':>16s}")
    for k in ("binding", "cold", "warm"):
        c, w = best[k]
        print(f"{k:8s} {mb / c:11.1f} {mb / w:12.1f} {bc / c:16.2f}")
    print(f"cold, first trial only (a fresh process: its heap grows, page faults): "
          f"{mb / first_cold:.1f} MB/s cpu, x{bc / first_cold:.2f}")
    print(f"cache: {stats}")
    if (~same).any():
        idx = np.flatnonzero(~same)
        top2_l, top2_p = binding_predict(model, [texts[i] for i in idx], k=2)
        print("disagreements (binding top-2 | fastlid):")
        for j, i in enumerate(idx[:20]):
            pairs = ", ".join(f"{lab[9:]} {p:.7f}" for lab, p in zip(top2_l[j], top2_p[j]))
            print(f"  #{i}: binding [{pairs}] | fastlid {fl_labels[i]} {fl_probs[i]:.7f} | {texts[i][:70]!r}")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dev", nargs="?", metavar="LID_DEV.jsonl",
                    help="labelled sentences: JSON lines with text and gold lang (see above; optional)")
    ap.add_argument("--model", default=str(embedded_model_path()), help="fastText .ftz/.bin (default: embedded lid.176.ftz)")
    ap.add_argument("--trials", type=int, default=5)
    args = ap.parse_args()
    try:
        os.sched_setaffinity(0, {0})
    except (AttributeError, OSError):
        print("(could not pin to one core)")
    texts, gold = web_samples()
    run("web samples", texts, gold, args.model, args.trials)
    if args.dev:
        texts, gold = dev_sentences(args.dev)
        run(f"dev sentences ({Path(args.dev).name})", texts, gold, args.model, args.trials)


if __name__ == "__main__":
    main()
