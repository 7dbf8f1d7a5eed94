"""`mmcurate score`: the streaming score stage, `RUN/pool/` -> `RUN/scored/` (+ quarantine).

One Ray Data pass per group of input shards: read shard -> descriptor steps, in order -> the
driver gathers the group's rows by shard and writes `scored/part-NNNNN.parquet` (one row per
input row that could be scored, every input column kept, descriptor columns added) and
`quarantine/score/part-NNNNN.parquet` (rows whose media cannot be decoded, with the reason).
Output shards are named after their input shard and written atomically, scored file last, so
a rerun skips every shard already written; `_SUCCESS` with the counts comes at the very end and
`input = scored + quarantined` holds per shard and in total.

A step is one `map_batches` over pyarrow batches: a function (CPU tasks) or a callable class
run by an actor pool (model-based descriptors, `num_gpus` per actor); or, with `on_dataset`, a
Dataset -> Dataset transform that keeps one row per row (the vLLM generation descriptors,
operators/vllm_generation.py). Steps see a `score_error` column and pass rows that already
failed through untouched. Adding a descriptor is one more `ScoreStep` in `score_steps`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import pyarrow as pa
import pyarrow.compute as pc

from operators import storage
from operators.formats.writers import write_parquet_atomic
from operators.motion import MotionConfig, describe_media
from operators.row_errors import with_rows_read
from operators.schema import QUARANTINE_SCHEMA
from ray_jobs.rundir import ensure_ray, finish_sharded_stage, is_complete, read_counts, stage_line

__all__ = ["ScoreConfig", "ScoreStep", "main", "score", "score_steps"]

STAGE = "score"
INTERNAL = ("_shard", "_pos")


@dataclass(frozen=True)
class ScoreConfig:
    """The score stage (help on each field)."""

    run: str  # run directory: reads RUN/pool (unless `input`), writes RUN/scored
    input: str | None = None  # Parquet shards with ROW_SCHEMA; default RUN/pool
    cpu: MotionConfig = field(default_factory=MotionConfig)  # motion, frame_div, media facts
    shards_per_group: int = 4  # input shards per Ray Data pass (the resume granularity)
    batch_size: int = 32  # rows per CPU descriptor batch

    def input_dir(self) -> str:
        return self.input or storage.join(self.run, "pool")


@dataclass(frozen=True)
class ScoreStep:
    """One `map_batches` of the stage: a function, or a class run by an actor pool."""

    name: str
    fn: Callable  # (pa.Table, **fn_kwargs) -> pa.Table, or a class with __call__
    fn_kwargs: dict = field(default_factory=dict)
    fn_constructor_kwargs: dict = field(default_factory=dict)  # for a class
    batch_size: int | None = 32
    actors: tuple[int, int] | None = None  # (min, max) actor pool size for a class
    num_gpus: float = 0.0  # GPUs per task / actor
    on_dataset: bool = False  # fn(dataset, **fn_kwargs) -> dataset instead of map_batches


def score_steps(config: ScoreConfig) -> list[ScoreStep]:
    """The stage's steps in order; CPU descriptors first (later issues append model steps)."""
    cpu = config.cpu
    if not (cpu.motion or cpu.frame_div or cpu.media_facts):
        return []
    return [ScoreStep("cpu_descriptors", describe_media, {"config": cpu}, config.batch_size)]


def _read_shard(batch: dict) -> pa.Table:
    path, shard = str(batch["path"][0]), int(batch["shard"][0])
    table = storage.read_parquet(path)
    table = table.append_column("_shard", pa.array([shard] * table.num_rows, pa.int64()))
    return table.append_column("_pos", pa.array(range(table.num_rows), pa.int64()))


# Retries: Ray Data's own defaults, kept on purpose (ray/data/_internal/remote_fn.py and
# actor_pool_map_operator.py in ray 2.60): every map task is retried on system failure without
# limit (`max_retries=-1`), and actor-pool workers are restarted and their lost batches
# retried without limit (`max_restarts=-1`, `max_task_retries=-1`). A task lost with its node
# is resubmitted elsewhere (tests/ray_jobs/test_node_failure.py). Row errors never reach these
# retries: each step turns them into the row's quarantine entry. The steps pass no retry
# arguments of their own: remote arguments that differ between a task step and the actor step
# after it stop Ray Data from fusing them, and the unfused read task then waits for a CPU that
# the actor pools hold (a deadlock on a 2-CPU cluster).


