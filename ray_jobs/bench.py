"""`mmcurate bench NAME`: benchmarks that ship with the package (today: `quality`)."""

from __future__ import annotations

import importlib

__all__ = ["BENCHMARKS", "main"]

BENCHMARKS = {"quality": "ray_jobs.quality"}


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    if not argv or argv[0] not in BENCHMARKS:
        print("usage: mmcurate bench {" + ",".join(BENCHMARKS) + "} [options]")
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    return importlib.import_module(BENCHMARKS[argv[0]]).main(argv[1:])
