"""Compiled MinHash kernel: SHA1 of every shingle and the permutation minima, one call per batch.

Why compiled: datasketch hashes every shingle with `sha1_hash32` (the first 4 bytes of SHA1,
little endian). In Python that is one `hashlib` call per shingle plus the per-row tokenizing,
about 200 us per row; 1M rows then cost ~200 CPU-s before any LSH. Here the whole batch is one
UTF-8 buffer of normalized text (`normalize_many`), and one Numba function walks it: for each
row it cuts the shingles (word n-grams are contiguous byte ranges of normalized text; char
n-grams are ranges of code points), hashes each with SHA1 written from FIPS 180-4, pre-mixes
with the MurmurHash3 32-bit finalizer and keeps the minimum of a_k * h + b_k mod 2^32 per
permutation k, exactly datasketch's "affine32" MinHash. It also hashes `question|||answer`
for GDO's exact key. Nothing per row or per shingle runs in Python.

The SHA1 here equals `hashlib.sha1` on any bytes (tests compare them), so signatures stay
equal to `datasketch.MinHash` updated with `operators.minhash.shingles`.
"""

from __future__ import annotations

import re

import numba
import numpy as np

__all__ = ["minhash_rows", "normalize_many", "sha1_words"]

PLACEHOLDER = re.compile(r"<(image|video)>")
PLACEHOLDER_BYTES = re.compile(rb"<(image|video)>")
# operators.minhash.NON_WORD, except that it keeps the row separator NUL.
NON_WORD_KEEP_NUL = re.compile(r"[^\w\s\x00]+")
M32 = np.uint64(0xFFFFFFFF)
SPACE = 32


def _ascii_table() -> bytes:
    """bytes.translate table: A-Z -> a-z, word characters and NUL kept, the rest -> space."""
    table = bytearray(range(256))
    for c in range(128):
        char = chr(c)
        if "A" <= char <= "Z":
            table[c] = c + 32
        elif not (char.isalnum() or char == "_" or c == 0):
            table[c] = SPACE  # punctuation and every whitespace character
    return bytes(table)


ASCII_TABLE = _ascii_table()


def _joined(texts) -> bytes:
    """The texts as one UTF-8 buffer, joined by " NUL " (NUL inside a text -> space first)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    array = pa.array(texts, pa.large_string()) if isinstance(texts, list) else texts
    array = pc.fill_null(array.cast(pa.large_string()), "")
    if pc.any(pc.match_substring(array, "\x00")).as_py():
        array = pc.replace_substring(array, "\x00", " ")
    whole = pa.LargeListArray.from_arrays(pa.array([0, len(array)], pa.int64()), array)
    separator = pa.scalar(" \x00 ", pa.large_string())
    return pc.binary_join(whole, separator)[0].cast(pa.large_binary()).as_py()


def _collapse_spaces(data: np.ndarray) -> np.ndarray:
    """Runs of spaces -> one space (what " ".join(text.split()) does, ends trimmed later)."""
    space = data == SPACE
    keep = ~space
    keep[1:] |= ~space[:-1]
    keep[:1] = True
    return data[keep]


def normalize_many(texts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(utf8 buffer, starts, ends): `operators.minhash.normalize_text` of every text at once.

    `texts` is a list of str or an Arrow string array (nulls read as ""). The texts are joined
    with " NUL " as one buffer (a NUL inside a text becomes a space first, which normalizing
    does anyway) and normalized in a few passes over it: for pure ASCII, `bytes.translate`
    (lower case; punctuation and whitespace -> space) and a NumPy space collapse; otherwise the
    same `str` steps as `normalize_text` on the whole string. Each step acts within a row: the
    separator is neither a word character nor case-ignorable, placeholders cannot span it.
    Text k is buffer[starts[k]:ends[k]].
    """
    if len(texts) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return np.zeros(0, dtype=np.uint8), empty, empty
    raw = _joined(texts)
    if raw.isascii():
        clean = PLACEHOLDER_BYTES.sub(b" ", raw.lower()).translate(ASCII_TABLE)
        data = _collapse_spaces(np.frombuffer(clean, dtype=np.uint8))
    else:
        big = NON_WORD_KEEP_NUL.sub(" ", PLACEHOLDER.sub(" ", raw.decode("utf-8").lower()))
        data = np.frombuffer(" ".join(big.split()).encode("utf-8"), dtype=np.uint8)
    data = np.append(data, np.uint8(SPACE))  # a pad byte, so the trims below can index
    seps = np.flatnonzero(data == 0)
    starts = np.concatenate([[0], seps + 1]).astype(np.int64)
    ends = np.concatenate([seps, [len(data) - 1]]).astype(np.int64)
    starts += (starts < ends) & (data[starts] == SPACE)
    ends -= (ends > starts) & (data[np.maximum(ends - 1, 0)] == SPACE)
    return data, starts, ends


