"""The stages of a run, in order: each takes the recipe and returns its counts.

ingest -> proxy -> score -> dedup -> cluster -> select -> train -> report. A stage is
complete when each of its outputs carries its `_SUCCESS` marker (written last), so `mmcurate
run` skips it on a rerun and resumes a killed run at the first incomplete stage.
"""

from __future__ import annotations

import dataclasses
import os

from operators import storage
from ray_jobs.recipe import Recipe, select_config, train_config
from ray_jobs.rundir import is_complete

__all__ = ["STAGES", "score_steps_for", "stage_done", "stage_outputs"]


def _ingest(recipe: Recipe) -> dict:
    from ray_jobs.ingest import IngestConfig, ingest

    section = recipe.ingest
    config = IngestConfig(
        recipe.input,
        recipe.run,
        recipe.media_root,
        section.source,
        section.check_media,
        section.chunk_bytes,
        section.input_format,
        section.columns,
        section.on_duplicate_id,
    )
    return ingest(config)


def needs_proxy(recipe: Recipe) -> bool:
    """The proxy is warmed up only when a score step uses it."""
    section = recipe.score
    prompted = "prompted" in (section.styles, section.capabilities) or section.visual_embedding
    uses_proxy = prompted and not section.scorer_model
    return bool(section.descriptors) or section.ost != "none" or uses_proxy


def _proxy(recipe: Recipe) -> dict:
    from ray_jobs.proxy import proxy_warmup

    if not needs_proxy(recipe):
        return {"skipped": "no model descriptor needs the proxy"}
    metrics = proxy_warmup(recipe.run, recipe.proxy)
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}


def score_steps_for(recipe: Recipe) -> list:
    """The score stage's steps: CPU descriptors, model descriptors, OST utility, embeddings,
    styles, capabilities."""
    from operators.embeddings import TextEmbedConfig, TextEmbedder
    from operators.model_descriptors import DescriptorConfig, ModelDescriptors
    from operators.vlm_runtime import RuntimeConfig
    from ray_jobs.score import ScoreConfig, ScoreStep, score_steps

    section = recipe.score
    steps = score_steps(ScoreConfig(recipe.run, cpu=section.cpu))
    actors = (section.actors[0], section.actors[-1])
    on_vllm = section.generation_backend == "vllm" and "stability" in section.descriptors
    hf_groups = tuple(g for g in section.descriptors if not (on_vllm and g == "stability"))
    if hf_groups:
        runtime = RuntimeConfig(
            model=os.path.join(recipe.run, "proxy"), max_rows=section.model_batch_size
        )
        config = DescriptorConfig(
            runtime,
            descriptors=hf_groups,
            pism=section.pism,
            prompted_temporal=section.prompted_temporal and not on_vllm,
        )
        steps.append(
            ScoreStep(
                "model_descriptors",
                ModelDescriptors,
                fn_constructor_kwargs={"config": config},
                batch_size=section.model_batch_size,
                actors=actors,
                num_gpus=section.num_gpus,
            )
        )
    if on_vllm:
        steps.append(_vllm_step(recipe))
    if section.ost != "none":
        steps.append(_ost_step(recipe, actors))
    if section.text_embedding:
        config = TextEmbedConfig(model_path=section.text_model)
        steps.append(
            ScoreStep(
                "text_embedding",
                TextEmbedder,
                batch_size=256,
                actors=(1, 1),
                fn_constructor_kwargs={"config": config},
            )
        )
    if section.visual_embedding:
        steps.append(_visual_step(recipe, actors))
    steps += _mmssr_steps(recipe, actors)
    return steps


def _visual_step(recipe: Recipe, actors: tuple[int, int]):
    """The visual embedding (GDO's coverage feature) from the proxy's (or scorer's) vision path."""
    from operators.embeddings import VisualEmbedConfig, VisualEmbedder

    section = recipe.score
    model = section.scorer_model or os.path.join(recipe.run, "proxy")
    config = VisualEmbedConfig(model_path=model)
    return _model_step(recipe, "visual_embedding", VisualEmbedder, config, actors)


