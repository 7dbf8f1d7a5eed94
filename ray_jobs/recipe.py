"""Recipes: one YAML file naming the pool, the run directory and each stage's settings.

Each section is a frozen dataclass; most are the stage's own config class, so a recipe key is
exactly a job option. Subsets and trainings are lists whose items are validated as
`SelectJobConfig` / `TrainJobConfig` (without `run`, which the recipe gives); `subset_defaults`
and `train_defaults` are merged under every item (nested mappings key by key, the item's own
value wins), so a recipe states a shared setting once. Unknown keys and wrong types are
`ConfigError`s naming the file and the key (`recipe.yaml: score.batch_size`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from operators.clustering import ClusterConfig
from operators.minhash import MinHashConfig
from operators.motion import MotionConfig
from operators.phash import MediaHashConfig
from operators.pism import PismConfig
from operators.semdedup import SemanticConfig
from operators.vllm_generation import VllmConfig
from ray_jobs.config_loading import ConfigError, build_config, load_yaml
from training.warmup import WarmupConfig

__all__ = [
    "DedupSection",
    "IngestSection",
    "Recipe",
    "ScoreSection",
    "load_recipe",
    "merge_defaults",
    "select_config",
    "train_config",
]


@dataclass(frozen=True)
class IngestSection:
    check_media: bool = True  # open every media file far enough to know it decodes
    source: str | None = None  # source name for rows without one (default: the file stem)
    chunk_bytes: int | None = None  # JSONL bytes per chunk / output shard; None: by size
    input_format: str | None = None  # force json, jsonl or parquet; None: detected by content
    # the input's field / column names mapped to ours, e.g. {img: images, chat: messages}
    columns: dict[str, str] | None = None
    on_duplicate_id: str = "quarantine"  # a repeated id: "quarantine" or "rename" (X#dup1, ..)


@dataclass(frozen=True)
class ScoreSection:
    """Which descriptors the streaming score stage computes, and with what resources."""

    cpu: MotionConfig = field(default_factory=MotionConfig)  # motion, frame_div, media facts
    # model descriptor groups on the proxy: loss, temporal, stability, pism, cmab
    descriptors: tuple[str, ...] = ("loss", "temporal", "stability", "pism", "cmab")
    pism: PismConfig = field(default_factory=PismConfig)
    prompted_temporal: bool = False  # GDO's Temporal/Static prompt (instruction-tuned proxy)
    # stability and prompted temporal on: "hf" (the actor pool, any machine) or "vllm"
    # (ray.data.llm engines on GPUs; `vllm` holds their settings, model "" = RUN/proxy)
    generation_backend: str = "hf"
    vllm: VllmConfig = field(default_factory=VllmConfig)
    text_embedding: bool = True  # all-MiniLM-L6-v2 (or text_model) embedding of q + a
    text_model: str | None = None  # sentence model directory or URI; None: bundled MiniLM
    # GDO's coverage feature from the VLM's vision path (`visual_embedding`, the proxy or
    # `scorer_model`); cluster on it with `cluster: {embedding_column: visual_embedding}`
    visual_embedding: bool = False
    # mmSSR interaction styles: true / "rules" (rule-based), "prompted" (mmSSR's styler prompt
    # through the proxy VLM with the sample's media), false / "none"
    styles: bool | str = True
    # mmSSR's 14 capability scores: "prompted" (mmSSR's scorer prompt through the proxy VLM with
    # the sample's media), "embedding" (an approximation: prototype similarity), "none", or a
    # file of id -> cap scores
    capabilities: str = "embedding"
    scorer_model: str | None = None  # model for the prompted scorer / styler; None: RUN/proxy
    ost: str = "first_order"  # OST one-step utility: "first_order", "exact" or "none"
    ost_eta: float = 1e-3  # OST step size η
    ost_target_size: int = 64  # OST target set V: stratified sample of the pool (by category)
    ost_target_ids: str | None = None  # or: a file of target ids, one per line
    # or (recommended): a clean held-out pool V is sampled from, never the ranked pool with its
    # wrong answers (a synthetic pool directory with ground_truth.parquet, or Parquet shards)
    ost_target_pool: str | None = None
    ost_params: tuple[str, ...] = ("lm_head",)  # parameter-name prefixes the step moves
    model_batch_size: int = 16  # rows per model-descriptor batch
    actors: tuple[int, ...] = (1, 2)  # (min, max) actors per model step
    num_gpus: float = 0.0  # GPUs per model actor (0 on CPU machines)
    shards_per_group: int = 4  # input shards per Ray Data pass (the resume granularity)


@dataclass(frozen=True)
class DedupSection:
    text: MinHashConfig = field(default_factory=MinHashConfig)
    media: MediaHashConfig = field(default_factory=MediaHashConfig)
    exact: bool = True  # GDO's SHA1(question|||answer)
    near_text: bool = True
    near_media: bool = True
    partitions: int = 8
    semantic: SemanticConfig = field(default_factory=SemanticConfig)  # SemDeDup edges (off)


@dataclass(frozen=True)
class Recipe:
    name: str  # a name for the run
    input: str  # pool file (.json list, .jsonl, .parquet) or a directory of them
    run: str  # run directory: every stage writes here
    media_root: str | None = None  # media paths resolve here (default: the input's folder)
    num_cpus: int | None = None  # CPUs of a local Ray (ignored when joining a cluster)
    # the stages to run, in pipeline order; default: all of them
    stages: tuple[str, ...] = (
        "ingest",
        "proxy",
        "score",
        "dedup",
        "cluster",
        "select",
        "train",
        "report",
    )
    ingest: IngestSection = field(default_factory=IngestSection)
    # the proxy: `base` = a local model directory; "" builds a tiny Qwen2-VL offline
    proxy: WarmupConfig = field(default_factory=lambda: WarmupConfig(base=""))
    score: ScoreSection = field(default_factory=ScoreSection)
    dedup: DedupSection = field(default_factory=DedupSection)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    subsets: tuple[dict[str, Any], ...] = ()  # each: `mmcurate select` options (name, method..)
    subset_defaults: dict[str, Any] = field(default_factory=dict)  # merged under each subset
    train: tuple[dict[str, Any], ...] = ()  # each: `mmcurate train` options (subset, algo, ...)
    train_defaults: dict[str, Any] = field(default_factory=dict)  # merged under each train item


def merge_defaults(defaults: dict, item: dict) -> dict:
    """`item` over `defaults`: nested mappings merged key by key, anything else the item's."""
    merged = dict(defaults)
    for key, value in item.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_defaults(merged[key], value)
        else:
            merged[key] = value
    return merged


