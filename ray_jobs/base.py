"""`mmcurate base build [--out DIR]`: the synthetic world's pretrained base model.

Builds (or finds in the cache) the tiny Qwen2-VL pretrained on the synthetic renderer's
captions (training/base.py) and prints its folder. Without `--out` the model stays in the
user cache (`$MMCURATE_CACHE`, else `~/.cache/mmcurate`) under its content address, which is
where the proxy warm-up, the demo and `mmcurate bench quality` find it; with `--out` the
cached model is also copied there. `mmcurate base path` prints the folder without building.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import asdict

from training.base import MODEL_SIZES, BaseRecipe, base_key, cache_root, ensure_base

__all__ = ["main"]


def _recipe(args: argparse.Namespace) -> BaseRecipe:
    return BaseRecipe(
        seed=args.seed,
        captions=args.captions,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        size=args.size,
        threads=args.threads,
    )


def main(argv: list[str] | None = None) -> int:
    defaults = BaseRecipe()
    parser = argparse.ArgumentParser(prog="mmcurate base", description=__doc__)
    parser.add_argument("action", choices=["build", "path"])
    parser.add_argument("--out", default="", help="also copy the model to this folder")
    parser.add_argument("--cache", default="", help="cache folder (default: the user cache)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--captions", type=int, default=defaults.captions, help="corpus rows")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.learning_rate)
    parser.add_argument("--size", choices=sorted(MODEL_SIZES), default=defaults.size)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    args = parser.parse_args(argv)
    recipe = _recipe(args)
    root = os.path.abspath(args.cache) if args.cache else cache_root()
    if args.action == "path":
        print(os.path.join(root, "base", base_key(recipe)))
        return 0
    print(f"[mmcurate] base recipe: {asdict(recipe)} key {base_key(recipe)}", flush=True)
    started = time.time()
    folder = ensure_base(recipe, root)
    if args.out:
        shutil.rmtree(args.out, ignore_errors=True)
        shutil.copytree(folder, args.out)
        folder = os.path.abspath(args.out)
    with open(os.path.join(folder, "base.json")) as handle:
        figures = json.load(handle)
    print(
        f"[mmcurate] base: {folder} (built in {figures['build_s']}s; "
        f"this call {time.time() - started:.1f}s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