def _apply(dataset, step: ScoreStep):
    import ray

    if step.on_dataset:
        return step.fn(dataset, **step.fn_kwargs)
    options = {"batch_size": step.batch_size, "batch_format": "pyarrow"}
    if step.num_gpus:
        options["num_gpus"] = step.num_gpus
    if isinstance(step.fn, type):
        low, high = step.actors or (1, 1)
        return dataset.map_batches(
            step.fn,
            fn_constructor_kwargs=step.fn_constructor_kwargs,
            fn_kwargs=step.fn_kwargs,
            compute=ray.data.ActorPoolStrategy(min_size=low, max_size=high),
            **options,
        )
    return dataset.map_batches(step.fn, fn_kwargs=step.fn_kwargs, **options)


def _quarantine(bad: pa.Table) -> pa.Table:
    """Failed rows in QUARANTINE_SCHEMA, the row itself (media paths, text) as `raw` JSON."""
    raw_columns = ["id", "source", "media_type", "media", "messages", "answer"]
    raws = [json.dumps(r) for r in bad.select(raw_columns).to_pylist()]
    return pa.table(
        {
            "id": bad.column("id"),
            "origin": bad.column("origin"),
            "error_stage": pa.array([STAGE] * bad.num_rows),
            "reason": bad.column("score_reason"),
            "error": bad.column("score_error"),
            "raw": pa.array(raws, pa.string()),
        },
        schema=QUARANTINE_SCHEMA,
    )


def _write_shard(table: pa.Table, name: str, run: str, input_rows: int) -> None:
    """Write a shard's scored and quarantined rows; they must be exactly its input rows."""
    if table.num_rows != input_rows or (
        input_rows and sorted(table.column("_pos").to_pylist()) != list(range(input_rows))
    ):
        raise RuntimeError(
            f"score shard {name}: read {input_rows} input rows, but the steps returned "
            f"{table.num_rows} rows (positions not one per input row)"
        )
    table = table.sort_by("_pos")
    failed = (
        pc.is_valid(table.column("score_error")) if "score_error" in table.column_names else None
    )
    good = table if failed is None else table.filter(pc.invert(failed))
    bad = None if failed is None else table.filter(failed)
    quarantine = _quarantine(bad) if bad is not None else QUARANTINE_SCHEMA.empty_table()
    quarantine = with_rows_read(quarantine, input_rows)
    write_parquet_atomic(quarantine, storage.join(run, "quarantine", STAGE, name))
    drop = [c for c in (*INTERNAL, "score_error") if c in good.column_names]
    write_parquet_atomic(good.drop_columns(drop), storage.join(run, "scored", name))


def _run_group(group: list[tuple[int, str]], steps: list[ScoreStep], config: ScoreConfig):
    import ray

    items = [{"path": path, "shard": shard} for shard, path in group]
    dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        _read_shard, batch_size=1, batch_format="numpy"
    )
    for step in steps:
        dataset = _apply(dataset, step)
    parts: dict[int, list[pa.Table]] = {shard: [] for shard, _ in group}
    for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
        for shard in pc.unique(batch.column("_shard")).to_pylist():
            parts[shard].append(batch.filter(pc.equal(batch.column("_shard"), shard)))
    paths = dict(group)
    for shard, tables in parts.items():
        if tables:
            table = pa.concat_tables(tables)
        else:
            table = _empty_like(storage.read_schema(paths[shard]), steps)
        input_rows = storage.parquet_file(paths[shard]).metadata.num_rows
        _write_shard(table, os.path.basename(paths[shard]), config.run, input_rows)


def _empty_like(source: pa.Schema, steps: list[ScoreStep]) -> pa.Table:
    """An empty input shard still gets its (empty) outputs, with the descriptor columns."""
    table = source.empty_table()
    table = table.append_column("_shard", pa.array([], pa.int64()))
    table = table.append_column("_pos", pa.array([], pa.int64()))
    for step in steps:
        plain_function = not (isinstance(step.fn, type) or step.on_dataset)
        table = step.fn(table, **step.fn_kwargs) if plain_function else table
    return table


def _finish(run: str, names: list[str], steps: list[ScoreStep]) -> dict:
    scored, quarantine = storage.join(run, "scored"), storage.join(run, "quarantine", STAGE)
    provenance = step_provenance(steps)

    def extra(kept_dir: str, shard_names: list[str]) -> dict:
        return unparsable_counts(kept_dir, shard_names) | provenance

    return finish_sharded_stage(scored, quarantine, names, extra)


def step_provenance(steps: list[ScoreStep]) -> dict:
    """What the stage's counts record about where a step's inputs came from: OST's target
    set V (`ost_target`, operators/ost.py: target_source), which the subset manifests of
    OST selections repeat."""
    from operators.ost import target_source

    for step in steps:
        if step.name == "ost_utility":
            return {"ost_target": target_source(step.fn_constructor_kwargs["config"])}
    return {}


