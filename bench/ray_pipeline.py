"""The Ray Data executor against the in-process one on the same corpus: time ratio, identical bytes.

Why: ``scan --executor ray`` splits a staged analyzer (toxicity) into a CPU stage (lines, tokens)
and a GPU actor stage (the forward) so the GPU never waits for CPU work, as NeMo Curator splits
its tokenizer from its model stage. This prints, measured side by side in one run:

* ``--device cpu`` (default): a tiny BERT built here, a local Ray with ``--num-cpus`` CPUs; wall
  time of both executors (Ray's start excluded), whether annotations, partials and summary are
  the same bytes, and the CPU time of the scan process during the pipeline (what one process
  spends per document however many GPUs the cluster has);
* ``--device cuda``: a random BERT-base (the HateBERT shape) on the GPU; besides the above, the
  engine alone on the same lines (tokens/s), the pipeline's tokens/s with one GPU actor, their
  ratio (target >= 0.8: the CPU work is hidden) and the GPU utilisation sampled with nvidia-smi
  during the pipeline run. One command on a GPU machine:

    python bench/ray_pipeline.py --device cuda --mb 200 --shards 16

Not a timed test: run by hand; paste the output in a note.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import build_corpus  # noqa: E402


def tiny_bert(path: Path) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) with a WordPiece vocabulary of the corpus's words."""
    import inspect

    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    params = inspect.signature(BertTokenizerFast.__init__).parameters
    tok = (BertTokenizerFast(vocab=str(path / "vocab.txt")) if "vocab" in params and "vocab_file" not in params
           else BertTokenizerFast(vocab_file=str(path / "vocab.txt")))
    tok.model_max_length = 512
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512, num_labels=2)
    BertForSequenceClassification(cfg).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path


def bert_base(path: Path, corpus: Path) -> Path:
    from bench.toxicity import random_bert_base

    lines = []
    for p in sorted(corpus.glob("*.jsonl.gz"))[:1]:
        import gzip
        import json

        with gzip.open(p, "rt", encoding="utf-8") as f:
            for i, line in enumerate(f):
                lines.extend(json.loads(line)["text"].split("\n"))
                if i > 2000:
                    break
    model, tok = random_bert_base(lines, path, seed=0)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def same_bytes(a: Path, b: Path) -> tuple[bool, int]:
    files = 0
    for sub in ("annotations", "partials", "summary"):
        left = sorted((a / sub).glob("*.parquet"))
        right = sorted((b / sub).glob("*.parquet"))
        if [p.name for p in left] != [p.name for p in right]:
            return False, files
        for x, y in zip(left, right):
            files += 1
            if x.read_bytes() != y.read_bytes():
                return False, files
    return True, files


class GpuSampler:
    """utilization.gpu from nvidia-smi every ``every`` seconds, in a thread."""

    def __init__(self, every: float = 0.5):
        self.every, self.samples, self._stop = every, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout
                self.samples.append(float(out.split()[0]))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                pass
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def corpus_lines(corpus: Path) -> list[str]:
    import gzip
    import json

    from llama_audit.analyzers.toxicity.lines import document_lines

    lines = []
    for p in sorted(corpus.glob("*.jsonl.gz")):
        with gzip.open(p, "rt", encoding="utf-8") as f:
            for line in f:
                lines.extend(document_lines(json.loads(line)["text"]))
    return lines


