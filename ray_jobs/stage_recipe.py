"""The recipe a stage command runs from: a stage command does what that stage does in
`mmcurate run` for the same run.

`mmcurate dedup --run RUN` and `mmcurate cluster --run RUN` read the run's resolved recipe
(`RUN/config.yaml`, written by `mmcurate run`) or `--recipe FILE`, build the stage's
configuration from it exactly as the pipeline does (ray_jobs/stages.py), and apply on top only
the flags the user gave, naming them. A run without a resolved recipe (a run made by stage
commands alone) takes the stage's defaults and the flags.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace

from operators import storage
from ray_jobs.recipe import Recipe, load_recipe

__all__ = ["given_flags", "stage_base", "stage_recipe"]


def stage_recipe(run: str, recipe_path: str | None) -> tuple[Recipe | None, str | None]:
    """(recipe, its path) for the stage command on `run`: --recipe, else RUN/config.yaml when
    it exists, else (None, None). The recipe's `run` is set to `run`."""
    path = recipe_path or storage.join(run, "config.yaml")
    if not storage.exists(path):
        if recipe_path:
            raise SystemExit(f"--recipe {recipe_path}: file not found")
        return None, None
    recipe = load_recipe(path)
    if os.path.abspath(recipe.run) != os.path.abspath(run):
        recipe = replace(recipe, run=run)
    return recipe, path


def given_flags(args: argparse.Namespace, exclude: tuple[str, ...] = ("run", "recipe")) -> dict:
    """dest -> value of the options the user gave (every option's default must be None)."""
    return {k: v for k, v in vars(args).items() if v is not None and k not in exclude}


def stage_base(stage: str, args: argparse.Namespace, from_recipe, default):
    """(the stage's configuration before the flags, the flags given): `from_recipe(recipe)`
    for the run's recipe, else `default`; says on the console which it is."""
    recipe, path = stage_recipe(args.run, args.recipe)
    given = given_flags(args)
    source = path or "the defaults"
    print(f"[mmcurate] {stage} settings from {source}; flags given: {given or 'none'}")
    return (from_recipe(recipe) if recipe else default), given
