"""The block-wise JSONL cutter (works on object-store streams) against the readline reference
it replaced: the same chunk boundaries and first-line numbers for any file and block size."""

import os
import random

import operators.formats.readers as readers


def _readline_reference(path: str, chunk_bytes: int):
    size = os.path.getsize(path)
    start, line = 0, 0
    with open(path, "rb") as handle:
        while start < size:
            handle.seek(min(start + chunk_bytes, size))
            handle.readline()
            end = min(handle.tell(), size)
            handle.seek(start)
            newlines = handle.read(end - start).count(b"\n")
            yield start, end, line
            start, line = end, line + newlines


def test_jsonl_chunks_match_the_readline_reference(tmp_path, monkeypatch):
    rng = random.Random(0)
    path = str(tmp_path / "t.jsonl")
    for _ in range(150):
        lines = [b"x" * rng.randint(0, 30) for _ in range(rng.randint(0, 40))]
        data = b"\n".join(lines) + (b"\n" if rng.random() < 0.5 else b"")
        with open(path, "wb") as handle:
            handle.write(data)
        for chunk_bytes in (1, 2, 5, 17, 100, 10_000):
            monkeypatch.setattr(readers, "SCAN_BLOCK", rng.choice([1, 3, 64, 1 << 20]))
            got = list(readers._jsonl_chunks(path, chunk_bytes))
            assert got == list(_readline_reference(path, chunk_bytes))
            if data:
                assert got[0][0] == 0 and got[-1][1] == len(data)