def engine_alone(model_dir: Path, lines: list[str], device: str, batch_tokens: int | None) -> tuple[float, int]:
    """(seconds, real tokens) of the engine scoring ``lines`` (no cache: every line runs)."""
    from llama_audit.analyzers.toxicity import model as tm
    from llama_audit.analyzers.toxicity.engine import ToxicityEngine

    m = tm.locate(str(model_dir), None, kind="model", option="-")
    engine = ToxicityEngine(tm.load_model(m), tm.load_tokenizer(m), device=device, batch_tokens=batch_tokens,
                            cache_lines=0)
    engine.score(lines[:2000])  # warm-up (kernels, allocator)
    engine.reset_stats()
    t = time.perf_counter()
    engine.score(lines)
    seconds = time.perf_counter() - t
    tokens = engine.stats()["tokens"]
    engine.close()
    return seconds, tokens


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu (tiny model) | cuda (random BERT-base)")
    ap.add_argument("--mb", type=float, default=None, help="corpus MB of text (default: 1 on cpu, 200 on cuda)")
    ap.add_argument("--shards", type=int, default=None, help="shards (default: 4 on cpu, 16 on cuda)")
    ap.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: 2 on cpu, all on cuda)")
    ap.add_argument("--batch-tokens", type=int, default=None, help="--toxicity-batch-tokens (default: the engine's)")
    ap.add_argument("--analyzers", default="toxicity",
                    help="comma-separated analyzers (default: toxicity; add the CPU ones to load the CPU stage)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)
    cuda = args.device.startswith("cuda")
    mb = args.mb or (200.0 if cuda else 1.0)
    shards = args.shards or (16 if cuda else 4)
    import os

    num_cpus = args.num_cpus or (os.cpu_count() if cuda else 2)
    corpus = build_corpus(mb, name=f"ray_{mb:g}mb_{shards}", shards=shards)
    work = Path(tempfile.mkdtemp(prefix="ray-pipeline-bench-"))
    try:
        model_dir = bert_base(work / "model", corpus) if cuda else tiny_bert(work / "model")
        import ray

        from llama_audit.job import ScanRequest, run_scan

        tox = {"model": str(model_dir), "tokenizer": str(model_dir), "device": args.device, "self_test": False,
               "cache_lines": 0}
        if args.batch_tokens:
            tox["batch_tokens"] = args.batch_tokens
        if not cuda:  # on a CPU, torch's sums depend on its thread count: the CPU actor has one (Ray's OMP_NUM_THREADS)
            tox["threads"] = 1
        common = dict(paths=[str(corpus)], analyzers=args.analyzers.split(","), languages=("all",),
                      options={"toxicity": tox})
        t = time.perf_counter()
        local = run_scan(ScanRequest(out=str(work / "local"), **common))
        local_s = time.perf_counter() - t
        t = time.perf_counter()
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        ray_start_s = time.perf_counter() - t
        with GpuSampler() as gpu:
            t, cpu = time.perf_counter(), time.process_time()
            remote = run_scan(ScanRequest(out=str(work / "ray"), executor="ray", **common))
            ray_s, scan_cpu_s = time.perf_counter() - t, time.process_time() - cpu
        ray.shutdown()
        same, files = same_bytes(work / "ray", work / "local")
        print(f"corpus: {mb:g} MB of text, {shards} shards, {local.documents} documents; device {args.device}; "
              f"local Ray with {num_cpus} CPUs (start {ray_start_s:.1f} s, not counted)")
        print(f"{'executor':<24}{'seconds':>10}{'docs/s':>12}")
        print(f"{'in-process':<24}{local_s:>10.2f}{local.documents / local_s:>12.0f}")
        print(f"{'ray.data pipeline':<24}{ray_s:>10.2f}{remote.documents / ray_s:>12.0f}")
        print(f"time ratio ray.data / in-process: {ray_s / local_s:.2f}x")
        print(f"scan process CPU during the pipeline (all its threads, Ray's driver included): {scan_cpu_s:.2f} s "
              f"= {scan_cpu_s / max(remote.documents, 1) * 1e6:,.0f} us per document")
        print(f"identical bytes (annotations, partials, summary; {files} files): {'yes' if same else 'NO'}")
        if cuda:
            lines = corpus_lines(corpus)
            eng_s, tokens = engine_alone(model_dir, lines, args.device, args.batch_tokens)
            print(f"engine alone: {len(lines)} lines, {tokens} tokens in {eng_s:.2f} s = {tokens / eng_s:,.0f} tokens/s")
            print(f"pipeline (1 GPU actor): {tokens / ray_s:,.0f} tokens/s = {eng_s / ray_s:.0%} of the engine "
                  f"(target >= 80%)")
            m = gpu.mean()
            print(f"GPU utilisation during the pipeline (nvidia-smi, {len(gpu.samples)} samples): "
                  + (f"{m:.0f}%" if m is not None else "not measured"))
        return 0 if same and not remote.failed else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
