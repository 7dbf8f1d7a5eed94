"""`mmcurate run RECIPE`: every stage of a recipe, in order, skipping what is complete.

Stages write a completion marker last, so a killed run resumes where it stopped (finished
shards are kept). Each marker records the fingerprint of the configuration and inputs that
produced it (ray_jobs/fingerprints.py): when the recipe changed, the stage whose configuration
changed and every stage after it rerun, and the plan prints the changed keys. `--from
STAGE` reruns that stage and all after it (their outputs are removed first); `--only STAGE`
reruns one stage; `--dry-run` prints the resolved recipe and the plan without running.
The console shows one line per stage start and end, a bar per long step and a summary table;
Ray's own output goes to RUN/logs/ unless `-v` (ray_jobs/console.py).
Also `ray job submit --working-dir . -- python -m ray_jobs.run RECIPE` on a cluster, where
`input`, `media_root` and `run` may be object-store URIs (docs/storage.md).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import time

import yaml

from operators import storage
from ray_jobs.config_loading import to_plain
from ray_jobs.console import CONSOLE, advise, quiet_ray_logging, say, set_verbose, verbose
from ray_jobs.fingerprints import (
    changed_keys,
    record_complete,
    record_started,
    recorded,
    stage_fingerprints,
)
from ray_jobs.recipe import Recipe, load_recipe
from ray_jobs.rundir import ensure_ray, stage_line
from ray_jobs.stage_progress import stage_bar
from ray_jobs.stages import STAGES, stage_done, stage_outputs

__all__ = ["main", "plan", "run_recipe"]


def plan(recipe: Recipe, from_stage: str | None = None, only: str | None = None) -> list:
    """(stage, action) for each stage: 'run', 'rerun ...' or 'skip ...'.

    Without --from / --only, a complete stage is skipped when the fingerprint its markers
    record is the recipe's; otherwise it reruns ('rerun (changed: KEYS)'), and so does every
    later stage: their inputs are being rewritten."""
    names = list(STAGES)
    for name in (from_stage, only):
        if name is not None and name not in names:
            raise SystemExit(f"unknown stage {name!r}; stages: {', '.join(names)}")
    unknown = sorted(set(recipe.stages) - set(names))
    if unknown:
        raise SystemExit(f"recipe names unknown stage {unknown[0]!r}; stages: {', '.join(names)}")
    fingerprints = stage_fingerprints(recipe, [n for n in names if n in recipe.stages])
    steps, upstream_runs = [], False
    for index, name in enumerate(names):
        if name not in recipe.stages:
            action = "skip (not in recipe)"
        elif only is not None:
            action = "rerun" if name == only else "skip (not selected)"
        elif from_stage is not None and index >= names.index(from_stage):
            action = "rerun"
        else:
            action = _fingerprint_action(recipe, name, fingerprints[name], upstream_runs)
            upstream_runs = upstream_runs or not action.startswith("skip")
        steps.append((name, action))
    return steps


def _fingerprint_action(recipe: Recipe, name: str, current: tuple, upstream_runs: bool) -> str:
    fingerprint, config = current
    outputs = stage_outputs(recipe, name)
    done = stage_done(recipe, name)
    if done and not outputs:
        return "skip (complete)"  # nothing to write (no subsets, no proxy needed)
    before = recorded(recipe, name, outputs)
    if before is not None and before["fingerprint"] != fingerprint:
        return f"rerun (changed: {', '.join(changed_keys(before['config'], config))})"
    if not done:
        return "run"
    if upstream_runs:
        return "rerun (an earlier stage reruns)"
    if before is None:
        return f"rerun (changed: {', '.join(changed_keys(None, config))})"
    return "skip (complete)"


def _write_resolved(recipe: Recipe) -> None:
    text = yaml.safe_dump(to_plain(recipe), sort_keys=False)
    storage.write_text(storage.join(recipe.run, "config.yaml"), text)


def run_recipe(recipe: Recipe, from_stage: str | None = None, only: str | None = None) -> dict:
    """Run the plan; returns each executed stage's counts. Ends with the summary table."""
    from ray_jobs.status import record_seconds, stage_status, summary_table

    steps = plan(recipe, from_stage, only)
    _write_resolved(recipe)
    quiet_ray_logging(os.path.join(recipe.run, "logs"))
    ensure_ray(recipe.num_cpus)
    logs = quiet_ray_logging(os.path.join(recipe.run, "logs"))
    fingerprints = stage_fingerprints(recipe, [n for n in STAGES if n in recipe.stages])
    results = {}
    try:
        for name, action in steps:
            if action.startswith("skip"):
                say(f"{name}: {action}")
                continue
            outputs = stage_outputs(recipe, name)
            if action.startswith("rerun"):
                say(f"{name}: {action}")
                for path in outputs:
                    storage.remove(path)
            say(f"{name}: started")
            started = time.time()
            record_started(recipe, name, *fingerprints[name])
            with stage_bar(recipe, name):
                results[name] = STAGES[name](recipe)
            record_complete(outputs, *fingerprints[name])
            record_seconds(recipe, name, time.time() - started)
            say(stage_line(name, results[name], started).removeprefix("[mmcurate] "))
            _advise(recipe, name, results[name])
    finally:
        if logs:
            _copy_worker_logs(os.path.dirname(logs))
    rows = [r for r in stage_status(recipe) if r["stage"] in recipe.stages]
    CONSOLE.print(summary_table(rows, f"summary of {recipe.run}"))
    if logs:
        say(f"Ray's logs: {os.path.dirname(logs)}")
    return results


