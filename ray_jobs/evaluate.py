"""`mmcurate eval --run DIR --subset NAME`: held-out accuracy of a trained model, and the
subset's standing against a full-data run.

Loads `DIR/train/NAME/model/` (or `--model`), evaluates it on `DIR/train/NAME/heldout.parquet`
(or a clean pool given by `--heldout`), and writes `DIR/train/NAME/eval.json`: accuracy per
category (exact answer match, greedy: teacher-forced by default, `--mode generate` decodes),
and the summary of the run's metrics.jsonl. With `--reference FULL` (another subset trained in
the same run, e.g. the full pool) it adds mmSSR's "% of full" and GDO's samples needed to reach
the reference's peak. Runs in one process: one model, no Ray needed. DIR, the model and the
held-out pool may be object-store URIs (a model is copied to a local cache).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass

from operators import storage
from ray_jobs.rundir import stage_line

__all__ = ["EvalJobConfig", "main", "run_eval"]


@dataclass(frozen=True)
class EvalJobConfig:
    run: str  # the run directory
    subset: str  # DIR/train/NAME to evaluate
    model: str = ""  # "" = DIR/train/NAME/model
    heldout: str = ""  # "" = DIR/train/NAME/heldout.parquet; or a clean pool directory
    reference: str = ""  # another trained subset of the run, e.g. the full-data control
    mode: str = "teacher_forced"  # or "generate"
    per_category: int = 100  # rows per category taken from a held-out pool


def _heldout_table(config: EvalJobConfig, out: str):
    from training.data import heldout_rows

    truth = storage.join(config.heldout, "ground_truth.parquet") if config.heldout else ""
    if truth and storage.exists(truth):
        return heldout_rows(config.heldout, config.per_category)
    return storage.read_parquet(config.heldout or storage.join(out, "heldout.parquet"))


def run_eval(config: EvalJobConfig) -> dict:
    """Evaluate and write DIR/train/NAME/eval.json; returns its content."""
    import torch

    from operators.vlm_runtime import RuntimeConfig, VLMRuntime
    from training.evaluate import encode_rows, evaluate, summarize

    started = time.time()
    torch.set_num_threads(1)
    out = storage.join(config.run, "train", config.subset)
    runtime = VLMRuntime(RuntimeConfig(model=config.model or storage.join(out, "model")))
    data = encode_rows(runtime.processor, _heldout_table(config, out), runtime.config.inputs)
    result = evaluate(runtime, data, config.mode)
    result["errors"] = dict(data.errors)
    reference = (
        storage.join(config.run, "train", config.reference, "metrics.jsonl")
        if config.reference
        else None
    )
    result["summary"] = summarize(storage.join(out, "metrics.jsonl"), reference)
    text = json.dumps(result, indent=2, sort_keys=True)
    storage.write_text(storage.join(out, "eval.json"), text)
    print(stage_line("eval", {"rows": result.get("heldout_rows")}, started), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mmcurate eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--run", required=True)
    parser.add_argument("--subset", required=True, help="the trained subset (DIR/train/NAME)")
    parser.add_argument("--model", default="")
    parser.add_argument("--heldout", default="")
    parser.add_argument("--reference", default="", help="subset trained on the full data")
    parser.add_argument("--mode", default="teacher_forced", choices=("teacher_forced", "generate"))
    args = parser.parse_args(argv)
    config = EvalJobConfig(
        args.run, args.subset, args.model, args.heldout, args.reference, args.mode
    )
    print(json.dumps(run_eval(config), indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