def _model_step(recipe: Recipe, name: str, operator: type, config, actors: tuple[int, int]):
    """A model actor-pool step with the score section's batch size and GPUs per actor."""
    from ray_jobs.score import ScoreStep

    section = recipe.score
    return ScoreStep(
        name,
        operator,
        fn_constructor_kwargs={"config": config},
        batch_size=section.model_batch_size,
        actors=actors,
        num_gpus=section.num_gpus,
    )


def _prompt_generator(recipe: Recipe):
    """mmSSR's prompted scorer / styler model: the proxy VLM (or `score.scorer_model`) on the
    HF runtime, greedy, with the sample's media."""
    from operators.prompted_generation import PromptGenerationConfig, VLMGenerate
    from operators.vlm_runtime import RuntimeConfig

    section = recipe.score
    model = section.scorer_model or os.path.join(recipe.run, "proxy")
    runtime = RuntimeConfig(model=model, max_rows=section.model_batch_size)
    return VLMGenerate(PromptGenerationConfig(runtime))


def _mmssr_steps(recipe: Recipe, actors: tuple[int, int]) -> list:
    """Styles and capability scores as the recipe asks (see ScoreSection)."""
    from operators.capabilities import (
        EmbeddingCapabilityScorer,
        EmbeddingScorerConfig,
        ImportedCapabilityScores,
        PromptedCapabilityScorer,
        PromptedScorerConfig,
    )
    from operators.styles import PromptedStyler, PromptedStylerConfig, RuleStyler
    from ray_jobs.score import ScoreStep

    section, steps = recipe.score, []
    model = {"actors": actors, "num_gpus": section.num_gpus, "batch_size": section.model_batch_size}
    styles = {True: "rules", False: "none"}.get(section.styles, section.styles)
    if styles == "rules":
        steps.append(ScoreStep("styles", RuleStyler("styles"), batch_size=1024))
    elif styles == "prompted":
        config = PromptedStylerConfig(with_media=True)
        kwargs = {"config": config, "make_generate": _prompt_generator(recipe)}
        steps.append(ScoreStep("styles", PromptedStyler, fn_constructor_kwargs=kwargs, **model))
    elif styles != "none":
        raise ValueError(f"score.styles must be rules, prompted or none, not {styles!r}")
    if section.capabilities == "prompted":
        config = PromptedScorerConfig(with_media=True)
        kwargs = {"config": config, "make_generate": _prompt_generator(recipe)}
        scorer = PromptedCapabilityScorer
        steps.append(ScoreStep("capabilities", scorer, fn_constructor_kwargs=kwargs, **model))
    elif section.capabilities == "embedding":
        config = EmbeddingScorerConfig(model_path=section.text_model)
        steps.append(
            ScoreStep(
                "capabilities",
                EmbeddingCapabilityScorer,
                batch_size=256,
                actors=(1, 1),
                fn_constructor_kwargs={"config": config},
            )
        )
    elif section.capabilities != "none":
        steps.append(
            ScoreStep(
                "capabilities",
                ImportedCapabilityScores,
                batch_size=1024,
                actors=(1, 1),
                fn_constructor_kwargs={"path": section.capabilities},
            )
        )
    return steps


def _vllm_step(recipe: Recipe):
    """Stability (and the prompted temporal demand) sampled by vLLM engines on GPUs."""
    from operators import storage
    from operators.vllm_generation import generation_descriptors
    from ray_jobs.score import ScoreStep

    section = recipe.score
    # An s3:// / gs:// model is downloaded to each engine's node by ray.data.llm itself.
    model = section.vllm.model or storage.join(recipe.run, "proxy")
    config = dataclasses.replace(
        section.vllm, model=model, prompted_temporal=section.prompted_temporal
    )
    return ScoreStep("generation", generation_descriptors, {"config": config}, on_dataset=True)