@numba.njit(cache=True, inline="always")
def _rotl(x, n):
    return ((x << np.uint64(n)) | (x >> np.uint64(32 - n))) & M32


@numba.njit(cache=True, inline="always")
def _load_block(data, start, length, base, last, w):
    """Message schedule words 0..15 of the block at `base`, with SHA1 padding applied."""
    for t in range(16):
        pos = base + 4 * t
        if pos + 4 <= length:
            i = start + pos
            w[t] = (
                (np.uint64(data[i]) << np.uint64(24))
                | (np.uint64(data[i + 1]) << np.uint64(16))
                | (np.uint64(data[i + 2]) << np.uint64(8))
                | np.uint64(data[i + 3])
            )
        else:
            word = np.uint64(0)
            for j in range(4):
                byte = np.uint64(0)
                if pos + j < length:
                    byte = np.uint64(data[start + pos + j])
                elif pos + j == length:
                    byte = np.uint64(0x80)
                word = (word << np.uint64(8)) | byte
            w[t] = word
    if last:
        bits = np.uint64(length) * np.uint64(8)
        w[14], w[15] = bits >> np.uint64(32), bits & M32


@numba.njit(cache=True)
def _sha1(data, start, length, w, state):
    """SHA1 of data[start:start+length] into state[0..4] (big-endian words of the digest)."""
    state[0], state[1], state[2] = 0x67452301, 0xEFCDAB89, 0x98BADCFE
    state[3], state[4] = 0x10325476, 0xC3D2E1F0
    blocks = (length + 8) // 64 + 1
    for block in range(blocks):
        _load_block(data, start, length, block * 64, block == blocks - 1, w)
        for t in range(16, 80):
            w[t] = _rotl(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1)
        a, b, c, d, e = state[0], state[1], state[2], state[3], state[4]
        for t in range(20):
            f = (b & c) | ((~b & M32) & d)
            temp = (_rotl(a, 5) + f + e + np.uint64(0x5A827999) + w[t]) & M32
            a, b, c, d, e = temp, a, _rotl(b, 30), c, d
        for t in range(20, 40):
            temp = (_rotl(a, 5) + (b ^ c ^ d) + e + np.uint64(0x6ED9EBA1) + w[t]) & M32
            a, b, c, d, e = temp, a, _rotl(b, 30), c, d
        for t in range(40, 60):
            f = (b & c) | (b & d) | (c & d)
            temp = (_rotl(a, 5) + f + e + np.uint64(0x8F1BBCDC) + w[t]) & M32
            a, b, c, d, e = temp, a, _rotl(b, 30), c, d
        for t in range(60, 80):
            temp = (_rotl(a, 5) + (b ^ c ^ d) + e + np.uint64(0xCA62C1D6) + w[t]) & M32
            a, b, c, d, e = temp, a, _rotl(b, 30), c, d
        state[0] = (state[0] + a) & M32
        state[1] = (state[1] + b) & M32
        state[2] = (state[2] + c) & M32
        state[3] = (state[3] + d) & M32
        state[4] = (state[4] + e) & M32


