"""Supervised fine-tuning on an ordered subset, with Ray Train's `TorchTrainer`.

The rows arrive as one Parquet file in the order the optimizer must see them (see
training/data.py). Worker r of W takes, at step s, the rank-strided slice of global batch s
(`step_rows`); DDP averages the gradients, so every optimizer step sees exactly the
manifest's next `batch_size` rows, whatever the number of workers. No sampler, no shuffle,
no Ray Data shard: the order is a pure function of (step, rank, world).

Loss: the answer-only labels of the VLM runtime's collation (`operators.vlm_inputs`); each
sample's loss is its answer-token mean NLL, and worker r minimises sum_i nll_i * W / n over
its rows, so after DDP's average the gradient is that of the global batch mean,
independent of W (a test checks 1 worker x 8 == 2 workers x 4).

Full fine-tune, or LoRA (peft) when `lora_rank > 0`: adapters on the language model's
attention / MLP projections, merged into the weights of the saved model.

Checkpoints (model or adapter weights, optimizer, step, samples seen) go through
`ray.train.report` every `checkpoint_every` samples; a restarted run (same run folder) gets the
latest from `ray.train.get_checkpoint()` and continues at the next step, so no sample is
repeated or skipped. Rank 0 evaluates held-out rows every `eval_every` samples and appends
to `OUT/metrics.jsonl`; the final model is saved to `OUT/model/` (save_pretrained). OUT may be
an object-store URI (rows, logs and the model go through operators/storage.py, checkpoints
through Ray Train's storage); the model is copied to a local cache first.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass

from operators import storage
from operators.vlm_inputs import IGNORE_INDEX, InputsConfig, collate
from operators.vlm_runtime import RuntimeConfig, VLMRuntime
from training.data import step_rows
from training.evaluate import (
    append_metrics,
    encode_one,
    encode_rows,
    evaluate,
    truncate_metrics,
)
from training.session import current_session, fit_torch_trainer

__all__ = ["SftConfig", "per_sample_nll", "run_sft", "train_loop_per_worker"]

# The decoder's module name: `language_model` in most VLMs, `text_model` in Idefics3 / SmolVLM.
LANGUAGE_MODEL = "(language_model|text_model)"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class SftConfig:
    """One SFT run. Defaults: the tiny-model recipe of ARCHITECTURE.md section 6."""

    model: str  # HF image-text-to-text model directory (a URI is copied to a local cache)
    rows: str  # Parquet of the training rows in order (training/data.py ordered_rows)
    out: str  # RUN/train/NAME (local or URI): metrics.jsonl, steps/, model/, checkpoints
    heldout: str = ""  # Parquet of held-out rows (ROW_SCHEMA); "" = no evaluation
    batch_size: int = 32  # global batch: rows per optimizer step, split over the workers
    learning_rate: float = 1e-3  # peak learning rate of the schedule
    lr_schedule: str = "cosine"  # "cosine" | "linear" (decay to 0 at the last step) | "constant"
    warmup_ratio: float = 0.03  # share of the steps with a linear warm-up from 0 (LLaVA's recipe)
    max_grad_norm: float = 1.0  # clip the global gradient norm; 0 = no clipping
    weight_decay: float = 0.0
    epochs: int = 1  # passes over the ordered rows (each in manifest order)
    max_steps: int = 0  # > 0: stop after this many optimizer steps in all (equal budgets)
    lora_rank: int = 0  # 0: full fine-tune; > 0: LoRA adapters of this rank (peft)
    lora_alpha: int = 16
    eval_every: int = 1024  # samples seen between evaluations (and at the end)
    checkpoint_every: int = 0  # samples seen between checkpoints; 0 = at each evaluation
    stop_after_steps: int = 0  # stop this invocation after N steps (resumable); 0 = run on
    cache_encodings: bool = False  # keep each worker's encoded rows for later epochs (RAM)
    record_ids: bool = False  # write the ids of each step to OUT/steps/rank-R.jsonl
    eval_mode: str = "teacher_forced"  # or "generate" (greedy decoding)
    num_frames: int = 8
    video_as_frames: bool | None = None  # see operators.vlm_inputs.InputsConfig
    max_tokens: int = 4096
    dtype: str = "auto"  # float32 on CPU, bfloat16 on GPU
    threads: int = 1  # torch threads per worker
    seed: int = 0

    @property
    def inputs(self) -> InputsConfig:
        return InputsConfig(self.num_frames, self.video_as_frames, self.max_tokens)


def learning_rate_at(step: int, total: int, config: SftConfig) -> float:
    """The learning rate of optimizer step `step` (0-based) of `total`: a linear warm-up over
    the first `warmup_ratio` of the steps, then cosine or linear decay to 0 (or constant), as
    the LLaVA / Qwen-VL SFT recipes (warm-up 3%, cosine). A pure function of the step, so a
    resumed run continues the schedule exactly without a scheduler state.

    >>> cfg = SftConfig(model="m", rows="r", out="o", learning_rate=1.0, warmup_ratio=0.1)
    >>> [round(learning_rate_at(s, 20, cfg), 3) for s in (0, 1, 2, 11, 19)]
    [0.333, 0.667, 1.0, 0.5, 0.008]
    """
    warmup = math.ceil(total * config.warmup_ratio)
    if step < warmup:
        return config.learning_rate * (step + 1) / (warmup + 1)
    if config.lr_schedule == "constant":
        return config.learning_rate
    progress = (step - warmup) / max(total - warmup, 1)  # 0 at the peak, < 1 at the last step
    if config.lr_schedule == "linear":
        return config.learning_rate * (1.0 - progress)
    if config.lr_schedule == "cosine":
        return config.learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown lr_schedule {config.lr_schedule!r} (cosine, linear, constant)")


def per_sample_nll(logits, labels):
    """(B,) answer-token mean NLL of each sample; logits (B, L, V), labels (B, L)."""
    import torch

    shift_logits, shift_labels = logits[:, :-1].float(), labels[:, 1:]  # (B, L-1, V), (B, L-1)
    mask = shift_labels != IGNORE_INDEX
    token = torch.nn.functional.cross_entropy(
        shift_logits.transpose(1, 2), shift_labels.clamp(min=0), reduction="none"
    )  # (B, L-1)
    return (token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


def apply_lora(model, config: SftConfig):
    """Inject LoRA adapters in place (the runtime keeps pointing at the same modules)."""
    from peft import LoraConfig, get_peft_model

    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    targets = [t for t in LORA_TARGETS if t in names]
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        target_modules=rf".*{LANGUAGE_MODEL}.*\.({'|'.join(targets)})$",
        lora_dropout=0.0,
    )
    return get_peft_model(model, lora)


def _trainable(model):
    return [p for p in model.parameters() if p.requires_grad]


def _state_dict(model, config: SftConfig) -> dict:
    """What a checkpoint holds of the model: adapters only under LoRA."""
    if config.lora_rank:
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(model)
    return model.state_dict()


def _load_state_dict(model, state: dict, config: SftConfig) -> None:
    if config.lora_rank:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, state)
    else:
        model.load_state_dict(state)


def _save_checkpoint(model, optimizer, progress: dict, config: SftConfig, session) -> None:
    import torch

    with tempfile.TemporaryDirectory() as folder:
        if session.rank == 0:
            torch.save(_state_dict(model, config), os.path.join(folder, "model.pt"))
            torch.save(optimizer.state_dict(), os.path.join(folder, "optimizer.pt"))
            with open(os.path.join(folder, "progress.json"), "w") as handle:
                json.dump(progress, handle)
        session.report(progress, folder if session.rank == 0 else None)


def _restore(model, optimizer, config: SftConfig, session) -> dict:
    """Progress {step, samples_seen} of the latest checkpoint (zeros without one)."""
    import torch

    with session.latest_checkpoint() as folder:
        if folder is None:
            return {"step": 0, "samples_seen": 0}
        _load_state_dict(model, torch.load(os.path.join(folder, "model.pt")), config)
        optimizer.load_state_dict(torch.load(os.path.join(folder, "optimizer.pt")))
        with open(os.path.join(folder, "progress.json")) as handle:
            return json.load(handle)


def _encode(runtime, rows: list[dict], config: SftConfig, cache: dict | None):
    """Encodings of the rows that encode, and the reasons of those that do not."""
    errors: Counter = Counter()
    encodings = []
    for row in rows:
        key = row["position"]
        if cache is not None and key in cache:
            encoding, reason = cache[key]
        else:
            encoding, reason = encode_one(runtime.processor, row, config.inputs)
            if cache is not None:
                cache[key] = (encoding, reason)
        if encoding is None:
            errors[reason] += 1
        else:
            encodings.append(encoding)
    return encodings, errors


def _step_loss(model, runtime, encodings: list, global_rows: int, world: int):
    """Forward + loss of this worker's encoded rows; (loss tensor, summed nll, trained)."""
    if not encodings:  # every parameter still takes part, so DDP's all-reduce matches
        zero = sum(p.sum() for p in _trainable(model)) * 0.0
        return zero, 0.0, 0
    batch = collate(encodings, runtime.processor, "right")
    inputs = runtime._to_device(batch)
    logits = model(**inputs).logits
    nll = per_sample_nll(logits, batch.labels.to(logits.device))  # (b,)
    loss = nll.sum() * world / global_rows
    return loss, float(nll.detach().sum()), len(encodings)