def select_config(recipe: Recipe, spec: dict, where: str = "subsets"):
    from ray_jobs.select import SelectJobConfig

    return build_config(SelectJobConfig, {**spec, "run": recipe.run}, where)


def train_config(recipe: Recipe, spec: dict, where: str = "train"):
    from ray_jobs.train import PLACEHOLDERS, TrainJobConfig

    data = {**spec, "run": recipe.run}
    for section in ("sft", "grpo"):  # model / rows / out are the job's to fill in
        if isinstance(data.get(section), dict):
            data[section] = {**PLACEHOLDERS, **data[section]}
    return build_config(TrainJobConfig, data, where)


def load_recipe(path: str) -> Recipe:
    """Read and validate a recipe; relative paths are taken relative to the recipe's folder."""
    data = load_yaml(path)
    if isinstance(data.get("proxy"), dict):  # base "" (a tiny model) unless the recipe says
        data["proxy"] = {"base": "", **data["proxy"]}
    recipe = build_config(Recipe, data, f"{path}:")
    base = os.path.dirname(os.path.abspath(path))

    def absolute(value):
        if not value or "://" in value or os.path.isabs(value):
            return value
        return os.path.normpath(os.path.join(base, value))

    proxy = dataclasses.replace(recipe.proxy, base=absolute(recipe.proxy.base))
    recipe = dataclasses.replace(
        recipe,
        input=absolute(recipe.input),
        run=absolute(recipe.run),
        media_root=absolute(recipe.media_root),
        proxy=proxy,
        # the defaults are merged in here; the resolved recipe states each item in full
        subsets=tuple(merge_defaults(recipe.subset_defaults, s) for s in recipe.subsets),
        subset_defaults={},
        train=tuple(merge_defaults(recipe.train_defaults, t) for t in recipe.train),
        train_defaults={},
    )
    if recipe.score.generation_backend not in ("hf", "vllm"):
        raise ConfigError(
            f"{path}: score.generation_backend: {recipe.score.generation_backend!r} is not "
            "'hf' or 'vllm'"
        )
    if recipe.score.styles not in (True, False, "rules", "prompted", "none"):
        raise ConfigError(
            f"{path}: score.styles: {recipe.score.styles!r} is not rules, prompted or none"
        )
    for where, specs, build in (
        ("subsets", recipe.subsets, select_config),
        ("train", recipe.train, train_config),
    ):
        for i, spec in enumerate(specs):
            if "run" in spec:
                raise ConfigError(f"{path}: {where}[{i}]: 'run' is set by the recipe")
            build(recipe, spec, f"{path}: {where}[{i}]:")
    names = [select_config(recipe, s).subset_name for s in recipe.subsets]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: subsets: two subsets share a name ({names})")
    return recipe