@numba.njit(cache=True, inline="always")
def _bswap32(x):
    return (
        ((x & np.uint64(0xFF)) << np.uint64(24))
        | ((x & np.uint64(0xFF00)) << np.uint64(8))
        | ((x >> np.uint64(8)) & np.uint64(0xFF00))
        | (x >> np.uint64(24))
    )


@numba.njit(cache=True, inline="always")
def _fmix32(h):
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & M32
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & M32
    return h ^ (h >> np.uint64(16))


@numba.njit(cache=True)
def sha1_words(data, starts, ends):
    """(n, 5) uint64: the five big-endian 32-bit words of SHA1(data[starts[k]:ends[k]])."""
    out = np.zeros((len(starts), 5), dtype=np.uint64)
    w, state = np.zeros(80, dtype=np.uint64), np.zeros(5, dtype=np.uint64)
    for k in range(len(starts)):
        _sha1(data, starts[k], ends[k] - starts[k], w, state)
        out[k, :] = state
    return out


@numba.njit(cache=True)
def _cut_points(row, length, char_unit):
    """Start offsets of the units of `row` (words or code points), and their count."""
    cuts = np.empty(length + 1, dtype=np.int64)
    count = 0
    for i in range(length):
        if char_unit:
            if (row[i] & 0xC0) != 0x80:
                cuts[count] = i
                count += 1
        elif i == 0 or row[i - 1] == SPACE:
            cuts[count] = i
            count += 1
    return cuts, count


@numba.njit(cache=True)
def _row_minhash(row, length, char_unit, ngram, a, b, out, w, state):
    """Signature of one normalized row (row[:length]) into `out`; untouched when it is empty."""
    if length == 0:
        return
    cuts, units = _cut_points(row, length, char_unit)
    for i in range(max(1, units - ngram + 1)):
        last = i + ngram  # shingle = units i .. last-1
        if last >= units:
            end = length
        elif char_unit:
            end = cuts[last]
        else:
            end = cuts[last] - 1  # drop the space before the next word
        _sha1(row, cuts[i], end - cuts[i], w, state)
        h = _fmix32(_bswap32(state[0]))
        for k in range(len(a)):
            v = np.uint32((a[k] * h + b[k]) & M32)
            if v < out[k]:
                out[k] = v


@numba.njit(cache=True)
def minhash_rows(data, q_start, q_end, a_start, a_end, char_unit, ngram, a, b, with_exact):
    """Signatures (n, len(a)) uint32 and exact keys (n,) uint64 of rows q + " " + a.

    Row k's MinHash text is its question segment data[q_start[k]:q_end[k]] and answer segment,
    joined by a space when both are non-empty; its exact key is the first 8 bytes (little
    endian) of SHA1(question|||answer) when `with_exact`, else 0.
    """
    n = len(q_start)
    sigs = np.full((n, len(a)), np.uint32(0xFFFFFFFF), dtype=np.uint32)
    exact = np.zeros(n, dtype=np.uint64)
    longest = 0
    for k in range(n):
        longest = max(longest, q_end[k] - q_start[k] + a_end[k] - a_start[k])
    row = np.empty(longest + 3, dtype=np.uint8)
    a64, b64 = a.astype(np.uint64), b.astype(np.uint64)
    w, state = np.zeros(80, dtype=np.uint64), np.zeros(5, dtype=np.uint64)
    for k in range(n):
        nq, na = q_end[k] - q_start[k], a_end[k] - a_start[k]
        row[:nq] = data[q_start[k] : q_end[k]]
        if with_exact:
            row[nq : nq + 3] = 124  # "|||"
            row[nq + 3 : nq + 3 + na] = data[a_start[k] : a_end[k]]
            _sha1(row, 0, nq + 3 + na, w, state)
            exact[k] = _bswap32(state[0]) | (_bswap32(state[1]) << np.uint64(32))
        gap = 1 if nq > 0 and na > 0 else 0
        row[nq] = SPACE
        row[nq + gap : nq + gap + na] = data[a_start[k] : a_end[k]]
        _row_minhash(row, nq + gap + na, char_unit, ngram, a64, b64, sigs[k], w, state)
    return sigs, exact