def _record(config: SftConfig, session, step: int, rows: list[dict]) -> None:
    if config.record_ids:
        path = storage.join(config.out, "steps", f"rank-{session.rank}.jsonl")
        append_metrics(path, {"step": step, "ids": [r["id"] for r in rows]})


def _all_reduce_sum(values: list[float], session) -> list[float]:
    if session.world == 1:
        return values
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


def _load(config: SftConfig, session):
    """The runtime (model + processor) on this worker's device, LoRA applied if configured."""
    import torch

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    runtime = VLMRuntime(
        RuntimeConfig(
            model=config.model,
            device=session.device,
            dtype=config.dtype,
            num_frames=config.num_frames,
            video_as_frames=config.video_as_frames,
            max_tokens=config.max_tokens,
        )
    )
    model = apply_lora(runtime.model, config) if config.lora_rank else runtime.model
    model.train()
    return runtime, model


def _evaluate_and_report(ctx: dict, progress: dict, evaluate_now: bool, checkpoint: bool):
    """Rank 0 evaluates and logs; every rank reports (with a checkpoint when due)."""
    config, session = ctx["config"], ctx["session"]
    if evaluate_now and session.rank == 0 and ctx["eval_set"] is not None:
        ctx["model"].eval()
        result = evaluate(ctx["runtime"], ctx["eval_set"], config.eval_mode)
        ctx["model"].train()
        record = {"event": "eval", **progress, **result, "wall_s": time.time() - ctx["t0"]}
        append_metrics(storage.join(config.out, "metrics.jsonl"), record)
        print(f"[mmcurate] sft eval: {json.dumps(record, sort_keys=True)}", flush=True)
    if checkpoint:
        _save_checkpoint(ctx["model"], ctx["optimizer"], progress, config, session)


