"""fastText supervised prediction (top-1 label and probability) re-implemented with numpy.

For one line, fastText (``FastText::predictLine`` -> ``Dictionary::getLine``) splits on
`` \n\r\t\v\f\0`` and, for every token, appends input-matrix rows: the word's own row when
it is in the vocabulary, then the rows of the hashed character n-grams of ``<word>``; the line
ends with the ``</s>`` token that the binding's trailing newline produces. The hidden vector is
the mean of all those rows, so it is linear in per-word row sums:

    hidden = (sum over tokens of rowsum[word]) / (sum over tokens of nrows[word])

``FastLid`` caches ``rowsum`` and ``nrows`` per distinct token (bounded: emptied when full).
A batch of lines is joined into one UTF-8 buffer and tokenised with numpy; each token gets an
exact id from a trie of 16-byte chunks kept in numpy open-addressing tables (tokens longer than
128 bytes: a dict), so no Python object is made per token. The cached sums are gathered and
reduced per line, and the output layer runs on the whole batch. Words missing from the cache
get their n-grams hashed for the whole batch at once: FNV-1a over UTF-8 bytes with fastText's
signed-char quirk, UTF-8 aware n-gram boundaries, modulo ``bucket``, through ``pruneidx`` for
pruned (quantized) models.

Followed from facebookresearch/fastText ``src/``: ``fasttext.cc`` (loadModel, predictLine),
``dictionary.cc`` (load, readWord, getLine, getType, hash, computeSubwords, pushHash,
addSubwords), ``densematrix.cc`` / ``quantmatrix.cc`` / ``productquantizer.cc``
(averageRowsToVector, dotRow, addcode / mulcode, centroid layout, qnorm), ``loss.cc``
(HierarchicalSoftmaxLoss::buildTree / predict / dfs, SoftmaxLoss, OneVsAllLoss, findKBest,
sigmoid table, std_log), ``args.cc`` (Args::load).

Not bit-identical: fastText adds the float32 rows one by one in token order; here a word's rows
are added first, then the words of a line (float32 as well, another order), and the logs of the
output layer are taken in float32 (fastText: double, rounded to float). The probabilities differ
by that rounding (~1e-7 typical, ~1e-5 on 60 KB lines); a top-1 label can only differ where two
labels' scores tie within it. On very long lines fastText's own float32 running sum drifts (a
10 MB line: 2.5e-3 off the exact mean's probability); FastLid stays within 1e-7 of it there. HierarchicalSoftmaxLoss::dfs's pruning and tie-breaking are
reproduced (replayed node by node where they could matter).
"""

from __future__ import annotations

import os
import struct
from bisect import bisect_right
from itertools import accumulate

import numpy as np

__all__ = ["FastLid"]

MAGIC = 793712314  # FASTTEXT_FILEFORMAT_MAGIC_INT32
MAX_VERSION = 12  # FASTTEXT_VERSION
EOS = b"</s>"
LABEL_PREFIX = b"__label__"  # fastText's -label default; not stored in the model file
LOSS_HS, LOSS_NS, LOSS_SOFTMAX, LOSS_OVA = 1, 2, 3, 4
MODEL_SUP = 3
KSUB = 256  # ProductQuantizer: 8-bit codes

FNV_OFFSET = np.uint32(2166136261)
FNV_PRIME = np.uint32(16777619)
# Dictionary::hash: h ^= uint32(int8(c)) -- bytes >= 0x80 are sign-extended
_XOR = np.arange(256, dtype=np.int64)
_XOR = np.where(_XOR >= 128, _XOR - 256, _XOR).astype(np.int32).view(np.uint32)
_CONT = (np.arange(256) & 0xC0) == 0x80  # UTF-8 continuation byte
_WS = np.zeros(256, dtype=bool)  # Dictionary::readWord
_WS[[ord(" "), ord("\n"), ord("\r"), ord("\t"), ord("\v"), ord("\f"), 0]] = True
# little-endian masks keeping the first k bytes of a uint64, k = 0..8
_MASK = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)
_U64 = np.uint64
_EOS_KEY = int.from_bytes(EOS, "little")
_LABEL8 = int.from_bytes(LABEL_PREFIX[:8], "little")
OUT_CHUNK = 2048  # documents per pass of the output layer
VOCAB_MERGE_MAX = 200_000  # a vocabulary up to this size is preloaded into the token trie
SHORT = 16  # tokens up to this many bytes are keyed by their bytes in the numpy table
BATCH_CHARS = 1 << 22  # characters of text per numpy pass (default of FastLid's batch_chars)
LONG_LINE_CHARS = 1 << 22  # a longer line is read in pieces of this size (bounded memory)


# ---------------------------------------------------------------------------------------------
# model file parsing


class _Reader:
    """Sequential little-endian reader over the model bytes (arrays are views, not copies)."""

    def __init__(self, data: bytes, path: str):
        self.data = data
        self.pos = 0
        self.path = path

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{self.path}: {what}")

    def need(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"truncated or corrupt fastText model (wanted {n} bytes at offset {self.pos})")

    def unpack(self, fmt: str):
        size = struct.calcsize(fmt)
        self.need(size)
        out = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return out

    def array(self, dtype, count: int) -> np.ndarray:
        dt = np.dtype(dtype)
        self.need(dt.itemsize * count)
        out = np.frombuffer(self.data, dtype=dt, count=count, offset=self.pos)
        self.pos += dt.itemsize * count
        return out

    def flag(self) -> bool:
        self.need(1)
        b = self.data[self.pos]
        self.pos += 1
        return b != 0


def _read_pq(r: _Reader):
    dim, nsubq, dsub, lastdsub = r.unpack("<4i")
    if dim <= 0 or dsub <= 0 or nsubq <= 0 or not 0 < lastdsub <= dsub:
        raise r.fail("corrupt product quantizer header")
    return dim, nsubq, dsub, lastdsub, r.array("<f4", dim * KSUB)


def _pq_decode(r: _Reader, codes: np.ndarray, m: int, n: int, pq) -> np.ndarray:
    """Dense float32 rows from PQ codes, as ProductQuantizer::get_centroids lays them out."""
    dim, nsubq, dsub, lastdsub, centroids = pq
    if dim != n or (nsubq - 1) * dsub + lastdsub != n or codes.size != m * nsubq:
        raise r.fail("corrupt quantized matrix (sizes do not match)")
    codes = codes.reshape(m, nsubq)
    out = np.empty((m, n), dtype=np.float32)
    for q in range(nsubq):
        d = lastdsub if q == nsubq - 1 else dsub
        table = centroids[q * KSUB * dsub: q * KSUB * dsub + KSUB * d].reshape(KSUB, d)
        out[:, q * dsub: q * dsub + d] = table[codes[:, q]]
    return out


