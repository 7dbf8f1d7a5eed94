"""`mmcurate recipe init --input POOL [--out recipe.yaml]`: a commented starter recipe.

Every section is written with its defaults spelled out (the values the loader would use if
the key were absent) and each key's comment taken from its config class, so a new user edits
values instead of looking names up. The file loads back through `load_recipe` unchanged.
Subsets and trainings get a small example (GDO Temp+, random, full; SFT on each) with the
shared training settings stated once under `train_defaults`.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import re

from ray_jobs.config_loading import to_plain
from ray_jobs.recipe import Recipe

__all__ = ["main", "starter_recipe"]

_COMMENT = re.compile(r"^\s+(\w+):[^#]*#\s*(.+)$")
_SECTIONS = ("ingest", "proxy", "score", "dedup", "cluster")


def _comments(cls) -> dict[str, str]:
    """Each field's trailing `# comment` in the class source (the help a user needs)."""
    comments = {}
    for line in inspect.getsource(cls).splitlines():
        match = _COMMENT.match(line)
        if match:
            comments[match.group(1)] = match.group(2).strip()
    return comments


def _scalar(value) -> str:
    return json.dumps(value)  # JSON scalars and lists are YAML


def _block(config, indent: str) -> list[str]:
    """`key: value  # comment` lines of a config dataclass (nested ones as sub-blocks)."""
    lines, comments = [], _comments(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        note = f"  # {comments[field.name]}" if field.name in comments else ""
        if dataclasses.is_dataclass(value):
            lines.append(f"{indent}{field.name}:{note}")
            lines += _block(value, indent + "  ")
        else:
            lines.append(f"{indent}{field.name}: {_scalar(to_plain(value))}{note}")
    return lines


def _pool_facts(path: str) -> str:
    """A comment line on the pool (its size; lines for JSONL)."""
    if not os.path.isfile(path):
        return f"# input: {path} (a folder or a file to be created)"
    size = os.path.getsize(path)
    facts = f"{size / 1e6:.1f} MB"
    if path.endswith(".jsonl"):
        with open(path, "rb") as handle:
            facts += f", {sum(1 for _ in handle)} lines"
    return f"# input: {path} ({facts})"


def starter_recipe(pool: str, run: str | None = None, pool_file: str | None = None) -> str:
    """The starter recipe text for `pool` (relative paths are taken from the recipe's folder;
    `pool_file`: where the pool is from here, to describe it)."""
    name = os.path.splitext(os.path.basename(pool.rstrip("/")))[0] or "pool"
    defaults = Recipe(name=name, input=pool, run=run or os.path.join("runs", name))
    comments = _comments(Recipe)
    lines = [
        f"# mmcurate recipe for {name}: `mmcurate run THIS_FILE` (`--dry-run` shows the plan).",
        _pool_facts(pool_file or pool),
        "# Every value below is the default; delete a line to keep it, edit it to change it.",
        "",
    ]
    for key in ("name", "input", "run", "media_root", "num_cpus", "stages"):
        note = f"  # {comments[key]}" if key in comments else ""
        lines.append(f"{key}: {_scalar(to_plain(getattr(defaults, key)))}{note}")
    for key in _SECTIONS:
        lines += ["", f"{key}:"] + _block(getattr(defaults, key), "  ")
    lines += [
        "",
        "# Subsets: each item is `mmcurate select` options (method, preset, budget, order, ...).",
        "subsets:",
        "  - {name: gdo-temp+, method: gdo, preset: temp+, budget: 0.3}",
        "  - {name: random-30, method: random, budget: 0.3}",
        "  - {name: full, method: full}",
        "",
        "# Training: `train_defaults` is merged under every `train` item (the item wins).",
        "train_defaults:",
        "  algo: sft  # sft | grpo | hierarchical",
        '  model: ""  # model directory; "" builds the tiny offline model',
        "train:",
        "  - {subset: gdo-temp+}",
        "  - {subset: random-30}",
        "  - {subset: full}",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mmcurate recipe", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    init = sub.add_parser("init", help="write a commented starter recipe for a pool")
    init.add_argument("--input", required=True, help="pool file or folder")
    init.add_argument("--out", default="recipe.yaml", help="recipe to write")
    init.add_argument("--run", default=None, help="run directory (default runs/NAME)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    args = parser.parse_args(argv)
    if os.path.exists(args.out) and not args.force:
        raise SystemExit(f"{args.out} exists; --force overwrites it")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    pool = os.path.relpath(os.path.abspath(args.input), out_dir)
    with open(args.out, "w") as handle:
        handle.write(starter_recipe(pool, args.run, args.input))
    print(f"[mmcurate] wrote {args.out}; `mmcurate run {args.out} --dry-run` shows the plan")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
