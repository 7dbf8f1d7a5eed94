"""GRPO with verifiable rewards: TRL's `GRPOTrainer`, run inside Ray Train's `TorchTrainer`.

Each worker loads the rows as a `datasets.Dataset` (not a Ray Data shard), so TRL's repeat
sampler keeps the `num_generations` completions of a prompt together in one group. A row
becomes {"prompt": chat turns without media placeholders, "images": decoded PIL images (a
video's frames, uniformly sampled), "answer": the reference}; TRL puts the images in front of
the first user turn. Rewards are the plain functions of training/rewards.py.

One GRPO step, as TRL runs it: rollout (G completions per prompt at temperature T, HF
`generate`, or vLLM when `use_vllm` on GPU), reward (sum of the reward functions), advantage
(reward minus the group mean, over the group std), loss (clipped policy ratio x advantage,
plus beta x KL to the reference model). Defaults follow the PISM / CMAB GRPO scripts: 8
generations, temperature 1.0, beta 0.001.

The job wraps the trainer with `prepare_trainer` and training/hf_checkpoints.py's report
callback (each save becomes one whole Ray Train checkpoint); a restarted run (killed or not)
resumes from `ray.train.get_checkpoint()`: TRL's global step, optimizer and RNG states, and
the subset's order continue, and log lines written after the checkpoint are dropped. A
callback on rank 0 evaluates held-out rows every `eval_every` prompts and appends them, with
TRL's logged mean reward, to `OUT/metrics.jsonl`; `record_ids` logs each step's prompt ids
per rank to `OUT/steps/rank-R.jsonl`. The final model goes to `OUT/model/`. OUT may be an
object-store URI: logs and the model go through operators/storage.py, TRL's own saves to a
local folder (`_hf_output_dir`) and from there to the bucket as Ray Train checkpoints.
vLLM generation is a switch for GPU workers only; it is not exercised by the tests (no GPU).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import asdict, dataclass

from operators import storage
from operators.vlm_inputs import PLACEHOLDER, InputsConfig, decode_media, split_turns
from operators.vlm_runtime import RuntimeConfig, VLMRuntime
from training.evaluate import append_metrics, encode_rows, evaluate, truncate_metrics
from training.hf_checkpoints import latest_checkpoint, report_callback, resumed_step
from training.rewards import REWARDS
from training.session import fit_torch_trainer

__all__ = ["GrpoConfig", "LoadedRuntime", "grpo_dataset", "run_grpo", "train_loop_per_worker"]


@dataclass(frozen=True)
class GrpoConfig:
    """One GRPO run. Group size, temperature and beta as in the PISM / CMAB scripts."""

    model: str  # HF image-text-to-text model directory (e.g. the SFT stage output; a URI
    # is copied to a local cache)
    rows: str  # Parquet of the GRPO rows in order (training/data.py)
    out: str  # RUN/train/NAME (or RUN/train/NAME/grpo in the hierarchical plan); local or URI
    heldout: str = ""  # Parquet of held-out rows; "" = no evaluation
    rewards: tuple[str, ...] = ("accuracy",)  # names in training.rewards.REWARDS
    num_generations: int = 8  # completions per prompt (the group)
    temperature: float = 1.0
    beta: float = 0.001  # KL coefficient to the reference model
    learning_rate: float = 1e-5
    prompts_per_step: int = 2  # prompts per worker per optimizer step
    max_completion_length: int = 16
    epochs: float = 1.0
    max_steps: int = -1  # > 0 caps optimizer steps
    lora_rank: int = 0  # > 0: LoRA adapters (peft)
    eval_every: int = 64  # prompts seen between held-out evaluations
    save_steps: int = 50  # optimizer steps between checkpoints
    record_ids: bool = False  # write the prompt ids of each step to OUT/steps/rank-R.jsonl
    use_vllm: bool = False  # vLLM rollouts (GPU only; colocated with training)
    num_frames: int = 8  # video frames, given to the model as images
    seed: int = 0
    threads: int = 1


class LoadedRuntime(VLMRuntime):
    """A `VLMRuntime` around a model already in memory (the one being trained), so the
    runtime's batched `nll` / `generate` evaluate it without loading a second copy."""

    def __init__(self, model, processor, config: RuntimeConfig):
        self.config = config
        self.model, self.processor = model, processor
        self.tokenizer = processor.tokenizer
        parameter = next(model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        self.num_layers = model.config.get_text_config().num_hidden_layers


def _prompt(row: dict) -> list[dict]:
    turns, _ = split_turns(row)
    return [
        {"role": t["role"], "content": PLACEHOLDER.sub("", t["content"]).strip()} for t in turns
    ]


def grpo_dataset(rows: list[dict], num_frames: int = 8):
    """A `datasets.Dataset` of {prompt, images, answer, id} in row order (rows whose media do
    not decode are left out and counted); returns (dataset, skipped)."""
    from datasets import Dataset
    from PIL import Image

    items, skipped = [], 0
    for row in rows:
        try:
            media = decode_media(row, num_frames)
            _, answer = split_turns(row)
        except (OSError, ValueError):
            skipped += 1
            continue
        frames = [f for m in media for f in (m if m.ndim == 4 else [m])]
        items.append(
            {
                "prompt": _prompt(row),
                "images": [Image.fromarray(f) for f in frames],
                "answer": str(row.get("answer") or answer),
                "id": row["id"],
            }
        )
    return Dataset.from_list(items), skipped


def _eval_callback(config: GrpoConfig, processor, world: int):
    from transformers import TrainerCallback

    inputs = InputsConfig(config.num_frames, video_as_frames=True)
    heldout = None
    if config.heldout:
        heldout = encode_rows(processor, storage.read_parquet(config.heldout), inputs)
    path = storage.join(config.out, "metrics.jsonl")
    per_step = config.prompts_per_step * world
    started = time.time()

    class HeldOutEval(TrainerCallback):
        """Rank 0: held-out accuracy every `eval_every` prompts; TRL's logs beside it."""

        def _evaluate(self, state, model, logs=None):
            record = {
                "event": "eval",
                "step": state.global_step,
                "samples_seen": state.global_step * per_step,
                "wall_s": time.time() - started,
            }
            if heldout is not None:
                runtime = LoadedRuntime(model, processor, RuntimeConfig(model=config.model))
                was_training = model.training
                model.eval()
                record.update(evaluate(runtime, heldout))
                model.train(was_training)
            append_metrics(path, record)

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if state.is_world_process_zero and state.global_step == 0:
                self._evaluate(state, model)

        def on_step_end(self, args, state, control, model=None, **kwargs):
            seen = state.global_step * per_step
            due = seen // config.eval_every > (seen - per_step) // config.eval_every
            if state.is_world_process_zero and (due or state.global_step == state.max_steps):
                self._evaluate(state, model)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs and "reward" in logs:
                append_metrics(
                    path,
                    {
                        "event": "train",
                        "step": state.global_step,
                        "samples_seen": state.global_step * per_step,
                        **{k: v for k, v in logs.items() if isinstance(v, (int, float))},
                    },
                )

    return HeldOutEval()


VISION_TOKENS = (
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<image>",
    "<video>",
)


def vision_token_ids(processor) -> list[int]:
    """Ids of the media tokens a rollout must never sample: a sampled one would not match
    any media features (TRL suppresses only the image token)."""
    vocab = processor.tokenizer.get_vocab()
    ids = {vocab[t] for t in VISION_TOKENS if t in vocab}
    for name in ("image_token_id", "video_token_id"):
        value = getattr(processor, name, None)
        if isinstance(value, int):
            ids.add(value)
    return sorted(ids)


def _grpo_args(config: GrpoConfig, use_cpu: bool, suppress: list[int]):
    from trl import GRPOConfig

    return GRPOConfig(
        generation_kwargs={"suppress_tokens": suppress},
        output_dir=_hf_output_dir(config.out),
        per_device_train_batch_size=config.prompts_per_step * config.num_generations,
        num_generations=config.num_generations,
        temperature=config.temperature,
        beta=config.beta,
        learning_rate=config.learning_rate,
        max_completion_length=config.max_completion_length,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        shuffle_dataset=False,  # the subset's order, as for SFT
        logging_steps=1,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        report_to="none",
        use_cpu=use_cpu,
        use_vllm=config.use_vllm,
        vllm_mode="colocate",
        seed=config.seed,
        disable_tqdm=True,
        bf16=not use_cpu,
    )


def _peft_config(config: GrpoConfig):
    if not config.lora_rank:
        return None
    from peft import LoraConfig

    from training.sft import LORA_TARGETS

    return LoraConfig(
        r=config.lora_rank,
        lora_alpha=2 * config.lora_rank,
        lora_dropout=0.0,
        target_modules=rf".*language_model.*\.({'|'.join(LORA_TARGETS)})$",
    )


def _trainer_class(config: GrpoConfig):
    """`GRPOTrainer`, or with `record_ids` a subclass that logs each step's prompt ids."""
    from trl import GRPOTrainer

    if not config.record_ids:
        return GRPOTrainer
    path = storage.join(config.out, "steps", f"rank-{_rank()}.jsonl")

    class RecordingGRPOTrainer(GRPOTrainer):
        """Appends {step, ids} of every generation batch this rank samples (each prompt
        once, in sampler order; step = optimizer steps completed before it)."""

        def _generate_and_score_completions(self, inputs):
            ids = list(dict.fromkeys(x["id"] for x in inputs))
            append_metrics(path, {"step": self.state.global_step, "ids": ids})
            return super()._generate_and_score_completions(inputs)

    return RecordingGRPOTrainer


def _on_resume(config: GrpoConfig, resume: str | None, world: int) -> None:
    """Drop log lines written after the checkpoint (this run rewrites them) and, on rank 0,
    log where the run picked up. Without a checkpoint the logs start empty."""
    step = resumed_step(resume)
    truncate_metrics(storage.join(config.out, "steps", f"rank-{_rank()}.jsonl"), step - 1)
    if _rank() != 0:
        return
    metrics = storage.join(config.out, "metrics.jsonl")
    truncate_metrics(metrics, step)
    if resume is not None:
        seen = step * config.prompts_per_step * world
        append_metrics(metrics, {"event": "resume", "step": step, "samples_seen": seen})
        print(f"[mmcurate] grpo resumed from the checkpoint of step {step}", flush=True)


# Architectures whose processor outputs TRL's GRPOTrainer cannot hand to the model.
GRPO_UNSUPPORTED = {
    "llava_onevision": "TRL's GRPOTrainer drops LLaVA-OneVision's `batch_num_images`, which "
    "the model needs to tell multi-image rows (video frames) from single images",
}


def check_grpo_support(model_dir: str) -> None:
    """Refuse, with the reason, an architecture GRPO cannot train correctly."""
    from transformers import AutoConfig

    kind = AutoConfig.from_pretrained(model_dir, local_files_only=True).model_type
    if kind in GRPO_UNSUPPORTED:
        raise ValueError(f"GRPO does not support {kind}: {GRPO_UNSUPPORTED[kind]}")


def train_loop_per_worker(config: dict) -> dict:
    """GRPO on one worker (inside `TorchTrainer.fit()`), or in one process when called
    directly. Returns the final train metrics."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    cfg = GrpoConfig(**{**config, "rewards": tuple(config.get("rewards", ("accuracy",)))})
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    in_ray, world = _ray_context()
    use_cpu = not torch.cuda.is_available()
    model_dir = storage.local_copy(cfg.model)
    check_grpo_support(model_dir)
    processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
    # TRL left-pads prompt ids itself but takes mm_token_type_ids from the processor's
    # batch, which must then be left-padded too (else Qwen2-VL's rope index misaligns).
    processor.tokenizer.padding_side = "left"
    model = AutoModelForImageTextToText.from_pretrained(
        model_dir, local_files_only=True, dtype=torch.float32 if use_cpu else torch.bfloat16
    )
    dataset, skipped = grpo_dataset(storage.read_parquet(cfg.rows).to_pylist(), cfg.num_frames)
    resume = latest_checkpoint(in_ray)
    _on_resume(cfg, resume, world)
    trainer = _trainer_class(cfg)(
        model=model,
        reward_funcs=[REWARDS[name] for name in cfg.rewards],
        args=_grpo_args(cfg, use_cpu, vision_token_ids(processor)),
        train_dataset=dataset,
        processing_class=processor,
        peft_config=_peft_config(cfg),
        callbacks=[_eval_callback(cfg, processor, world)],
    )
    if in_ray:
        from ray.train.huggingface.transformers import prepare_trainer

        trainer.add_callback(report_callback())
        trainer = prepare_trainer(trainer)
    result = trainer.train(resume_from_checkpoint=resume)
    if trainer.is_world_process_zero():
        _save_final(trainer, processor, cfg)
    return {**result.metrics, "skipped": skipped}


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _ray_context() -> tuple[bool, int]:
    try:
        import ray.train

        return True, ray.train.get_context().get_world_size()
    except (RuntimeError, ImportError):  # not inside TorchTrainer.fit(), or no Ray at all
        return False, 1


def _save_final(trainer, processor, config: GrpoConfig) -> None:
    model = trainer.model
    if config.lora_rank:
        model = model.merge_and_unload()
    with storage.output_dir(storage.join(config.out, "model")) as folder:
        model.save_pretrained(folder)
        processor.save_pretrained(folder)


def _hf_output_dir(out: str) -> str:
    """Where TRL saves its checkpoints before the report callback hands them to Ray Train:
    OUT/hf, or for an object-store OUT a local folder named after it (the workers of one
    node share it, as they share OUT/hf on a local run)."""
    if not storage.is_remote(out):
        return os.path.join(out, "hf")
    digest = hashlib.sha1(out.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), "mmcurate-hf", digest)


def run_grpo(config: GrpoConfig, num_workers: int = 2, use_gpu: bool = False, name="grpo"):
    """Run GRPO with `TorchTrainer`; a rerun with the same `out` resumes. Returns the Result."""
    if config.use_vllm and not use_gpu:
        raise ValueError("use_vllm needs GPU workers (use_gpu=True)")
    return fit_torch_trainer(
        train_loop_per_worker, asdict(config), config.out, name, num_workers, use_gpu
    )