def _due(before: int, after: int, every: int) -> bool:
    return every > 0 and after // every > before // every


def _log_resume(metrics: str, progress: dict) -> None:
    """Say in the log (and on stdout) where a restarted run picked up."""
    record = {"event": "resume", "step": progress["step"], "samples_seen": progress["samples_seen"]}
    append_metrics(metrics, record)
    print(f"[mmcurate] sft resumed from the checkpoint of step {progress['step']}", flush=True)


def _setup(cfg: SftConfig) -> dict:
    """Load, restore and prepare everything a worker needs; the loop's context."""
    import torch

    session = current_session(cfg.out)
    runtime, model = _load(cfg, session)
    optimizer = torch.optim.AdamW(
        _trainable(model), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
    )
    progress = _restore(model, optimizer, cfg, session)
    # Records written after the checkpoint are rewritten by this run (ids: step s is the
    # 0-based index of completed step s + 1).
    truncate_metrics(
        storage.join(cfg.out, "steps", f"rank-{session.rank}.jsonl"),
        progress["step"] - 1 if progress["step"] else -1,
    )
    eval_set = None
    if session.rank == 0:
        metrics = storage.join(cfg.out, "metrics.jsonl")
        truncate_metrics(metrics, progress["step"] if progress["step"] else -1)
        if progress["step"]:
            _log_resume(metrics, progress)
        if cfg.heldout:
            heldout = storage.read_parquet(cfg.heldout)
            eval_set = encode_rows(runtime.processor, heldout, cfg.inputs)
    return {
        "config": cfg,
        "session": session,
        "runtime": runtime,
        "model": model,
        "wrapped": session.prepare(model),
        "optimizer": optimizer,
        "eval_set": eval_set,
        "progress": progress,
        "cache": {} if cfg.cache_encodings else None,
        "t0": time.time(),
    }