def unparsable_counts(scored: str, names: list[str]) -> dict:
    """{"unparsable": {"capabilities": {reason: replies}, "styles": {reason: rows}}}: the
    prompted scorer's / styler's replies that gave no score or style (absent: not prompted)."""
    caps: dict[str, int] = {}
    styles: dict[str, int] = {}
    seen: set[str] = set()
    for name in names:
        path = storage.join(scored, name)
        present = set(storage.read_schema(path).names) & {"capability_errors", "style_error"}
        if not present:
            continue
        seen |= present
        table = storage.read_parquet(path, columns=sorted(present))
        if "capability_errors" in present:
            for text in table.column("capability_errors").drop_null().to_pylist():
                for reason in json.loads(text).values():
                    caps[reason] = caps.get(reason, 0) + 1
        if "style_error" in present:
            for reason in table.column("style_error").drop_null().to_pylist():
                styles[reason] = styles.get(reason, 0) + 1
    found = {"capabilities": caps} if "capability_errors" in seen else {}
    found |= {"styles": styles} if "style_error" in seen else {}
    return {"unparsable": found} if found else {}


def score(config: ScoreConfig, steps: list[ScoreStep] | None = None) -> dict:
    """Run the stage (resuming per shard); returns counts {input, kept, quarantined, reasons}."""
    scored_dir = storage.join(config.run, "scored")
    if is_complete(scored_dir):
        return read_counts(scored_dir)
    ensure_ray()
    steps = score_steps(config) if steps is None else steps
    names = [n for n in storage.listdir(config.input_dir()) if n.endswith(".parquet")]
    written = set(storage.listdir(scored_dir))
    todo = [
        (k, storage.join(config.input_dir(), n)) for k, n in enumerate(names) if n not in written
    ]
    size = max(1, config.shards_per_group)
    for start in range(0, len(todo), size):
        _run_group(todo[start : start + size], steps, config)
    return _finish(config.run, names, steps)


def _recipe_path(args) -> str | None:
    """The recipe whose score stage to run: --recipe, else the run's resolved RUN/config.yaml
    (written by `mmcurate run`); None with --cpu-only."""
    if args.cpu_only:
        if args.recipe:
            raise SystemExit("--cpu-only and --recipe exclude each other")
        return None
    if args.cpu_flags_given:
        raise SystemExit("--frames / --no-* pick CPU descriptors only: add --cpu-only")
    path = args.recipe or storage.join(args.run, "config.yaml")
    if not storage.exists(path):
        raise SystemExit(
            f"{path} not found: `mmcurate score --run RUN` computes the run's score stage from "
            "its resolved recipe (written by `mmcurate run`); pass --recipe FILE, or --cpu-only "
            "for motion, frame_div and media facts alone"
        )
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mmcurate score", description=__doc__)
    parser.add_argument("--run", required=True, help="run directory")
    parser.add_argument("--recipe", default=None, help="recipe file (default RUN/config.yaml)")
    parser.add_argument(
        "--cpu-only", action="store_true", help="only the CPU descriptors, no recipe"
    )
    parser.add_argument("--input", default=None, help="Parquet pool shards; default RUN/pool")
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--no-motion", action="store_true", help="skip motion")
    parser.add_argument("--no-frame-div", action="store_true", help="skip frame_div")
    parser.add_argument("--no-media-facts", action="store_true", help="skip media facts")
    parser.add_argument("--shards-per-group", type=int, default=None)
    args = parser.parse_args(argv)
    args.cpu_flags_given = args.frames is not None or (
        args.no_motion or args.no_frame_div or args.no_media_facts
    )
    recipe_path = _recipe_path(args)
    steps, shards = None, args.shards_per_group or ScoreConfig.shards_per_group
    if recipe_path is None:
        cpu = MotionConfig(
            frames=args.frames or MotionConfig.frames,
            motion=not args.no_motion,
            frame_div=not args.no_frame_div,
            media_facts=not args.no_media_facts,
        )
    else:
        from ray_jobs.recipe import load_recipe
        from ray_jobs.stages import score_steps_for

        recipe = load_recipe(recipe_path)
        if os.path.abspath(recipe.run) != os.path.abspath(args.run):
            recipe = replace(recipe, run=args.run)
        cpu, steps = recipe.score.cpu, score_steps_for(recipe)
        shards = args.shards_per_group or recipe.score.shards_per_group
        print(f"[mmcurate] score steps of {recipe_path}: {[s.name for s in steps]}")
    config = ScoreConfig(args.run, args.input, cpu, shards)
    print(f"[mmcurate] score config: {asdict(config)}")
    started = time.time()
    counts = score(config, steps)
    print(stage_line(STAGE, counts, started))
    print(f"[mmcurate] quarantined by reason: {counts['reasons']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
