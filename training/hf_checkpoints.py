"""An HF `Trainer`'s saves as Ray Train checkpoints, whole and consistent, and the way back.

Ray's `RayTrainReportCallback` has every rank copy "the last checkpoint-N folder" of the
output dir as soon as that rank's own save returns, and Ray Train V2 merges the ranks' uploads
into one checkpoint folder. On a shared file system a rank other than 0 can copy the folder
while rank 0 is still writing it (or pick the previous one), and its half-written files then
overwrite rank 0's: a GRPO run killed after such a checkpoint could not resume (an empty
config.json, found by tests/training/test_kill_resume.py). `report_callback` avoids both: all
ranks wait for each other after the save, the folder is named by the global step, and each
rank uploads only its own files (rank 0 everything but the other ranks' RNG states, rank r its
`rng_state_r.pth`), so the merged checkpoint is the one save, on shared or node-local disks.

Resuming: `latest_checkpoint()` is the HF folder inside Ray Train's latest registered
checkpoint (`ray.train.get_checkpoint()`), for `trainer.train(resume_from_checkpoint=...)`,
which restores weights, optimizer, scheduler, RNG states and `global_step`, and skips the
dataloader's first `global_step` batches, so the data order continues.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile

__all__ = ["CHECKPOINT_NAME", "latest_checkpoint", "report_callback", "resumed_step"]

CHECKPOINT_NAME = "checkpoint"  # the HF folder's name inside a Ray checkpoint
RNG_STATE = re.compile(r"rng_state_(\d+)\.pth")


def _owned_by(name: str, rank: int) -> bool:
    """Whether `rank` uploads file `name` of an HF checkpoint folder.

    >>> [_owned_by(n, 0) for n in ("model.safetensors", "rng_state_0.pth", "rng_state_1.pth")]
    [True, True, False]
    >>> [_owned_by(n, 1) for n in ("model.safetensors", "rng_state_1.pth")]
    [False, True]
    """
    match = RNG_STATE.fullmatch(name)
    return int(match.group(1)) == rank if match else rank == 0


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def report_callback():
    """A `TrainerCallback`: after each save, every rank calls `ray.train.report` with its part
    of `OUTPUT_DIR/checkpoint-<global_step>` and the metrics logged so far."""
    import ray.train
    from transformers import TrainerCallback

    class ReportCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            _barrier()  # every rank's files of this save are complete
            source = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            metrics = {}
            for log in state.log_history:
                metrics.update(log)
            metrics["step"] = state.global_step
            with tempfile.TemporaryDirectory() as folder:
                target = os.path.join(folder, CHECKPOINT_NAME)
                os.makedirs(target)
                for name in sorted(os.listdir(source)):
                    if not _owned_by(name, args.process_index):
                        continue
                    path = os.path.join(source, name)
                    copy = shutil.copytree if os.path.isdir(path) else shutil.copy2
                    copy(path, os.path.join(target, name))
                checkpoint = ray.train.Checkpoint.from_directory(folder)
                ray.train.report(metrics, checkpoint=checkpoint)

    return ReportCheckpoint()


def latest_checkpoint(in_ray: bool) -> str | None:
    """The HF checkpoint folder of Ray Train's latest checkpoint (a local copy), or None."""
    if not in_ray:
        return None
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    return os.path.join(checkpoint.to_directory(), CHECKPOINT_NAME)


def resumed_step(folder: str | None) -> int:
    """The global step of an HF checkpoint folder; -1 without one."""
    if folder is None:
        return -1
    with open(os.path.join(folder, "trainer_state.json")) as handle:
        return int(json.load(handle)["global_step"])