QUARANTINE_NOTE = 0.05  # a stage that quarantines more than this share of its rows says so


def _advise(recipe: Recipe, name: str, counts: dict) -> None:
    """What the user should act on after a stage, said once."""
    rows, bad = counts.get("input") or 0, counts.get("quarantined") or 0
    if rows and bad / rows > QUARANTINE_NOTE:
        reasons = ", ".join(f"{k} {v}" for k, v in (counts.get("reasons") or {}).items())
        folder = storage.join(recipe.run, "quarantine", name)
        key = f"quarantine-{recipe.run}-{name}"  # once per run and stage, not per process
        advise(key, f"{name} quarantined {bad / rows:.0%} ({reasons}): {folder}")
    if name == "proxy" and "skipped" not in counts and not recipe.proxy.base:
        advise(
            "tiny-proxy",
            "no proxy.base: the model descriptors come from a tiny model built offline; set "
            "proxy.base to a VLM directory for descriptors that mean something on real data",
        )


def _copy_worker_logs(logs_dir: str) -> None:
    """The local Ray session's worker and Ray Data logs -> RUN/logs/ray/ (a copy: Ray keeps
    writing its own until the session ends)."""
    import ray

    try:
        session = ray._private.worker._global_node.get_session_dir_path()
    except AttributeError:  # joined a cluster: worker logs stay on their nodes
        return
    target = os.path.join(logs_dir, "ray")
    os.makedirs(target, exist_ok=True)
    for pattern in ("worker-*.out", "worker-*.err", "ray-data*.log", "python-core-driver-*"):
        for path in glob.glob(os.path.join(session, "logs", pattern)):
            if os.path.getsize(path):
                shutil.copy2(path, target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mmcurate run", description=__doc__)
    parser.add_argument("recipe", help="recipe YAML file")
    parser.add_argument("--from", dest="from_stage", default=None, help="rerun from this stage")
    parser.add_argument("--only", default=None, help="rerun only this stage")
    parser.add_argument("--dry-run", action="store_true", help="print the recipe and the plan")
    parser.add_argument("-v", "--verbose", action="store_true", help="Ray's output on the console")
    args = parser.parse_args(argv)
    set_verbose(args.verbose)
    recipe = load_recipe(args.recipe)
    if args.dry_run or verbose():
        print(yaml.safe_dump({"recipe": to_plain(recipe)}, sort_keys=False))
    steps = plan(recipe, args.from_stage, args.only)
    print("plan:\n" + "\n".join(f"  {name:8s} {action}" for name, action in steps))
    if args.dry_run:
        return 0
    run_recipe(recipe, args.from_stage, args.only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