def _read_matrix(r: _Reader, quant: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """DenseMatrix::load or QuantMatrix::load: (dense float32 rows, per-row norms or None)."""
    if not quant:
        m, n = r.unpack("<qq")
        if m < 0 or n <= 0:
            raise r.fail("corrupt dense matrix header")
        return r.array("<f4", m * n).reshape(m, n), None
    qnorm = r.flag()
    m, n = r.unpack("<qq")
    (codesize,) = r.unpack("<i")
    if m < 0 or n <= 0:
        raise r.fail("corrupt quantized matrix header")
    codes = r.array(np.uint8, codesize)
    rows = _pq_decode(r, codes, m, n, _read_pq(r))
    norms = None
    if qnorm:
        norm_codes = r.array(np.uint8, m)
        npq = _read_pq(r)
        if npq[0] != 1 or npq[2] != 1:
            raise r.fail("corrupt norm quantizer")
        norms = npq[4][norm_codes.astype(np.intp)]  # npq_->get_centroids(0, code)[0]
    return rows, norms


# ---------------------------------------------------------------------------------------------
# exact token ids, vectorised: byte-chunk keys in numpy open-addressing tables


def _bytes_view(pbuf) -> np.ndarray:
    """uint64 little-endian words starting at every byte of ``pbuf`` but its last 7."""
    return np.ndarray((len(pbuf) - 7,), dtype="<u8", buffer=pbuf, offset=0, strides=(1,))


def _concat_ranges(begins: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indices of ranges [begin, begin + length) one after another (lengths > 0)."""
    ends = np.cumsum(lengths)
    d = np.ones(int(ends[-1]), dtype=np.int64)
    d[0] = begins[0]
    d[ends[:-1]] = begins[1:] - begins[:-1] - lengths[:-1] + 1
    return np.cumsum(d, out=d)


def _chunk_keys(w8: np.ndarray, starts: np.ndarray, lens: np.ndarray):
    """(a, b): bytes [0, 8) and [8, 16) of each string, cut at its length and zero-padded."""
    a = w8[starts]  # (fancy indexing: ``take`` would copy the strided view first)
    a &= _MASK.take(np.minimum(lens, 8))
    b = np.zeros(starts.size, dtype=np.uint64)
    more = np.flatnonzero(lens > 8)
    if more.size:
        b[more] = w8[starts[more] + 8] & _MASK.take(np.minimum(lens[more] - 8, 8))
    return a, b


class _KeyTable:
    """Open addressing from a tuple of uint64 key columns to an int id, every operation
    vectorised over many keys. ``val`` holds id + 1 (0: empty slot)."""

    MULT = (_U64(0x9E3779B97F4A7C15), _U64(0xC2B2AE3D27D4EB4F), _U64(0x165667B19E3779F9))

    def __init__(self, ncols: int, bits: int = 12):
        self.ncols = ncols
        self._alloc(bits)
        self.count = 0

    def _alloc(self, bits: int) -> None:
        self.bits = bits
        self.shift = _U64(64 - bits)
        size = 1 << bits
        self.mask = size - 1
        self.keys = [np.zeros(size, dtype=np.uint64) for _ in range(self.ncols)]
        self.val = np.zeros(size, dtype=np.int64)
        self.scratch = None  # claim array for _probe, allocated on first use

    def nbytes(self) -> int:
        return sum(k.nbytes for k in self.keys) + self.val.nbytes

    def copy(self) -> "_KeyTable":
        out = _KeyTable.__new__(_KeyTable)
        out.__dict__.update(self.__dict__)
        out.keys = [k.copy() for k in self.keys]
        out.val = self.val.copy()
        out.scratch = None
        return out

    def _home(self, cols):
        """(first slot, probe step): double hashing, an odd step (the size is a power of 2),
        avoids the long clusters of linear probing."""
        h = cols[0] * self.MULT[0]
        for c, m in zip(cols[1:], self.MULT[1:]):
            h ^= c * m
        step = (h >> _U64(17)).view(np.intp)
        step &= self.mask
        step |= 1
        h >>= self.shift
        return h.view(np.intp), step  # (< 2**bits: the same value)

    def _match(self, pos, cols) -> np.ndarray:
        eq = self.keys[0].take(pos) == cols[0]
        for k, c in zip(self.keys[1:], cols[1:]):
            eq &= k.take(pos) == c
        return eq

    def reserve(self, extra: int) -> None:
        """Grow so that the load factor stays at most 1/2 after ``extra`` more keys."""
        need = 2 * (self.count + extra)
        if need <= self.mask + 1:
            return
        bits = self.bits
        while (1 << bits) < need:
            bits += 1
        used = np.flatnonzero(self.val)
        cols = tuple(k[used] for k in self.keys)
        v = self.val[used] - 1
        self._alloc(bits)
        self.count = 0
        self._probe(cols, v)

    def lookup(self, cols) -> np.ndarray:
        """The id of each key, -1 where absent."""
        val, mask = self.val, self.mask
        pos, step = self._home(cols)
        v = val.take(pos)
        done = self._match(pos, cols)
        done |= v == 0
        v -= 1
        redo = np.flatnonzero(~done)  # the slot holds another key: probe on
        if redo.size:
            rpos, rstep = pos[redo], step[redo]
            while redo.size:
                rpos = (rpos + rstep) & mask
                rv = val.take(rpos)
                done = self._match(rpos, tuple(c[redo] for c in cols))
                done |= rv == 0
                v[redo] = rv - 1
                more = np.flatnonzero(~done)
                redo, rpos, rstep = redo[more], rpos[more], rstep[more]
        return v

    def _probe(self, cols, values=None, next_id: int = 0):
        """Find or add every key. New keys get ``values`` (the keys are then unique) or the ids
        ``next_id, next_id + 1, ...`` in order of creation. Returns (ids, number created)."""
        val, mask = self.val, self.mask
        res = np.empty(cols[0].size, dtype=np.int64)
        pend = None  # None: all keys, in order
        pos, step = self._home(cols)
        if self.scratch is None:
            self.scratch = np.empty(mask + 1, dtype=np.int64)
        scratch = self.scratch
        nid = next_id
        while True:
            pc = cols if pend is None else tuple(c[pend] for c in cols)
            empty = np.flatnonzero(val.take(pos) == 0)
            if empty.size:
                # several keys may claim one empty slot: one write survives and takes it
                ep = pos[empty]
                scratch[ep] = empty
                win = empty[scratch[ep] == empty]
                wp = pos[win]
                if values is None:
                    val[wp] = np.arange(nid + 1, nid + 1 + win.size, dtype=np.int64)
                    nid += win.size
                else:
                    val[wp] = values[win if pend is None else pend[win]] + 1
                for k, c in zip(self.keys, pc):
                    k[wp] = c[win]
                self.count += win.size
            # every key now compares with its slot: the winner, a duplicate of the winner, or
            # the key already there all match; a different key sends it to the next slot
            hit = self._match(pos, pc)
            v = val.take(pos) - 1
            if pend is None:
                if hit.all():
                    return v, nid - next_id
                res[:] = v
                pend = np.flatnonzero(~hit)
                step = step[pend]
                pos = (pos[pend] + step) & mask
            else:
                res[pend] = v
                miss = np.flatnonzero(~hit)
                if not miss.size:
                    return res, nid - next_id
                pend, step = pend[miss], step[miss]
                pos = (pos[miss] + step) & mask

    def find_or_add(self, cols, next_id: int):
        """``_probe`` in chunks sized from the share of new keys seen so far, growing the table
        by the keys actually added (the load stays below 1 whatever the keys)."""
        n = cols[0].size
        res = np.empty(n, dtype=np.int64)
        i = 0
        added = 0
        while i < n:
            share = max(added / i, 0.05) if i else 1.0
            want = int((n - i) * share * 1.25) + 1024  # new keys expected from the rest
            if not i:
                want = min(want, 1 << 15)
            room = (self.mask + 1) // 2 - self.count  # new keys that keep the load at 1/2
            if room < min(want, 4096):
                self.reserve(want)
                continue
            step = max(1024, min(int(room / share), self.mask - self.count))
            j = min(n, i + step)
            res[i:j], k = self._probe(tuple(c[i:j] for c in cols), None, next_id + added)
            added += k
            i = j
        return res, added


class _Trie:
    """Exact ids for byte strings without making Python objects: a string is the chain of its
    16-byte chunks; the first chunk is keyed by its zero-padded bytes, each later one by (its
    bytes, id of the string before it). Tokens never contain a 0 byte, so the padding is
    unambiguous. Strings longer than ``MAXLEN`` (rare) go to a dict instead, keyed by bytes.
    Node ids start at 1, from one counter."""

    MAXLEN = 8 * SHORT

    def __init__(self, bits: int = 12):
        self.first = _KeyTable(2, bits)
        self.later = _KeyTable(3)
        self.big: dict[bytes, int] = {}
        self.next = 1

    def nbytes(self) -> int:
        return self.first.nbytes() + self.later.nbytes()

    def copy(self) -> "_Trie":
        out = _Trie.__new__(_Trie)
        out.first, out.later = self.first.copy(), self.later.copy()
        out.big = dict(self.big)
        out.next = self.next
        return out

    def walk(self, buf: bytes, w8: np.ndarray, starts: np.ndarray, lens: np.ndarray, add: bool,
             lookup_first: bool = True) -> np.ndarray:
        """Node id of each string ``buf[start:start + len]`` (``w8`` from ``_bytes_view(buf)``,
        readable 16 bytes past every string). An absent string gets -1, or new nodes when
        ``add``; ``lookup_first=False`` suits batches of mostly new strings."""
        node = self._level(self.first, _chunk_keys(w8, starts, lens), add, lookup_first)
        longer = lens > SHORT
        cur = np.flatnonzero(longer)
        if cur.size:
            big = cur[lens.take(cur) > self.MAXLEN]
            if big.size:
                cur = cur[lens.take(cur) <= self.MAXLEN]
            off = SHORT
            while cur.size:
                parent = node.take(cur)
                if not add:
                    gone = parent < 0
                    if gone.any():
                        cur, parent = cur[~gone], parent[~gone]
                a, b = _chunk_keys(w8, starts.take(cur) + off, lens.take(cur) - off)
                node[cur] = self._level(self.later, (a, b, parent.view(np.uint64)), add)
                off += SHORT
                cur = cur[lens.take(cur) > off]
            if big.size:  # (their first chunk may have left a node: harmless)
                get = self.big.get
                out = []
                for s, e in zip(starts[big].tolist(), (starts[big] + lens[big]).tolist()):
                    w = buf[s:e]
                    v = get(w, -1)
                    if v < 0 and add:
                        v = self.big[w] = self.next
                        self.next += 1
                    out.append(v)
                node[big] = out
        return node

    def _level(self, table: _KeyTable, cols, add: bool, lookup_first: bool = True) -> np.ndarray:
        if add and not lookup_first:  # most keys are new: one pass
            ids, k = table.find_or_add(cols, self.next)
            self.next += k
            return ids
        ids = table.lookup(cols)
        if add:
            miss = np.flatnonzero(ids < 0)
            if miss.size:
                ids[miss], k = table.find_or_add(tuple(c[miss] for c in cols), self.next)
                self.next += k
        return ids

# ---------------------------------------------------------------------------------------------


class FastLid:
    """``fasttext.load_model(path).predict(lines, k=1, threshold=0.0)`` in numpy.

    ``path``: a supervised fastText model, ``.bin`` (dense) or ``.ftz`` (quantized), with
    ``wordNgrams == 1`` and loss ``hs`` (lid.176), ``softmax`` or ``ova``; anything else raises
    ``ValueError`` so the caller can fall back to the fastText binding. ``cache_words`` bounds the
    per-word cache (it is emptied when full). ``batch_chars`` is the text handled per numpy pass;
    a line longer than ``piece_chars`` (and than ``batch_chars``) is read in whitespace-cut pieces
    of that size, so memory is bounded whatever the document (a 200 MB line: some 50 MB).
    """

    def __init__(self, path, cache_words: int = 1_000_000, batch_chars: int | None = None,
                 piece_chars: int | None = None):
        path = os.fspath(path)
        self._work: dict[str, np.ndarray] = {}
        with open(path, "rb") as f:
            data = f.read()
        self.path = path
        self._load(_Reader(data, path))
        self._cap = max(int(cache_words), 1)
        self._batch_chars = max(int(BATCH_CHARS if batch_chars is None else batch_chars), 1)
        self._piece_chars = max(int(LONG_LINE_CHARS if piece_chars is None else piece_chars), 1)
        self._lookups = 0
        self._hits = 0
        self._resets = 0
        self._RT = np.zeros((self.dim + 1, 1 << 16), dtype=np.float32)  # slot entries, by column
        self._cache_reset()

    # -------------------------------------------------------------------------- loading
    def _load(self, r: _Reader) -> None:
        magic, version = r.unpack("<ii")
        if magic != MAGIC:
            raise r.fail("not a fastText model (bad magic number)")
        if version > MAX_VERSION:
            raise r.fail(f"fastText file version {version} is newer than {MAX_VERSION}")
        (dim, _ws, _epoch, _min_count, _neg, word_ngrams, loss, model,
         bucket, minn, maxn, _lr_update_rate, _t) = r.unpack("<12id")
        if model != MODEL_SUP:
            raise r.fail(f"not a supervised fastText model (model={model})")
        if loss not in (LOSS_HS, LOSS_SOFTMAX, LOSS_OVA):
            raise r.fail(f"fastText loss {loss} is not supported here (hs, softmax, ova only)")
        if word_ngrams > 1:
            raise r.fail(f"wordNgrams={word_ngrams} is not supported here (only 1)")
        if dim <= 0:
            raise r.fail("corrupt fastText args (dim)")
        if version == 11:
            maxn = 0  # FastText::loadModel: old supervised models have no char n-grams
        if maxn > 0 and minn <= maxn and bucket <= 0:
            raise r.fail("corrupt fastText args (bucket)")
        self.dim, self.loss, self.bucket, self.minn, self.maxn = dim, loss, bucket, minn, maxn

        # Dictionary::load
        size, nwords, nlabels, _ntokens, prune_size = r.unpack("<iiiqq")
        if not (0 <= nwords <= size and nlabels == size - nwords and nlabels > 0):
            raise r.fail("corrupt fastText dictionary header")
        data, pos = r.data, r.pos
        words: list[bytes] = []
        find = data.index
        entry = struct.Struct("<qb")
        counts = np.empty(size, dtype=np.int64)
        types = np.empty(size, dtype=np.int8)
        try:
            for i in range(size):
                end = find(b"\0", pos)
                words.append(data[pos:end])
                counts[i], types[i] = entry.unpack_from(data, end + 1)
                pos = end + 10
        except (ValueError, struct.error):
            raise r.fail("truncated fastText dictionary") from None
        r.pos = pos
        if (types[:nwords] != 0).any() or (types[nwords:] != 1).any():
            raise r.fail("unexpected dictionary order (words must precede labels)")
        self.nwords, self.nlabels = nwords, nlabels
        self.labels = [
            (w[len(LABEL_PREFIX):] if w.startswith(LABEL_PREFIX) else w).decode("utf-8", "replace")
            for w in words[nwords:]
        ]
        self._label_counts = counts[nwords:]
        prune = r.array("<i4", 2 * prune_size).reshape(-1, 2) if prune_size > 0 else None

        quant_input = r.flag()
        rows, norms = _read_matrix(r, quant_input)
        if norms is not None:
            rows = rows * norms[:, None]  # addcode: x[j] += (1 * norm) * c[j], float32 product
        if not quant_input and prune_size >= 0:
            raise r.fail("pruned dictionary with a dense input matrix (invalid model)")
        qout = r.flag()
        out, self._out_norms = _read_matrix(r, quant_input and qout)  # mulcode: (x . c) * norm
        if r.pos != len(r.data):
            raise r.fail(f"{len(r.data) - r.pos} unexpected bytes after the fastText model")
        if rows.shape[1] != dim or out.shape != (nlabels, dim):
            raise r.fail(f"matrix shapes {rows.shape} / {out.shape} do not match dim {dim}, {nlabels} labels")

        # Dictionary::pushHash: bucket id -> input row, or dropped
        self._ngrams = maxn > 0 and minn <= maxn and prune_size != 0
        self._prune_map = self._pm16 = self._pm_member = None
        need_rows = nwords
        if prune is not None:
            first, second = prune[:, 0], prune[:, 1]
            if first.size and (first.min() < 0 or first.max() >= bucket or second.min() < 0):
                raise r.fail("corrupt pruneidx")
            pm = np.full(bucket, -1, dtype=np.int32)
            pm[first] = nwords + second
            self._prune_map = pm
            if second.size and second.max() < 0xFFFF:
                self._pm16 = np.full(bucket, 0xFFFF, dtype=np.uint16)  # 4x less memory to touch
                self._pm16[first] = second
            else:
                self._pm_member = pm >= 0
            need_rows = nwords + (int(second.max()) + 1 if second.size else 0)
        elif self._ngrams:
            need_rows = nwords + bucket
        if rows.shape[0] < need_rows:
            raise r.fail(f"input matrix has {rows.shape[0]} rows, the dictionary needs {need_rows}")
        self._bigram_rows = None
        if self._ngrams and minn <= 2 <= maxn:
            # the hash and input row (or -1) of every ASCII bigram, by (byte0 << 7) | byte1
            c = np.arange(1 << 14, dtype=np.uint32)
            self._bigram_hash = ((FNV_OFFSET ^ (c >> 7)) * FNV_PRIME ^ (c & 127)) * FNV_PRIME
            self._bigram_rows = np.full(1 << 14, -1, dtype=np.int32)
            keep, rid = self._push_hash(self._bigram_hash % np.uint32(bucket))
            self._bigram_rows[keep] = rid
        # own, aligned copies (views of the file bytes may be misaligned: slow arithmetic)
        self._rows = np.array(rows, dtype=np.float32, order="C")
        # transposed copy for gathering n-gram rows column-wise, when small (quantized models)
        self._rowsT = np.ascontiguousarray(rows.T) if rows.nbytes <= (64 << 20) else None
        self._out = np.array(out, dtype=np.float32, order="C")

        # word2int_: the last duplicate wins, as in Dictionary::load
        index = {}
        for i, w in enumerate(words):
            index[w] = i
        self._eos_wid = index.get(EOS, -1)
        # vocabulary trie (a word with whitespace in it can never match a token: harmless)
        vw = list(index)
        lens = np.fromiter(map(len, vw), dtype=np.int64, count=len(vw))
        keep = np.flatnonzero(lens > 0)
        vbuf = b"".join(vw) + bytes(16)
        starts = (np.cumsum(lens) - lens)[keep]
        self._vocab = _Trie()
        node = self._vocab.walk(vbuf, _bytes_view(vbuf), starts, lens[keep], add=True)
        self._vocab_wid = np.full(self._vocab.next, -1, dtype=np.int64)
        self._vocab_wid[node] = np.fromiter(index.values(), dtype=np.int64, count=len(vw))[keep]
        self._vocab_merged = len(vw) <= VOCAB_MERGE_MAX
        if loss == LOSS_HS:
            self._build_tree()

    def _build_tree(self) -> None:
        """HierarchicalSoftmaxLoss::buildTree, and the orders _hs_best walks it in."""
        osz = self.nlabels
        n = 2 * osz - 1
        cnt = [int(c) for c in self._label_counts] + [10**15] * (osz - 1)
        parent = [-1] * n
        left = [-1] * n
        right = [-1] * n
        binary = [False] * n
        leaf, node = osz - 1, osz
        for i in range(osz, n):
            mini = [0, 0]
            for j in range(2):
                if leaf >= 0 and cnt[leaf] < cnt[node]:
                    mini[j] = leaf
                    leaf -= 1
                else:
                    mini[j] = node
                    node += 1
            left[i], right[i] = mini
            cnt[i] = cnt[mini[0]] + cnt[mini[1]]
            parent[mini[0]] = parent[mini[1]] = i
            binary[mini[1]] = True
        ni = osz - 1
        root = n - 1
        # a non-root node's score is its parent's plus std_log(1 - f) (left child) or std_log(f)
        # (right child) of the parent's f: row ``term[k]`` of the stacked (left, right) terms
        term = np.array([(parent[k] - osz + (ni if binary[k] else 0)) if k != root else -1 for k in range(n)])
        depth = [0] * n
        for k in range(n - 2, -1, -1):  # parents have larger indices than their children
            depth[k] = depth[parent[k]] + 1
        levels = []
        for d in range(1, max(depth) + 1 if n > 1 else 1):
            nodes = np.array([k for k in range(n) if depth[k] == d], dtype=np.intp)
            levels.append((nodes, np.array([parent[k] for k in nodes], dtype=np.intp), term[nodes]))
        self._levels = levels
        self._root = root
        # DFS preorder (left first), for the exact replay of HierarchicalSoftmaxLoss::dfs
        pre, stack = [], [root]
        while stack:
            v = stack.pop()
            pre.append(v)
            if left[v] != -1:
                stack.append(right[v])
                stack.append(left[v])
        self._preorder = [(k, parent[k], int(term[k]), left[k] == -1) for k in pre[1:]]
        # leaves in reverse DFS order: np.argmax keeps the first maximum, dfs the last one
        dfs_leaves = [k for k in pre if left[k] == -1]
        self._leaf_rev = np.array(dfs_leaves[::-1], dtype=np.intp)
        # each leaf's ancestors but the root, padded with n (a +inf row in _hs_best)
        anc = [[] for _ in range(osz)]
        for i in range(osz):
            j = parent[i]
            while j != -1 and j != root:
                anc[i].append(j)
                j = parent[j]
        width = max(1, max(map(len, anc)))
        self._ancestors = np.array([a + [n] * (width - len(a)) for a in anc], dtype=np.intp)
        self._tree_out = self._out[:ni]  # internal node i uses output row i - osz

    # -------------------------------------------------------------------------- cache
    def _cache_reset(self) -> None:
        # token -> node id; a small vocabulary starts in the cache's trie (node ids below
        # _base_nodes, word ids in _vocab_wid), so new words need no second lookup
        if self._vocab_merged:
            self._trie = self._vocab.copy()
            self._trie.first.reserve(1 << 15)
        else:
            self._trie = _Trie(17)
        self._base_nodes = self._trie.next
        self._slot_of = np.zeros(1 << 16, dtype=np.int64)  # node id -> cache slot (0: none yet)
        self._nslots = 1  # slot 0 is the all-zero entry
        self._RT[:, 0] = 0.0
        self._cold = True  # the last batch missed a lot: skip the separate lookup
        eos = np.zeros(self.dim + 1, dtype=np.float64)
        if 0 <= self._eos_wid < self.nwords:
            eos[: self.dim] = self._rows[self._eos_wid]
            eos[self.dim] = 1.0
        self._eos_entry = eos  # the </s> ending every line: its own row, no n-grams

    def _buf(self, name: str, shape, dtype) -> np.ndarray:
        """A reusable scratch array (fresh multi-MB temporaries cost page faults every batch)."""
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        n = int(np.prod(shape))
        a = self._work.get(name)
        if a is None or a.size < n or a.dtype != dtype:
            a = self._work[name] = np.empty(max(n, 1 << 16), dtype=dtype)
        return a[:n].reshape(shape)

    @staticmethod
    def _grow(a: np.ndarray, n: int, axis: int = 0) -> np.ndarray:
        size = a.shape[axis]
        if n <= size:
            return a
        while size < n:
            size *= 2
        shape = list(a.shape)
        shape[axis] = size
        out = np.zeros(shape, dtype=a.dtype)
        out[(slice(None),) * axis + (slice(0, a.shape[axis]),)] = a
        return out

    def _entries(self, arr: np.ndarray, starts, lens, wids) -> np.ndarray:
        """Per new word: [sum of its input rows..., number of rows] ((dim + 1) x n float32).

        Dictionary::getLine / addSubwords: a label token (a vocabulary label, or unknown and
        starting with ``__label__``) adds nothing; a known word adds its own row; every word
        but ``</s>`` adds the rows of the hashed n-grams of ``<word>`` that survive pushHash."""
        n = starts.size
        known = np.flatnonzero((wids >= 0) & (wids < self.nwords))
        own_parts, rid_parts = [known], [wids[known]]
        if self._ngrams:
            sub = wids < self.nwords
            unk9 = np.flatnonzero((wids < 0) & (lens >= len(LABEL_PREFIX)))
            if unk9.size:
                s = starts[unk9]
                lab = (_bytes_view(arr)[s] == _U64(_LABEL8)) & (arr[s + 8] == LABEL_PREFIX[8])
                sub[unk9[lab]] = False
            eos = np.flatnonzero(lens == len(EOS))
            if eos.size:
                s = starts[eos]
                is_eos = np.ones(eos.size, dtype=bool)
                for k, c in enumerate(EOS):
                    is_eos &= arr[s + k] == c
                sub[eos[is_eos]] = False
            idx = np.flatnonzero(sub)
            if idx.size:
                own, rid = self._ngram_rows(arr, starts[idx], lens[idx])
                own_parts.append(idx.take(own))
                rid_parts.append(rid)
        own = np.concatenate(own_parts)
        rid = np.concatenate(rid_parts)
        out = np.zeros((self.dim + 1, n), dtype=np.float32)
        if self._rowsT is not None:
            G = self._rowsT.take(rid, axis=1)
        else:
            G = np.ascontiguousarray(self._rows.take(rid, axis=0).T)
        for d in range(self.dim):  # (a float32 sum of a word's few rows, as fastText's)
            np.add.at(out[d], own, G[d])
        out[self.dim] = np.bincount(own, minlength=n)
        return out

    def _ngram_rows(self, arr: np.ndarray, starts: np.ndarray, lens: np.ndarray):
        """Dictionary::computeSubwords(BOW + w + EOW) through pushHash, for many words at once.
        Returns (word index, input row) pairs."""
        wl = lens + 2
        wend = np.cumsum(wl)
        wbeg = wend - wl
        g = arr.take(_concat_ranges(starts - 1, wl))  # the bytes around are overwritten next
        g[wbeg] = ord("<")
        g[wend - 1] = ord(">")
        hi = g >= 0x80
        if not hi.any():
            return self._ngram_ascii(g, wl, wbeg, wend)
        # words with multi-byte characters take the general path, the others the fast one
        nhi = np.cumsum(hi, dtype=np.int64)
        nonascii = nhi.take(wend - 1) != nhi.take(wbeg)  # (g[wbeg] is '<')
        out_o, out_r = [], []
        for sel, fn in ((np.flatnonzero(~nonascii), self._ngram_ascii), (np.flatnonzero(nonascii), self._ngram_utf8)):
            if not sel.size:
                continue
            swl = wl.take(sel)
            send = np.cumsum(swl)
            o, r = fn(g.take(_concat_ranges(wbeg.take(sel), swl)), swl, send - swl, send)
            out_o.append(sel.take(o))
            out_r.append(r)
        return np.concatenate(out_o), np.concatenate(out_r)

    def _ngram_ascii(self, g, wl, wbeg, wend):
        """Single-byte characters only: character n-grams are byte n-grams."""
        owner = np.repeat(np.arange(wl.size, dtype=np.int32), wl)
        x = self._buf("x", g.size, np.uint32)
        x[:] = g  # ASCII bytes are not sign-extended
        return self._ngram_loop(x, None, None, owner, wbeg, wend, ascii_=True)

    def _ngram_utf8(self, g, wl, wbeg, wend):
        total = g.size
        gp = np.concatenate((g, np.zeros(4, dtype=np.uint8)))
        cs = np.flatnonzero(~_CONT[g])  # character starts
        nc = cs.size
        clen = np.diff(np.append(cs, total))
        wcb = np.searchsorted(cs, wbeg)  # first character ('<') of each word
        wce = np.append(wcb[1:], nc)
        owner = np.repeat(np.arange(wl.size), wce - wcb)
        xl = _XOR.take(gp.take(cs))
        xs = [_XOR.take(gp.take(cs + j)) for j in range(1, int(clen.max()))]
        return self._ngram_loop(xl, xs, clen, owner, wcb, wce)

    def _ngram_loop(self, xl, xs, clen, owner, first, end, ascii_: bool = False):
        """n-gram hashes by extension: h(c, n) = h(c, n - 1) followed by the bytes of character
        c + n - 1. ``xl``: per character, the hash operand of its first byte; ``xs[j - 1]``: of
        its (j + 1)-th byte (where ``clen > j``); ``owner``: its word, whose characters are
        ``first[w]:end[w]``."""
        minn, maxn = self.minn, self.maxn
        nc = xl.size
        bucket = np.uint32(self.bucket)
        owns, rids = [], []
        ids_buf = self._buf("ids", nc, np.uint32)
        h = self._buf("h", nc, np.uint32)
        n0 = 1
        bigram = None
        if ascii_ and minn >= 2 and self._bigram_rows is not None and nc > 1:
            # every ASCII bigram's hash and row are precomputed: start at n = 2
            bigram = (xl[:-1] << 7) | xl[1:]
            h = self._bigram_hash.take(bigram, out=h[: nc - 1], mode="clip")
            n0 = 2
        else:
            h[:] = FNV_OFFSET
        for n in range(n0, maxn + 1):
            m = nc - n + 1
            if m <= 0:
                break
            sl = slice(n - 1, n - 1 + m)
            h = h[:m]
            if n > n0 or bigram is None:
                h ^= xl[sl]
                h *= FNV_PRIME
                if xs:
                    for j, xj in enumerate(xs, start=1):
                        more = clen[sl] > j
                        h = np.where(more, (h ^ xj[sl]) * FNV_PRIME, h)
            if n < minn:
                continue
            if n == 2 and bigram is not None:
                rid = self._bigram_rows.take(bigram)
                keep = np.flatnonzero(rid >= 0)
                rid = rid.take(keep)
            else:
                keep, rid = self._push_hash(np.remainder(h, bucket, out=ids_buf[:m]))
            # the n-gram must end inside the word of its first character
            w = owner.take(keep)
            ok = keep + n <= end.take(w)
            if n == 1:  # no 1-gram for '<' or '>'
                ok &= (keep != first.take(w)) & (keep + 1 != end.take(w))
            sel = np.flatnonzero(ok)
            owns.append(w.take(sel))
            rids.append(rid.take(sel))
        if not rids:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(owns), np.concatenate(rids)

    def _push_hash(self, ids: np.ndarray):
        """Dictionary::pushHash: (positions kept, their input rows)."""
        if self._pm16 is not None:
            r = self._pm16.take(ids, out=self._buf("r16", ids.size, np.uint16), mode="clip")
            keep = np.flatnonzero(r != 0xFFFF)
            return keep, r.take(keep).astype(np.int64) + self.nwords
        if self._prune_map is not None:
            keep = np.flatnonzero(self._pm_member.take(ids))
            return keep, self._prune_map.take(ids.take(keep)).astype(np.int64)
        return np.arange(ids.size), ids.astype(np.int64) + self.nwords

    # -------------------------------------------------------------------------- predict
    def predict(self, lines: list[str], newlines_as_spaces: bool = False) -> tuple[list[str], np.ndarray]:
        """Top-1 label (without ``__label__``) and its float32 probability for each line.

        Same as ``fasttext.load_model(path).predict(lines, k=1, threshold=0.0)``, including
        empty lines (predicted from ``</s>`` alone). A line fastText gives no prediction for
        (no input row at all) gets ``""`` and NaN. Lines must not contain ``\\n``, unless
        ``newlines_as_spaces``: then each ``\\n`` reads as a space (replaced a batch at a time,
        so a huge document is never copied whole).

        Memory is bounded whatever the lines: a line longer than ``piece_chars`` (and
        ``batch_chars``) is read in :func:`~llama_audit.text.whitespace_pieces` whose row sums
        are added up (in float64) before the one average, so its tokens and rows are those of the
        whole line (unless it holds a run of ``piece_chars`` characters without whitespace, which
        is cut). Shorter lines are read exactly as before."""
        n = len(lines)
        labels: list[str] = [""] * n
        probs = np.full(n, np.nan, dtype=np.float32)
        if n == 0:
            return labels, probs
        ends = list(accumulate(len(t) + 1 for t in lines))
        i = 0
        while i < n:
            if len(lines[i]) > self._piece_chars and len(lines[i]) > self._batch_chars:
                S, trailing = self._long_line_sums(lines[i], newlines_as_spaces)
                self._finish(S, trailing, i, labels, probs)
                i += 1
                continue
            base = ends[i - 1] if i else 0
            j = max(i + 1, bisect_right(ends, base + self._batch_chars, i, n))
            batch = lines[i:j]
            if newlines_as_spaces:
                batch = [t.replace("\n", " ") for t in batch]
            S, trailing = self._line_sums("\n".join(batch), j - i)
            self._finish(S, trailing, i, labels, probs)
            i = j
        return labels, probs

    def _long_line_sums(self, line: str, newlines_as_spaces: bool) -> tuple[np.ndarray, np.ndarray]:
        """``_line_sums`` of one line longer than ``piece_chars``, a piece at a time. A literal
        ``</s>`` token ends the line: the pieces after it are not read."""
        from llama_audit.text import whitespace_pieces

        S = np.zeros((self.dim + 1, 1), dtype=np.float64)
        trailing = np.ones(1, dtype=bool)
        for piece in whitespace_pieces(line, self._piece_chars):
            if newlines_as_spaces:
                piece = piece.replace("\n", " ")
            piece_sums, trailing = self._line_sums(piece, 1)
            S += piece_sums
            if not trailing[0]:
                break
        return S, trailing

    def _line_sums(self, text: str, B: int) -> tuple[np.ndarray, np.ndarray]:
        """For the ``B`` lines of ``text`` (joined by ``\\n``): the sums of their tokens' input
        rows and row counts ((dim + 1) x B, float64; the closing ``</s>`` not included), and
        whether each line reaches its end (False: a literal ``</s>`` token ended it early)."""
        buf = text.encode("utf-8", "surrogatepass")
        if self._trie.next - self._base_nodes > self._cap:
            self._resets += 1
            self._cache_reset()
        N = len(buf)
        pbuf = buf + bytes(24)
        del buf
        arr = np.frombuffer(pbuf, dtype=np.uint8)
        # Dictionary::readWord: tokens are runs of bytes other than ' ' \n \r \t \v \f \0
        cand = np.flatnonzero(arr[:N] <= 32)
        wsp = cand[_WS.take(arr.take(cand))]
        del cand
        bounds = np.concatenate(([-1], wsp, [N]))
        gap = np.diff(bounds)
        tk = np.flatnonzero(gap > 1)
        starts = bounds[tk] + 1
        lens = gap[tk] - 1
        del bounds, gap, tk
        T = starts.size
        nl = wsp[arr.take(wsp) == 10]
        if nl.size != B - 1:
            raise ValueError("predict processes one line at a time (remove '\\n')")
        doc_off = np.searchsorted(starts, np.concatenate(([0], nl + 1)))  # first token of each line

        w8 = _bytes_view(pbuf)
        nodes = self._trie.walk(pbuf, w8, starts, lens, add=True, lookup_first=not self._cold)
        self._slot_of = self._grow(self._slot_of, self._trie.next)
        slots = self._slot_of.take(nodes)
        need = np.flatnonzero(slots == 0)
        self._lookups += T
        self._hits += T - need.size
        self._cold = need.size > T // 4
        if need.size:
            self._add_entries(arr, pbuf, w8, starts, lens, nodes, slots, need)

        # a literal </s> token ends the line there (getLine breaks after it; the newline the
        # binding appends is never read)
        trailing = np.ones(B, dtype=bool)
        e4 = np.flatnonzero(lens == 4)
        if e4.size:
            e4 = e4[w8[starts[e4]] & _MASK[4] == _U64(_EOS_KEY)]
            if e4.size:
                docs = np.searchsorted(doc_off, e4, side="right") - 1
                _, first_eos = np.unique(docs, return_index=True)
                doc_end = np.append(doc_off[1:], T)
                for d, t in zip(docs[first_eos].tolist(), e4[first_eos].tolist()):
                    slots[t + 1: doc_end[d]] = 0
                    trailing[d] = False

        S = np.zeros((self.dim + 1, B), dtype=np.float64)
        if T:
            ntok = np.diff(np.append(doc_off, T))
            ne = np.flatnonzero(ntok > 0)
            G = self._RT.take(slots, axis=1, out=self._buf("G", (self.dim + 1, T), np.float32), mode="clip")
            S[:, ne] = np.add.reduceat(G, doc_off[ne], axis=1)
        return S, trailing

    def _finish(self, S: np.ndarray, trailing: np.ndarray, i: int, labels: list[str], probs: np.ndarray) -> None:
        """Labels and probabilities of lines ``i, i + 1, ...`` from their ``_line_sums``: the
        closing ``</s>`` added, the mean of the rows, the output layer."""
        B = S.shape[1]
        S[:, trailing] += self._eos_entry[:, None]
        cnt = S[self.dim]
        ok = np.flatnonzero(cnt > 0)
        if ok.size == 0:
            return
        # averageRowsToVector: x *= float(1.0 / rows.size())
        hidden = S[: self.dim, ok].T.astype(np.float32)
        hidden *= (1.0 / cnt[ok]).astype(np.float32)[:, None]
        with np.errstate(over="ignore"):  # exp(-o) overflows to inf for o < -88: f = 0, as in C++
            lab, p = self._output(hidden)
        names = self.labels + [""]  # -1: no prediction
        if ok.size == B:
            labels[i:i + B] = [names[k] for k in lab.tolist()]
            probs[i:i + B] = p
        else:
            for d, k in zip(ok.tolist(), lab.tolist()):
                labels[i + d] = names[k]
            probs[i + ok] = p

    def _add_entries(self, arr, pbuf, w8, starts, lens, nodes, slots, need) -> None:
        """Give the words of tokens ``need`` (which have no cache entry yet) an entry, and
        update their ``slots``."""
        nn = nodes[need]
        first = np.empty(self._trie.next, dtype=np.int64)
        first[nn] = need  # one representative token per word
        rep = need[first[nn] == need]
        k = rep.size
        s0 = self._nslots
        self._RT = self._grow(self._RT, s0 + k, axis=1)
        if self._vocab_merged:
            vn = nodes.take(rep)
            wids = np.where(vn < self._vocab_wid.size, self._vocab_wid.take(vn, mode="clip"), -1)
        else:
            wids = self._vocab_lookup(pbuf, w8, starts[rep], lens[rep])
        self._RT[:, s0: s0 + k] = self._entries(arr, starts[rep], lens[rep], wids)
        self._slot_of[nodes[rep]] = np.arange(s0, s0 + k)
        self._nslots += k
        slots[need] = self._slot_of.take(nn)

    def _vocab_lookup(self, buf, w8, starts, lens) -> np.ndarray:
        """Dictionary::getId for tokens: word id, or -1."""
        node = self._vocab.walk(buf, w8, starts, lens, add=False)
        found = node >= 0
        return np.where(found, self._vocab_wid.take(np.where(found, node, 0)), -1)

    # -------------------------------------------------------------------------- output layer
    def _output(self, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-1 label index (-1: none) and float32 probability for float32 hidden vectors."""
        B = hidden.shape[0]
        if B > OUT_CHUNK:  # (keeps the node-score arrays in cache)
            parts = [self._output(hidden[i: i + OUT_CHUNK]) for i in range(0, B, OUT_CHUNK)]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        H = np.ascontiguousarray(hidden.T)  # (dim x B)
        if self.loss == LOSS_HS:
            if self.nlabels == 1:
                return np.zeros(B, dtype=np.intp), np.ones(B, dtype=np.float32)
            o = self._dot(self._tree_out, H)  # (internal nodes x B)
            if self._out_norms is not None:
                o *= self._out_norms[: o.shape[0], None]
            # dfs: f = 1. / (1 + std::exp(-f)) (float exp and sum; the division is double in
            # C++, rounded to float: the same value but where double rounding bites)
            f = np.exp(-o)
            f += np.float32(1.0)
            np.divide(np.float32(1.0), f, out=f)
            ni = f.shape[0]
            # std_log(1.0 - f), std_log(f) = log(x + 1e-5): fastText takes the log in double and
            # rounds it to float; float32 here (the terms may differ in the last bit)
            terms = np.empty((2 * ni, B), dtype=np.float32)
            np.subtract(np.float32(1.0), f, out=terms[:ni])
            terms[:ni] += np.float32(1e-5)
            np.add(f, np.float32(1e-5), out=terms[ni:])
            np.log(terms, out=terms)
            return self._hs_best(terms)
        o = self._dot(self._out, H)  # (labels x B)
        if self._out_norms is not None:
            o *= self._out_norms[:, None]
        if self.loss == LOSS_SOFTMAX:
            e = np.exp(o - o.max(axis=0))
            out = e / e.sum(axis=0, dtype=np.float32)
        else:  # ova: Loss::sigmoid, the 512-entry lookup table
            out = _table_sigmoid(o)
        # findKBest ranks std_log(output) and keeps the later label on an exact tie
        lg = np.log(out.astype(np.float64) + 1e-5).astype(np.float32)
        row = lg.shape[0] - 1 - np.argmax(lg[::-1], axis=0)
        best = lg[row, np.arange(B)]
        return row, np.exp(best)

    @staticmethod
    def _dot(W: np.ndarray, H: np.ndarray) -> np.ndarray:
        """DenseMatrix::dotRow of every row of ``W`` with every column of ``H`` (dim x B): float32
        products added in float32 in dotRow's order (j = 0, 1, ..., dim - 1), one element-wise
        pass per j. Each output depends on its own row and column only, so a document gets the
        same bits whatever else is in its batch (einsum's and BLAS's summation order change with
        the batch's shape: --batch-docs 1 moved lang_score by ~1e-7)."""
        out = np.multiply(W[:, :1], H[:1], dtype=np.float32)
        term = np.empty_like(out)
        for j in range(1, W.shape[1]):
            np.multiply(W[:, j: j + 1], H[j: j + 1], out=term)
            out += term
        return out

    def _hs_best(self, terms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The leaf HierarchicalSoftmaxLoss::dfs(k=1, threshold=0) returns, per column.

        Node scores are accumulated root to leaf in float32 like dfs. dfs prunes a subtree whose
        root scores below the best leaf found so far, and a score can rise on the way down
        (std_log(f) > 0 when f > 1 - 1e-5), so where that could matter -- an ancestor of the
        best leaf scoring below the runner-up leaf, or an exact tie -- dfs is replayed."""
        B = terms.shape[1]
        n = 2 * self.nlabels - 1
        S = np.empty((n + 1, B), dtype=np.float32)  # row n: +inf, pads the ancestor lists
        S[self._root] = 0.0
        S[n] = np.inf
        for nodes, par, tr in self._levels:
            S[nodes] = S[par] + terms[tr]
        leaves = S[self._leaf_rev]
        col = np.argmax(leaves, axis=0)
        cols = np.arange(B)
        best = leaves[col, cols]
        leaf = self._leaf_rev[col]
        leaves[col, cols] = -np.inf
        second = leaves.max(axis=0)
        thr = np.float32(np.log(1e-5))  # std_log(threshold = 0.0)
        anc = S[self._ancestors[leaf], cols[:, None]].min(axis=1)  # non-root ancestors
        risky = np.flatnonzero((anc < second) | (second == best) | (anc < thr) | (best < thr))
        if risky.size:
            leaf = leaf.copy()
            best = best.copy()
            leaf[risky], best[risky] = self._dfs_replay(S[:, risky])
        prob = np.exp(best)
        if risky.size:
            prob[leaf < 0] = np.nan
        return leaf, prob

    def _dfs_replay(self, S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """HierarchicalSoftmaxLoss::dfs with k = 1 and threshold 0, node by node in preorder,
        for all columns of node scores ``S`` at once."""
        B = S.shape[1]
        thr = np.float32(np.log(1e-5))
        best = np.full(B, -np.inf, dtype=np.float32)
        leaf = np.full(B, -1, dtype=np.intp)
        visit = {self._root: np.ones(B, dtype=bool)}
        for k, par, _, is_leaf in self._preorder:
            sc = S[k]
            # `score < std_log(threshold)` or (heap full and `score < heap.front().first`): return
            v = visit[par] & ~(sc < thr) & ~(sc < best)
            if is_leaf:
                best = np.where(v, sc, best)  # k = 1: the new leaf replaces the old (ties too)
                leaf = np.where(v, k, leaf)
            else:
                visit[k] = v
        return leaf, best

    def stats(self) -> dict:
        """Cache size and hit rate since construction: a hit is a token whose word had its
        entry before the batch it came in (a first batch of a fresh cache has none)."""
        return {
            "cache_words": self._nslots - 1,
            "cache_nodes": self._trie.next - self._base_nodes,
            "cache_capacity": self._cap,
            "cache_bytes": int(self._RT.nbytes + self._slot_of.nbytes + self._trie.nbytes()),
            "lookups": self._lookups,
            "hits": self._hits,
            "hit_rate": (self._hits / self._lookups) if self._lookups else 0.0,
            "resets": self._resets,
        }


_SIG_X = (np.arange(513, dtype=np.float32) * np.float32(16) / np.float32(512) - np.float32(8))
_SIG_TABLE = (1.0 / (1.0 + np.exp(-_SIG_X).astype(np.float64))).astype(np.float32)


def _table_sigmoid(x: np.ndarray) -> np.ndarray:
    """Loss::sigmoid: 0 below -8, 1 above 8, else t_sigmoid_[int((x + 8) * 512 / 8 / 2)]."""
    xi = ((x + np.float32(8)) * np.float32(512) / np.float32(8) / np.float32(2))
    i = np.clip(np.nan_to_num(xi, nan=0.0), 0, 512).astype(np.int64)
    y = _SIG_TABLE[i]
    y = np.where(x < -8, np.float32(0.0), y)
    return np.where(x > 8, np.float32(1.0), y).astype(np.float32)
