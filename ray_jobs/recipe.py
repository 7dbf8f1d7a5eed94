"""Recipes: one YAML file naming the pool, the run directory and each stage's settings.

Each section is a frozen dataclass with help text per field (`mmcurate run --help-recipe`
prints them). Unknown keys and wrong types are errors naming the key and the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ray_jobs.config_loading import ConfigError, build_config, load_yaml

__all__ = ["IngestSection", "Recipe", "load_recipe"]


def _help(text: str, **kwargs):
    return field(metadata={"help": text}, **kwargs)


@dataclass(frozen=True)
class IngestSection:
    check_media: bool = _help("open every media file far enough to know it decodes", default=True)
    source: str | None = _help(
        "source name for rows without one (default: file stem)", default=None
    )


@dataclass(frozen=True)
class Recipe:
    name: str = _help("a name for the run")
    input: str = _help("pool file (.json list, .jsonl, .parquet) or a directory of them")
    run: str = _help("run directory: every stage writes here")
    media_root: str | None = _help(
        "media paths resolve here (default: the input's folder)", default=None
    )
    num_cpus: int | None = _help("CPUs of the local Ray (ignored on a cluster)", default=None)
    ingest: IngestSection = _help("ingest settings", default=IngestSection())


def load_recipe(path: str) -> Recipe:
    """Read and validate a recipe; relative paths are taken relative to the recipe's folder."""
    data = load_yaml(path)
    recipe = build_config(Recipe, data, path)
    return _resolve_paths(recipe, path)


def _resolve_paths(recipe: Recipe, path: str) -> Recipe:
    import dataclasses
    import os

    base = os.path.dirname(os.path.abspath(path))

    def absolute(value):
        if value is None or "://" in value or os.path.isabs(value):
            return value
        return os.path.normpath(os.path.join(base, value))

    if not recipe.input:
        raise ConfigError(f"{path}: input: must name the pool")
    return dataclasses.replace(
        recipe,
        input=absolute(recipe.input),
        run=absolute(recipe.run),
        media_root=absolute(recipe.media_root),
    )