def _ost_step(recipe: Recipe, actors: tuple[int, int]):
    """OST utility on the warmed proxy; V is fixed from RUN/pool (held out from the warm-up)."""
    from operators.ost import OneStepUtility, OstConfig
    from operators.vlm_runtime import RuntimeConfig

    section = recipe.score
    config = OstConfig(
        RuntimeConfig(model=os.path.join(recipe.run, "proxy"), max_rows=section.model_batch_size),
        pool=os.path.join(recipe.run, "pool"),
        form=section.ost,
        eta=section.ost_eta,
        params=section.ost_params,
        target_ids=section.ost_target_ids,
        target_size=section.ost_target_size,
        target_pool=section.ost_target_pool,
        exclude_ids=os.path.join(recipe.run, "proxy", "train_ids.txt"),
    )
    return _model_step(recipe, "ost_utility", OneStepUtility, config, actors)


def _score(recipe: Recipe) -> dict:
    from ray_jobs.score import ScoreConfig, score

    config = ScoreConfig(
        recipe.run, cpu=recipe.score.cpu, shards_per_group=recipe.score.shards_per_group
    )
    return score(config, score_steps_for(recipe))


def dedup_config(recipe: Recipe):
    """The dedup stage's DedupConfig for `recipe` (also `mmcurate dedup --run RUN`)."""
    from ray_jobs.dedup import DedupConfig

    section = recipe.dedup
    return DedupConfig(
        recipe.run,
        text=section.text,
        media=section.media,
        exact=section.exact,
        near_text=section.near_text,
        near_media=section.near_media,
        partitions=section.partitions,
        semantic=section.semantic,
    )


def _dedup(recipe: Recipe) -> dict:
    from ray_jobs.dedup import dedup

    return dedup(dedup_config(recipe))


def cluster_config(recipe: Recipe):
    """The cluster stage's ClusterJobConfig for `recipe` (also `mmcurate cluster --run RUN`)."""
    from ray_jobs.cluster import ClusterJobConfig

    return ClusterJobConfig(recipe.run, kmeans=recipe.cluster, text_model=recipe.score.text_model)


def _cluster(recipe: Recipe) -> dict:
    from ray_jobs.cluster import cluster

    return cluster(cluster_config(recipe))


def _select(recipe: Recipe) -> dict:
    from ray_jobs.select import run_select

    counts = {}
    for spec in recipe.subsets:
        config = select_config(recipe, spec)
        counts[config.subset_name] = run_select(config)
    return {"subsets": len(counts), "per_subset": counts}


def _train(recipe: Recipe) -> dict:
    from ray_jobs.stage_progress import train_bar
    from ray_jobs.train import train

    results = {}
    for spec in recipe.train:
        config = train_config(recipe, spec)
        with train_bar(config):
            results[config.subset] = train(config)
    return {"runs": len(results), "per_run": results}


def _report(recipe: Recipe) -> dict:
    from ray_jobs.report import build_report

    return {"written": build_report(recipe.run)}


STAGES = {
    "ingest": _ingest,
    "proxy": _proxy,
    "score": _score,
    "dedup": _dedup,
    "cluster": _cluster,
    "select": _select,
    "train": _train,
    "report": _report,
}


def stage_outputs(recipe: Recipe, name: str) -> list[str]:
    """The directories (or files) a stage writes, removed before a rerun."""
    run = recipe.run
    join = storage.join
    if name == "select":
        return [join(run, "subsets", select_config(recipe, s).subset_name) for s in recipe.subsets]
    if name == "train":
        return [join(run, "train", train_config(recipe, s).subset) for s in recipe.train]
    return {
        "ingest": [join(run, "pool"), join(run, "quarantine", "ingest")],
        "proxy": [join(run, "proxy")] if needs_proxy(recipe) else [],
        "score": [join(run, "scored"), join(run, "quarantine", "score")],
        "dedup": [join(run, "dedup")],
        "cluster": [join(run, "clusters")],
        "report": [join(run, "report.html")],
    }[name]


def stage_done(recipe: Recipe, name: str) -> bool:
    if name == "report":
        return False  # cheap, and always reflects the latest outputs
    return all(is_complete(p) for p in stage_outputs(recipe, name))
