"""Stage fingerprints: what configuration and inputs produced a stage's outputs.

A stage's configuration is the recipe sections it reads, flattened to dotted keys (plus, for
ingest, each input file's path, size and modification time). Its fingerprint is the SHA-256 of
that configuration and of the fingerprint of the stage before it, so a change anywhere
upstream changes every later fingerprint. `mmcurate run` records the fingerprint (with the
configuration) in each completion marker the stage wrote, and in `RUN/stages/STAGE.json` when
the stage starts; a stage whose recorded fingerprint differs from the recipe's is rerun, with
the changed keys printed (`changed_keys`), and so is every stage after it.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from operators import storage
from ray_jobs.config_loading import to_plain
from ray_jobs.recipe import Recipe
from ray_jobs.rundir import MARKER, is_complete

__all__ = ["changed_keys", "recorded", "record_complete", "record_started", "stage_fingerprints"]

UPSTREAM = "upstream"  # the key under which a stage's configuration holds its predecessor's


def _flatten(value: Any, prefix: str, out: dict) -> dict:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value
    return out


def _input_files(recipe: Recipe) -> dict:
    """path -> [size, mtime_ns] (mtime only for local files) of every input data file."""
    from operators.formats.readers import input_files

    files = {}
    for path in input_files(recipe.input):
        local = None if storage.is_remote(path) else storage.local_path(path)
        mtime = os.stat(local).st_mtime_ns if local and os.path.exists(local) else None
        files[path] = [storage.size(path) if storage.exists(path) else None, mtime]
    return files


INVOCATION_CONTROLS = ("stop_after_steps",)  # how far this invocation goes, not what it makes


def _without_invocation_controls(train: dict) -> dict:
    """A train entry without the keys that only bound one invocation (a run stopped after N
    steps resumes under the full recipe instead of restarting as 'changed')."""
    out = dict(train)
    for algo in ("sft", "grpo"):
        if isinstance(out.get(algo), dict):
            out[algo] = {k: v for k, v in out[algo].items() if k not in INVOCATION_CONTROLS}
    return out


def _sections(recipe: Recipe, name: str) -> dict:
    """The parts of the recipe that stage `name` reads."""
    from ray_jobs.stages import needs_proxy

    if name == "ingest":
        sections = {"input": recipe.input, "media_root": recipe.media_root}
        sections.update(ingest=to_plain(recipe.ingest), input_files=_input_files(recipe))
        return sections
    if name == "proxy":
        return {"proxy": to_plain(recipe.proxy), "proxy_needed": needs_proxy(recipe)}
    if name == "cluster":
        return {"cluster": to_plain(recipe.cluster), "score.text_model": recipe.score.text_model}
    if name == "train":
        return {"train": [_without_invocation_controls(t) for t in to_plain(recipe.train) or []]}
    attribute = {"select": "subsets"}.get(name, name)
    return {attribute: to_plain(getattr(recipe, attribute, None))} if name != "report" else {}


def stage_fingerprints(recipe: Recipe, names: list[str]) -> dict[str, tuple[str, dict]]:
    """stage -> (fingerprint, flat configuration), chained in the order of `names`."""
    out, previous = {}, ""
    for name in names:
        config = _flatten(_sections(recipe, name), "", {})
        config[UPSTREAM] = previous
        text = json.dumps(config, sort_keys=True, default=str)
        previous = hashlib.sha256(text.encode()).hexdigest()
        out[name] = (previous, config)
    return out


def changed_keys(old: dict | None, new: dict) -> list[str]:
    """The dotted keys whose values differ; 'upstream' when only an earlier stage changed."""
    if old is None:
        return ["(no fingerprint recorded)"]
    keys = sorted(k for k in set(old) | set(new) if old.get(k, "<unset>") != new.get(k, "<unset>"))
    return [f"{UPSTREAM} (an earlier stage changed)" if k == UPSTREAM else k for k in keys]


def _started_path(recipe: Recipe, name: str) -> str:
    return storage.join(recipe.run, "stages", f"{name}.json")


def recorded(recipe: Recipe, name: str, outputs: list[str]) -> dict | None:
    """{fingerprint, config} a stage recorded: in its markers when complete, else when it
    started; None when nothing was recorded (or the markers disagree)."""
    if outputs and all(is_complete(p) for p in outputs):
        records = [json.loads(storage.read_text(storage.join(p, MARKER))) for p in outputs]
        found = [r.get("fingerprint") for r in records]
        if found[0] is None or any(f != found[0] for f in found):
            return None
        return {"fingerprint": found[0], "config": records[0].get("stage_config", {})}
    path = _started_path(recipe, name)
    return json.loads(storage.read_text(path)) if storage.exists(path) else None


def record_started(recipe: Recipe, name: str, fingerprint: str, config: dict) -> None:
    text = json.dumps({"fingerprint": fingerprint, "config": config}, default=str, indent=1)
    storage.write_text(_started_path(recipe, name), text)


def record_complete(outputs: list[str], fingerprint: str, config: dict) -> None:
    """Add the fingerprint and configuration to each completion marker the stage wrote."""
    for path in outputs:
        marker = storage.join(path, MARKER)
        if storage.exists(marker):
            counts = json.loads(storage.read_text(marker))
            counts.update(fingerprint=fingerprint, stage_config=config)
            storage.write_text(marker, json.dumps(counts, indent=2, sort_keys=True, default=str))
