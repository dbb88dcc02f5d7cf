"""The batched line scorer: many lines in, one toxic probability per line out, as fast as the device allows.

How a call to :meth:`ToxicityEngine.score` runs:

1. every line is keyed by a 128-bit blake2b hash; lines seen before (a bounded LRU cache) or
   earlier in the same call are not scored again (web text repeats navigation bars, cookie
   notices and boilerplate);
2. a background thread tokenizes the remaining lines with the fast (Rust) tokenizer, in chunks,
   truncating at ``max_length`` tokens, so the device never waits for the tokenizer;
3. the main thread gathers a bounded window of tokenized lines (about 16 batches' worth of
   tokens; the first window of a call is smaller so the device starts early), sorts it by token length
   (longest first) and cuts batches by a token budget (rows x padded length <= budget), so
   padding is small; padding waste is measured;
4. each batch runs under ``torch.inference_mode`` (on CUDA: bf16 autocast, SDPA attention, pinned
   host memory and non-blocking copies, results left on the device until the window is done);
   plain BERT classifiers run the packed forward of ``packed_bert.py`` (dense layers without
   padding, last layer for [CLS] only) once a probe batch showed it agrees with the
   ``transformers`` forward on this device; an out-of-memory error halves the budget and the
   batch is split and retried, no line is lost;
5. scores are written back at the lines' original positions.

With several visible GPUs there is one model replica and one worker thread per GPU, all fed
from the same window. torch is imported by this module: import it only when scoring.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np
import torch

from llama_audit.types import ConfigError
from llama_audit.analyzers.toxicity.packed_bert import host_layout, packed_or_reason
from llama_audit.analyzers.toxicity.tokens import LineCache, LineTokenizer, line_key, make_backend  # noqa: F401 - re-exported

CPU_BUDGET_TOKENS = 2048  # BERT-base on CPU: per-token cost flat from ~256 to ~2k tokens, worse above
GPU_BUDGET_CAP = 65536
MIN_BUDGET_TOKENS = 64
CPU_MIN_BATCH_TOKENS = 256
GPU_MIN_BATCH_TOKENS = 16384  # below this, launch overhead dominates a BERT-base forward on a big GPU
SLACK = 0.1  # rows within 10% of a batch's widest row join it freely (transformers forward)
PACKED_SLACK = 0.3  # the same with the packed forward, whose dense layers skip the padding
FIRST_WINDOW_BATCHES = 2  # a window holds about this many full batches of tokens...
WINDOW_BATCHES = 16  # ...and this many after the first one of a call
FORWARDS = ("auto", "packed", "transformers")
PROBE_TOLERANCE = 1e-4  # packed vs transformers forward, probabilities, fp32 on CPU
PROBE_TOLERANCE_CUDA_FP32 = 1e-3  # fp32 on CUDA (TF32 matmuls, where enabled, round more)
PROBE_TOLERANCE_LOW_PRECISION = 3e-2  # bf16 / fp16: the two forwards round differently


# ---------------------------------------------------------------------------------------------
# devices


def resolve_devices(spec: str | None) -> list[torch.device]:
    """``auto`` (all GPUs, else CPU) | ``cpu`` | ``cuda`` (all GPUs) | ``cuda:N``."""
    spec = (spec or "auto").strip().lower()
    n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if spec == "auto":
        return [torch.device("cuda", i) for i in range(n_gpu)] or [torch.device("cpu")]
    if spec == "cpu":
        return [torch.device("cpu")]
    if spec == "cuda" or spec.startswith("cuda:"):
        if n_gpu == 0:
            raise ConfigError(f"--device {spec}: no CUDA GPU is visible (torch {torch.__version__}); use --device cpu")
        if spec == "cuda":
            return [torch.device("cuda", i) for i in range(n_gpu)]
        try:
            index = int(spec.split(":", 1)[1])
        except ValueError:
            raise ConfigError(f"--device {spec}: expected cuda:N") from None
        if not 0 <= index < n_gpu:
            raise ConfigError(f"--device {spec}: only {n_gpu} GPU(s) visible")
        return [torch.device("cuda", index)]
    raise ConfigError(f"--device {spec!r}: expected auto, cpu, cuda or cuda:N")


def resolve_precision(precision: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None = plain fp32). ``auto``: bf16 on CUDA (fp16 where bf16 is not
    supported), fp32 on CPU."""
    p = (precision or "auto").lower()
    if p == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    table = {"fp32": None, "float32": None, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp16": torch.float16, "float16": torch.float16}
    if p not in table:
        raise ConfigError(f"toxicity precision {precision!r}: expected auto, fp32, bf16 or fp16")
    return table[p]


def _is_oom(exc: BaseException) -> bool:
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    if isinstance(exc, MemoryError):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


# ---------------------------------------------------------------------------------------------
# statistics


@dataclasses.dataclass
class EngineStats:
    lines: int = 0  # lines asked for
    cache_hits: int = 0  # answered from the cache or a duplicate earlier in the same call
    lines_scored: int = 0  # lines run through the model
    tokens: int = 0  # real (non-padding) tokens of the lines run through the model
    padded_tokens: int = 0  # tokens computed, padding included
    batches: int = 0
    oom_retries: int = 0
    truncated_lines: int = 0  # lines cut at max_length tokens
    tokenize_s: float = 0.0  # tokenizer thread busy time (overlaps the forward passes)
    wait_s: float = 0.0  # time the scoring loop waited for the tokenizer
    wall_s: float = 0.0  # total time inside score()

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["cache_hit_rate"] = self.cache_hits / self.lines if self.lines else 0.0
        d["padding_waste"] = 1.0 - self.tokens / self.padded_tokens if self.padded_tokens else 0.0
        d["lines_per_s"] = self.lines / self.wall_s if self.wall_s else 0.0
        d["model_tokens_per_s"] = self.tokens / self.wall_s if self.wall_s else 0.0
        for k in ("tokenize_s", "wait_s", "wall_s"):
            d[k] = round(d[k], 4)
        return d


# ---------------------------------------------------------------------------------------------
# one model replica on one device


class _Worker:
    """One model replica on one device. ``packed``: the :class:`PackedBert` forward over the same
    weights (None: the ``transformers`` forward on padded batches)."""

    def __init__(self, model, device: torch.device, autocast_dtype: torch.dtype | None, label_index: int,
                 packed=None):
        self.model = model
        self.packed = packed
        self.device = device
        self.cuda = device.type == "cuda"
        self.autocast_dtype = autocast_dtype
        self.label_index = label_index

    def _to_device(self, a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(a)
        if self.cuda:
            t = t.pin_memory().to(self.device, non_blocking=True)
        return t

    def _context(self):
        stack = contextlib.ExitStack()
        if self.cuda:
            stack.enter_context(torch.cuda.device(self.device))
        stack.enter_context(torch.inference_mode())
        if self.autocast_dtype is not None:
            stack.enter_context(torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype))
        return stack

    def _probs(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.float(), dim=-1)[:, self.label_index]

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> torch.Tensor:
        """Toxic-label probabilities of one padded batch (``transformers`` forward), float32, left
        on the device."""
        ids_t, mask_t = self._to_device(ids), self._to_device(mask)
        with self._context():
            return self._probs(self.model(input_ids=ids_t, attention_mask=mask_t).logits)

    def forward_packed(self, flat: np.ndarray, lens: np.ndarray, width: int) -> torch.Tensor:
        """Toxic-label probabilities of one packed batch (rows' ids concatenated, row lengths, the
        padded width for attention)."""
        pos, slot, starts = host_layout(lens, width)
        t, b = len(flat), len(lens)
        arrays = self._to_device(np.concatenate([flat, pos, slot, lens, starts]))  # one host->device copy
        ids_t, pos_t, slot_t = arrays[:t], arrays[t:2 * t], arrays[2 * t:3 * t]
        lens_t, starts_t = arrays[3 * t:3 * t + b], arrays[3 * t + b:]
        with self._context():
            return self._probs(self.packed(ids_t, lens_t, width, pos_t, slot_t, starts_t, int(lens.max())))


@dataclasses.dataclass
class _Window:
    """A window of tokenized lines: flat token ids, per-line offsets/lengths, global positions."""

    positions: np.ndarray
    flat: np.ndarray
    offsets: np.ndarray
    lens: np.ndarray


# ---------------------------------------------------------------------------------------------
# the engine


class ToxicityEngine:
    """Scores lines with a sequence classifier; see the module docstring.

    ``model`` and ``tokenizer`` are a loaded ``transformers`` classifier (on the CPU) and its fast
    tokenizer. ``batch_tokens`` is the padded-token budget of one batch (None: 2048 on CPU, from
    free memory on CUDA). ``cache_lines`` bounds the duplicate cache (0 disables it, and with it
    the deduplication inside a call).
    """

    def __init__(self, model, tokenizer, *, device: str = "auto", label_index: int = 1, max_length: int = 512,
                 batch_tokens: int | None = None, cache_lines: int = 500_000, window_lines: int | None = None,
                 tokenize_chunk: int = 2048, precision: str = "auto", threads: int | None = None,
                 max_batch_lines: int = 8192, forward: str = "auto"):
        self.devices = resolve_devices(device)
        self.cuda = self.devices[0].type == "cuda"
        self.label_index = int(label_index)
        self.max_length = int(max_length)
        self.tokenize_chunk = max(1, int(tokenize_chunk))
        self.max_batch_lines = max(1, int(max_batch_lines))
        self.window_lines = int(window_lines) if window_lines else 65536
        self.pad_multiple = 8 if self.cuda else 1
        self.slack = SLACK
        self.min_batch_tokens = GPU_MIN_BATCH_TOKENS if self.cuda else CPU_MIN_BATCH_TOKENS
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self.cache = LineCache(cache_lines)
        self.dedup = cache_lines > 0
        self._stats = EngineStats()
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None  # worker threads when there are several devices
        self._tokenizer = tokenizer
        self.line_tokenizer = LineTokenizer(tokenizer, self.max_length, self.tokenize_chunk)

        if not self.cuda:
            n = threads or (None if "OMP_NUM_THREADS" in os.environ else len(os.sched_getaffinity(0)))
            if n:
                torch.set_num_threads(max(1, int(n)))
        self.autocast_dtype = resolve_precision(precision, self.devices[0])
        self.precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast_dtype]
        forward = (forward or "auto").strip().lower()
        if forward not in FORWARDS:
            raise ConfigError(f"toxicity forward {forward!r}: expected {', '.join(FORWARDS)}")
        self.workers: list[_Worker] = []
        model = model.eval()
        for i, dev in enumerate(self.devices):
            replica = model if i == len(self.devices) - 1 else copy.deepcopy(model)
            self.workers.append(_Worker(replica.to(dev), dev, self.autocast_dtype, self.label_index))
        self.forward_impl, self.forward_note = self._choose_forward(forward)
        self.cudnn_attention_off = self.cuda and self.autocast_dtype is not None and not (
            self.forward_impl == "packed" and self.workers[0].packed.attention == "varlen")
        if self.cudnn_attention_off:
            # scaled_dot_product_attention with a mask goes to cuDNN on recent GPUs, which builds a
            # new graph for every new (rows, width) shape; our batch shapes vary all the time
            torch.backends.cuda.enable_cudnn_sdp(False)
            self.forward_note += "; cuDNN attention off (it rebuilds per batch shape)"
        self.budget = int(batch_tokens) if batch_tokens else self._default_budget(model)
        self.budget = max(MIN_BUDGET_TOKENS, self.budget)
        if self.forward_impl == "packed":
            # padding costs only attention now, not the dense layers: wider batches pay off
            self.slack = PACKED_SLACK
            if not self.cuda:
                self.min_batch_tokens = self.budget

    # -- setup helpers -------------------------------------------------------------------------

    _make_backend = staticmethod(make_backend)

    def _choose_forward(self, wanted: str) -> tuple[str, str]:
        """``("packed" | "transformers", note)``. ``auto`` takes the packed forward when the model
        qualifies and it agrees with the ``transformers`` forward on a probe batch on this device:
        in fp32 (tight: catches a wrong computation) and, when scoring in bf16/fp16, in that
        precision too (loose: the two round differently; catches a kernel that fails or
        misbehaves). On CUDA in bf16/fp16 the packed forward's flash attention on unpadded
        sequences is probed first, then its padded attention. Failing all that, the
        ``transformers`` forward, and the note says why."""
        if wanted == "transformers":
            return "transformers", "asked for"
        packed = []
        for w in self.workers:
            p, why = packed_or_reason(w.model)
            if p is None:
                if wanted == "packed":
                    raise ConfigError(f"toxicity: the packed forward does not support this model: {why}")
                return "transformers", f"packed forward not applicable: {why}"
            packed.append(p)
        modes = self._attention_modes()
        failures = []
        for mode in modes:
            for p in packed:
                p.attention = mode
            problem = self._probe_problem(packed[0])
            if problem is None:
                for w, p in zip(self.workers, packed):
                    w.packed = p
                after = f" (after {'; '.join(failures)})" if failures else ""
                return "packed", f"{mode} attention{after}; probe max |diff| " + self._probe_text
            failures.append(f"{mode} attention: {problem}")
            if wanted == "packed" and mode == modes[-1]:
                raise ConfigError("toxicity: packed forward unusable here: " + "; ".join(failures))
        return "transformers", "packed forward " + "; ".join(failures)

    def _attention_modes(self) -> list[str]:
        """The packed forward's attention variants worth probing here, best first."""
        return ["varlen", "padded"] if self.cuda and self.autocast_dtype is not None else ["padded"]

    def _probe_problem(self, packed) -> str | None:
        """None when the packed forward agrees with the transformers forward on the probe, else why not."""
        try:
            diffs = self._probe(self.workers[0], packed)
        except Exception as exc:  # noqa: BLE001 - any failure of the fast path means: do not use it
            if _is_oom(exc):
                raise
            return f"failed its probe ({type(exc).__name__}: {str(exc)[:200]})"
        for (label, diff), tol in zip(diffs, self._probe_tolerances()):
            if not diff <= tol:
                return f"differs from transformers by {diff:.3g} in {label} on the probe (> {tol:g})"
        self._probe_text = ", ".join(f"{d:.2e} ({label})" for label, d in diffs)
        return None

    def _probe_tolerances(self) -> tuple[float, float]:
        return (PROBE_TOLERANCE if not self.cuda else PROBE_TOLERANCE_CUDA_FP32), PROBE_TOLERANCE_LOW_PRECISION

    def _probe(self, worker: _Worker, packed) -> list[tuple[str, float]]:
        """Max |probability difference| of both forwards on a fixed batch of random token rows,
        in fp32 and (when the engine uses one) in the autocast precision."""
        cfg = worker.model.config
        vocab = int(getattr(cfg, "vocab_size", 0) or 0) or 1000
        rng = np.random.default_rng(0)
        lens = np.array([min(n, self.max_length) for n in (61, 40, 17, 9, 3, 2)], dtype=np.int64)
        flat = rng.integers(1, vocab, size=int(lens.sum()), dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lens)[:-1]])
        win = _Window(np.arange(len(lens)), flat, offsets, lens)
        rows = np.arange(len(lens))
        out = []
        worker.packed = packed
        try:
            for dtype in [None] + ([self.autocast_dtype] if self.autocast_dtype is not None else []):
                worker.autocast_dtype = dtype
                a = worker.forward(*self._padded_arrays(win, rows)).float().cpu().numpy()
                b = worker.forward_packed(*self._packed_arrays(win, rows)).float().cpu().numpy()
                out.append(("fp32" if dtype is None else self.precision, float(np.abs(a - b).max())))
        finally:
            worker.packed = None
            worker.autocast_dtype = self.autocast_dtype
        return out

    def _default_budget(self, model) -> int:
        if not self.cuda:
            return CPU_BUDGET_TOKENS
        cfg = model.config
        h = int(getattr(cfg, "hidden_size", 768))
        inter = int(getattr(cfg, "intermediate_size", 4 * h))
        heads = int(getattr(cfg, "num_attention_heads", 12))
        # peak activation bytes per token of one layer (fp32 worst case) + attention scores if SDPA
        # falls back to the math kernel
        per_token = 4 * (10 * h + 3 * inter) + 4 * heads * self.max_length
        free = min(torch.cuda.mem_get_info(d)[0] for d in self.devices)
        budget = int(0.35 * free / per_token)
        return int(max(self.max_length, min(GPU_BUDGET_CAP, budget)))

    # -- public API ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        with self._lock:
            d = self._stats.as_dict()
        d.update(devices=[str(x) for x in self.devices], precision=self.precision, batch_tokens=self.budget,
                 forward=self.forward_impl, forward_note=self.forward_note,
                 max_length=self.max_length, cache_lines=self.cache.capacity, cache_size=len(self.cache))
        return d

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = EngineStats()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)  # Ctrl-C: do not wait for a window
            self._pool = None
        self.workers = []
        self.cache.clear()
        if self.cuda:
            torch.cuda.empty_cache()

    def score(self, lines: Sequence[str]) -> np.ndarray:
        """Toxic probability of each line (float32, same order)."""
        t0 = time.perf_counter()
        n = len(lines)
        out = np.empty(n, dtype=np.float32)
        if n == 0:
            return out
        if not self.dedup:
            out[:] = self._score_unique(list(lines))
            hits = 0
        else:
            uniq: list[str] = []
            uniq_keys: list[bytes] = []
            first: dict[bytes, int] = {}
            slot = np.full(n, -1, dtype=np.int64)
            cache = self.cache
            for i, line in enumerate(lines):
                k = line_key(line)
                v = cache.get(k)
                if v is not None:
                    out[i] = v
                    continue
                j = first.get(k)
                if j is None:
                    j = first[k] = len(uniq)
                    uniq.append(line)
                    uniq_keys.append(k)
                slot[i] = j
            hits = n - len(uniq)
            if uniq:
                scores = self._score_unique(uniq)
                todo = slot >= 0
                out[todo] = scores[slot[todo]]
                cache.put_many(uniq_keys, scores)
        with self._lock:
            self._stats.lines += n
            self._stats.cache_hits += hits
            self._stats.wall_s += time.perf_counter() - t0
        return out

    # -- tokenization --------------------------------------------------------------------------

    def _encode(self, lines: list[str]) -> list[list[int]]:
        return self.line_tokenizer.encode(lines)

    def tokenize(self, lines: Sequence[str]) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """The chunks :meth:`score` would tokenize ``lines`` into (see :class:`LineTokenizer`)."""
        return self.line_tokenizer.chunks(lines)

    def _tokenize_into(self, lines: list[str], q: queue.Queue, stop: threading.Event) -> None:
        try:
            for start in range(0, len(lines), self.tokenize_chunk):
                if stop.is_set():
                    return
                t0 = time.perf_counter()
                chunk = self.line_tokenizer.chunk_at(lines, start)
                with self._lock:
                    self._stats.tokenize_s += time.perf_counter() - t0
                q.put(chunk)
            q.put(None)
        except BaseException as exc:  # handed to the scoring loop, which re-raises it
            q.put(exc)

    # -- scoring -------------------------------------------------------------------------------

    def _score_unique(self, lines: list[str]) -> np.ndarray:
        out = np.empty(len(lines), dtype=np.float32)
        q: queue.Queue = queue.Queue(maxsize=64)  # up to 64 chunks tokenized ahead
        stop = threading.Event()
        producer = threading.Thread(target=self._tokenize_into, args=(lines, q, stop),
                                    name="toxicity-tokenizer", daemon=True)
        producer.start()

        def next_chunk():
            t0 = time.perf_counter()
            item = q.get()
            with self._lock:
                self._stats.wait_s += time.perf_counter() - t0
            if isinstance(item, BaseException):
                raise item
            return item

        try:
            self._score_windows(next_chunk, out)
        finally:
            stop.set()
            while producer.is_alive():
                try:
                    q.get(timeout=0.05)
                except queue.Empty:
                    pass
            producer.join()
        return out

    def _score_windows(self, next_chunk, out: np.ndarray) -> None:
        """Gather tokenized chunks (``next_chunk()``; None at the end) into windows and score them."""
        pending: list[tuple[int, np.ndarray, np.ndarray]] = []
        pending_lines = pending_tokens = 0
        first = True
        done = False
        while not done:
            item = next_chunk()
            if item is None:
                done = True
            else:
                pending.append(item)
                pending_lines += len(item[2])
                pending_tokens += len(item[1])
            # the first window is small so the device starts early; later ones are larger
            # (better sorting) while the tokenizer thread works ahead
            window_tokens = self.budget * (FIRST_WINDOW_BATCHES if first else WINDOW_BATCHES)
            if pending and (done or pending_lines >= self.window_lines or pending_tokens >= window_tokens):
                self._run_window(self._make_window(pending), out)
                pending, pending_lines, pending_tokens, first = [], 0, 0, False

    def score_tokenized(self, chunks: Sequence[tuple[int, np.ndarray, np.ndarray]], n: int) -> np.ndarray:
        """Scores of ``n`` lines already tokenized by :meth:`tokenize` (no cache, no deduplication:
        the caller did that). The same windows and batches as :meth:`score` on the same unique
        lines, so the same numbers."""
        t0 = time.perf_counter()
        out = np.empty(n, dtype=np.float32)
        if n:
            items = iter(list(chunks) + [None])
            self._score_windows(lambda: next(items), out)
        with self._lock:
            self._stats.lines += n
            self._stats.wall_s += time.perf_counter() - t0
        return out

    @staticmethod
    def _make_window(chunks) -> _Window:
        positions = np.concatenate([start + np.arange(len(lens)) for start, _, lens in chunks])
        lens = np.concatenate([c[2] for c in chunks])
        flat = np.concatenate([c[1] for c in chunks])
        offsets = np.zeros(len(lens), dtype=np.int64)
        np.cumsum(lens[:-1], out=offsets[1:])
        return _Window(positions, flat, offsets, lens)

    def _padded_len(self, n: int) -> int:
        m = self.pad_multiple
        return min(-(-n // m) * m, max(n, self.max_length))

    def _next_batch(self, rows: np.ndarray, start: int, lens: np.ndarray) -> int:
        """How many rows (sorted longest first) from ``start`` make the next batch.

        At most what fits the token budget (rows x padded width). Within that, rows whose length
        is within ``slack`` of the widest are taken; shorter ones only while the batch is below
        ``min_batch_tokens`` (tiny batches waste the device more than a little padding does).
        """
        width = self._padded_len(int(lens[rows[start]]))
        cap = max(1, min(self.budget // width, self.max_batch_lines, len(rows) - start))
        seg = lens[rows[start:start + cap]]
        n_close = int(np.count_nonzero(seg >= width * (1.0 - self.slack)))
        n_min = -(-min(self.min_batch_tokens, self.budget) // width)
        return max(1, min(cap, max(n_close, n_min)))

    def _padded_arrays(self, win: _Window, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``[rows, width]`` token ids (pad id after each row's end) and attention mask."""
        bl = win.lens[rows]
        width = self._padded_len(int(bl.max()))
        cols = np.arange(width, dtype=np.int64)
        mask = cols[None, :] < bl[:, None]
        pos = np.minimum(win.offsets[rows][:, None] + cols[None, :], max(len(win.flat) - 1, 0))
        ids = np.where(mask, win.flat[pos], self.pad_id)
        return ids, mask.astype(np.int64)

    def _packed_arrays(self, win: _Window, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """The rows' token ids concatenated, their lengths, and the padded width for attention."""
        bl = win.lens[rows]
        total = int(bl.sum())
        starts = np.cumsum(bl) - bl
        index = np.arange(total, dtype=np.int64) + np.repeat(win.offsets[rows] - starts, bl)
        return win.flat[index], bl.astype(np.int64), self._padded_len(int(bl.max()))

    def _forward_batch(self, worker: _Worker, win: _Window, rows: np.ndarray) -> torch.Tensor:
        if worker.packed is not None:
            return worker.forward_packed(*self._packed_arrays(win, rows))
        return worker.forward(*self._padded_arrays(win, rows))

    def _forward_rows(self, worker: _Worker, win: _Window, rows: np.ndarray) -> list[tuple[np.ndarray, torch.Tensor]]:
        """Run ``rows`` on ``worker``; on out-of-memory halve the budget, split and retry."""
        bl = win.lens[rows]
        real, padded = int(bl.sum()), self._padded_len(int(bl.max())) * len(rows)
        try:
            probs = self._forward_batch(worker, win, rows)
        except Exception as exc:
            if not _is_oom(exc):
                raise
            with self._lock:
                self._stats.oom_retries += 1
                self.budget = max(MIN_BUDGET_TOKENS, min(self.budget, padded) // 2)
            if worker.cuda:
                torch.cuda.empty_cache()
            if len(rows) == 1:
                raise RuntimeError(f"toxicity: out of memory on a single line of {real} tokens "
                                   f"on {worker.device}; free device memory or use --device cpu") from exc
            results = []
            i = 0
            while i < len(rows):
                nb = self._next_batch(rows, i, win.lens)
                if i == 0 and nb >= len(rows):  # the halved budget still covers it: split in two
                    nb = len(rows) // 2
                results.extend(self._forward_rows(worker, win, rows[i:i + nb]))
                i += nb
            return results
        with self._lock:
            self._stats.batches += 1
            self._stats.lines_scored += len(rows)
            self._stats.tokens += real
            self._stats.padded_tokens += padded
            self._stats.truncated_lines += int((win.lens[rows] >= self.max_length).sum())
        return [(rows, probs)]

    def _run_window(self, win: _Window, out: np.ndarray) -> None:
        order = np.argsort(-win.lens, kind="stable")
        results: list[tuple[np.ndarray, torch.Tensor]] = []
        cursor = [0]
        cursor_lock = threading.Lock()

        def take() -> np.ndarray | None:
            with cursor_lock:
                i = cursor[0]
                if i >= len(order):
                    return None
                nb = self._next_batch(order, i, win.lens)
                cursor[0] = i + nb
                return order[i:i + nb]

        def run(worker: _Worker, sink: list) -> None:
            while (rows := take()) is not None:
                sink.extend(self._forward_rows(worker, win, rows))

        if len(self.workers) == 1:
            run(self.workers[0], results)
        else:  # one thread per device, kept for the engine's life (per-thread kernel caches stay warm)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(len(self.workers), thread_name_prefix="toxicity-device")
            sinks: list[list] = [[] for _ in self.workers]
            futures = [self._pool.submit(run, w, s) for w, s in zip(self.workers, sinks)]
            errors = [f.exception() for f in futures]  # waits for all of them
            for exc in errors:
                if exc is not None:
                    raise exc
            for s in sinks:
                results.extend(s)
        # one device->host copy per batch, after all batches of the window were queued
        for rows, probs in results:
            out[win.positions[rows]] = probs.detach().to("cpu").numpy()
