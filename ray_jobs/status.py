"""`mmcurate status RUN`: what each stage has finished, its counts, what a rerun would do.

RUN is a run directory (its recipe is the resolved `RUN/config.yaml` that `mmcurate run`
writes first) or a recipe file. Counts come from the stages' completion markers; a stage
that was killed part-way shows what it had finished (shards written, subsets selected, the
latest training step). "A rerun would" is `ray_jobs.run.plan`, the function `mmcurate run`
follows, so whatever the planner checks (markers, and any staleness check added to it) the
status reports too. The end-of-run summary table is built here as well (`summary_rows`).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

from rich.table import Table

from operators import storage
from ray_jobs.console import CONSOLE
from ray_jobs.recipe import Recipe, load_recipe
from ray_jobs.rundir import is_complete, read_counts
from ray_jobs.stages import STAGES, stage_outputs

__all__ = ["main", "record_seconds", "stage_status", "summary_rows", "summary_table"]

SECONDS = "stage_seconds.json"  # RUN/stage_seconds.json: wall time of each stage's last run


def record_seconds(recipe: Recipe, name: str, seconds: float) -> None:
    """Remember a stage's wall time (the summary and `status` show it)."""
    path = storage.join(recipe.run, SECONDS)
    known = json.loads(storage.read_text(path)) if storage.exists(path) else {}
    known[name] = round(seconds, 1)
    storage.write_text(path, json.dumps(known, indent=2, sort_keys=True))


def _seconds(recipe: Recipe) -> dict:
    path = storage.join(recipe.run, SECONDS)
    return json.loads(storage.read_text(path)) if storage.exists(path) else {}


def _parts(folder: str) -> int:
    if not storage.exists(folder):
        return 0
    return sum(1 for n in storage.listdir(folder) if n.endswith(".parquet"))


def _progress(recipe: Recipe, name: str, outputs: list[str]) -> str:
    """What an incomplete stage has on disk."""
    if name in ("select", "train"):
        done = sum(is_complete(p) for p in outputs)
        text = f"{done}/{len(outputs)} {'subsets' if name == 'select' else 'runs'} finished"
        if name == "train":
            for path in outputs:
                metrics = storage.join(path, "metrics.jsonl")
                if not is_complete(path) and storage.exists(metrics):
                    lines = storage.read_text(metrics).splitlines()
                    step = max((json.loads(x).get("step") or 0 for x in lines), default=0)
                    text += f"; {os.path.basename(path)} at step {step}"
        return text
    if name in ("ingest", "score") and outputs and storage.exists(outputs[0]):
        shards = _parts(storage.join(recipe.run, "pool")) if name == "score" else None
        of = f"/{shards}" if shards else ""
        return f"{_parts(outputs[0])}{of} shards written"
    return "started, nothing finished" if any(storage.exists(p) for p in outputs) else ""


def stage_status(recipe: Recipe) -> list[dict]:
    """Per stage: name, done (bool), counts (marker contents), progress and the rerun action."""
    from ray_jobs.run import plan

    seconds = _seconds(recipe)
    rows = []
    for name, action in plan(recipe):
        outputs = stage_outputs(recipe, name) if name in recipe.stages else []
        done = bool(outputs) and all(is_complete(p) for p in outputs)
        if name == "report":
            done = bool(outputs) and storage.exists(outputs[0])
        counts: dict = {}
        if name in ("select", "train"):
            counts = {os.path.basename(p): read_counts(p) for p in outputs if is_complete(p)}
        elif done and name != "report":
            counts = read_counts(outputs[0])
        rows.append(
            {
                "stage": name,
                "done": done,
                "counts": counts,
                "progress": "" if done else _progress(recipe, name, outputs),
                "rerun": action,
                "seconds": seconds.get(name),
            }
        )
    return rows


def _reasons(counts: dict) -> str:
    quarantined = counts.get("quarantined")
    if quarantined is None:
        return ""
    reasons = ", ".join(f"{k} {v}" for k, v in (counts.get("reasons") or {}).items())
    return f"{quarantined} ({reasons})" if reasons else str(quarantined)


def summary_rows(rows: list[dict]) -> list[dict]:
    """The summary columns of each stage in the recipe: rows in / kept / quarantined by
    reason / removed as duplicates / selected / time (blank where a stage has no such count)."""
    table = []
    for row in rows:
        name, counts = row["stage"], row["counts"]
        line = {"stage": name, "in": "", "kept": "", "quarantined": "", "duplicates": ""}
        line |= {"selected": "", "time": ""}
        if name in ("ingest", "score"):
            line |= {"in": counts.get("input", ""), "kept": counts.get("kept", "")}
            line["quarantined"] = _reasons(counts)
        elif name == "dedup" and counts:
            line |= {"in": counts["rows"], "kept": counts["kept"], "duplicates": counts["removed"]}
        elif name == "cluster" and counts:
            line |= {"in": counts["input"], "kept": counts["clustered"]}
        elif name == "select":
            line["selected"] = ", ".join(f"{k} {v['selected']}" for k, v in counts.items())
        elif name == "train":
            line["selected"] = ", ".join(f"{k} {v.get('samples_seen')}" for k, v in counts.items())
        if row["seconds"] is not None:
            line["time"] = f"{row['seconds']:.0f}s"
        table.append(line)
    return table


def summary_table(rows: list[dict], title: str = "summary") -> Table:
    """A rich table of `summary_rows` (train's column holds samples seen per run)."""
    table = Table(title=title, title_justify="left")
    heads = (
        "stage",
        "in",
        "kept",
        "quarantined (reasons)",
        "duplicates",
        "selected (train: samples seen)",
        "time",
    )
    for head in heads:
        table.add_column(head, overflow="fold")
    for line in summary_rows(rows):
        table.add_row(*(str(v) for v in line.values()))
    return table


def status_table(rows: list[dict]) -> Table:
    table = Table(title="status", title_justify="left")
    for head in ("stage", "finished", "progress", "a rerun would"):
        table.add_column(head, overflow="fold")
    for row in rows:
        finished = "yes" if row["done"] else "no"
        table.add_row(row["stage"], finished, row["progress"], row["rerun"])
    return table


def load_run(path: str) -> Recipe:
    """The recipe of a run directory (RUN/config.yaml) or of a recipe file."""
    if os.path.isdir(path) or "://" in path:
        config = storage.join(path, "config.yaml")
        if not storage.exists(config):
            raise SystemExit(f"{path}: no config.yaml; not a run directory (give its recipe)")
        if "://" not in path:
            return load_recipe(config)
        with tempfile.TemporaryDirectory() as folder:  # the loader reads local files
            local = os.path.join(folder, "config.yaml")
            with open(local, "w") as handle:
                handle.write(storage.read_text(config))
            return load_recipe(local)
    return load_recipe(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mmcurate status", description=__doc__)
    parser.add_argument("run", help="run directory (or its recipe file)")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    args = parser.parse_args(argv)
    rows = stage_status(load_run(args.run))
    if args.json:
        print(json.dumps(rows, indent=2, sort_keys=True, default=str))
        return 0
    CONSOLE.print(status_table(rows))
    CONSOLE.print(summary_table([r for r in rows if r["stage"] in STAGES]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
