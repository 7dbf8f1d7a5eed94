"""The `mmcurate` command: one subcommand per job, each a module with `main(argv)`."""

from __future__ import annotations

import importlib
import sys

__all__ = ["main"]

# Subcommand -> module with main(argv). Imported on use so `mmcurate --help` stays fast.
COMMANDS = {
    "demo": "ray_jobs.demo",
    "run": "ray_jobs.run",
    "status": "ray_jobs.status",
    "recipe": "ray_jobs.recipe_init",
    "synth": "ray_jobs.synth",
    "ingest": "ray_jobs.ingest",
    "proxy": "ray_jobs.proxy",
    "score": "ray_jobs.score",
    "dedup": "ray_jobs.dedup",
    "cluster": "ray_jobs.cluster",
    "select": "ray_jobs.select",
    "train": "ray_jobs.train",
    "eval": "ray_jobs.evaluate",
    "report": "ray_jobs.report",
    "export": "ray_jobs.export",
    "bench": "ray_jobs.bench",
    # issue 15: the synthetic world's pretrained base model
    "base": "ray_jobs.base",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: mmcurate COMMAND [options]\n\ncommands:")
        for name, module in COMMANDS.items():
            print(f"  {name:10s} python -m {module}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