def _train_step(ctx: dict, table, step: int, per_epoch: int, total: int) -> tuple[int, Counter]:
    """One optimizer step on global batch `step` of `total`; returns (global rows, rows not
    trained)."""
    import torch

    cfg, session = ctx["config"], ctx["session"]
    in_epoch = step % per_epoch
    global_rows = min(cfg.batch_size, table.num_rows - in_epoch * cfg.batch_size)
    per_worker = cfg.batch_size // session.world
    mine = step_rows(table.num_rows, in_epoch, per_worker, session.rank, session.world)
    rows = table.take(mine).to_pylist()
    _record(cfg, session, step, rows)
    encodings, errors = _encode(ctx["runtime"], rows, cfg, ctx["cache"])
    loss, nll_sum, trained = _step_loss(
        ctx["wrapped"], ctx["runtime"], encodings, global_rows, session.world
    )
    loss.backward()
    if cfg.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(_trainable(ctx["model"]), cfg.max_grad_norm)
    for group in ctx["optimizer"].param_groups:
        group["lr"] = learning_rate_at(step, total, cfg)
    ctx["optimizer"].step()
    ctx["optimizer"].zero_grad(set_to_none=True)
    ctx["step_nll"], ctx["step_trained"] = _all_reduce_sum([nll_sum, float(trained)], session)
    return global_rows, errors


def train_loop_per_worker(config: dict) -> dict:
    """The SFT loop. Inside `TorchTrainer.fit()` it is one worker; called directly it is a
    single-process run with the same order and checkpoints. Returns the final progress."""
    cfg = SftConfig(**config)
    ctx = _setup(cfg)
    progress = ctx["progress"]
    table = storage.read_parquet(cfg.rows)
    per_epoch = math.ceil(table.num_rows / cfg.batch_size)
    total = per_epoch * cfg.epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    if progress["step"] == 0 and ctx["session"].rank == 0:
        _evaluate_and_report(ctx, {"step": 0, "samples_seen": 0, "loss": None}, True, False)
    checkpoint_every = cfg.checkpoint_every or cfg.eval_every
    done_here, base_s, started = 0, progress.get("train_s", 0.0), time.time()
    while progress["step"] < total:
        step, before = progress["step"], progress["samples_seen"]
        global_rows, errors = _train_step(ctx, table, step, per_epoch, total)
        progress = {
            "step": step + 1,
            "samples_seen": before + global_rows,
            "loss": ctx["step_nll"] / max(ctx["step_trained"], 1.0),
            "skipped": progress.get("skipped", 0) + int(global_rows - ctx["step_trained"]),
            "train_s": base_s + time.time() - started,  # loop time, this run and earlier ones
        }
        if errors:
            print(f"[mmcurate] sft step {step}: rows not trained {dict(errors)}", flush=True)
        done_here += 1
        last = progress["step"] == total
        stop = cfg.stop_after_steps and done_here >= cfg.stop_after_steps
        evaluate_now = _due(before, progress["samples_seen"], cfg.eval_every) or last
        checkpoint_now = _due(before, progress["samples_seen"], checkpoint_every) or last or stop
        if evaluate_now or checkpoint_now:
            _evaluate_and_report(ctx, progress, evaluate_now, checkpoint_now)
        if stop:
            return progress
    if ctx["session"].rank == 0:
        _save_final(ctx["model"], ctx["runtime"], cfg)
    return progress


def _save_final(model, runtime, config: SftConfig) -> None:
    """save_pretrained the trained model (LoRA merged) with its processor to OUT/model/."""
    final = model.merge_and_unload() if config.lora_rank else model
    with storage.output_dir(storage.join(config.out, "model")) as folder:
        final.save_pretrained(folder)
        runtime.processor.save_pretrained(folder)


def run_sft(config: SftConfig, num_workers: int = 2, use_gpu: bool = False, name: str = "sft"):
    """Run SFT with `TorchTrainer` (gloo on CPU, NCCL on GPU); a rerun with the same `out`
    resumes from the latest checkpoint. Returns the Ray Train `Result`."""
    if config.batch_size % num_workers:
        raise ValueError(f"batch_size {config.batch_size} is not a multiple of {num_workers}")
    return fit_torch_trainer(
        train_loop_per_worker, asdict(config), config.out, name, num_workers, use_gpu
    )
