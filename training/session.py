"""Where a training loop runs: inside Ray Train (`TorchTrainer` workers) or as one plain process.

`current_session()` returns a small object with the worker's rank, world size and device, and
the three things a loop needs from its host: wrap the model for data parallelism, report
metrics with an optional checkpoint directory, and hand back the latest checkpoint to resume
from. In Ray Train that is `prepare_model` (DDP: gloo on CPU, NCCL on GPU), `ray.train.report`
and `ray.train.get_checkpoint`; in one process the model is used as is and checkpoints are
directories `OUT/checkpoints/step-NNNNNNNN`, so the plain function resumes too.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager

__all__ = ["LocalSession", "RaySession", "current_session", "fit_torch_trainer"]


def fit_torch_trainer(
    loop, loop_config: dict, out: str, name: str, num_workers: int, use_gpu: bool
):
    """Run `loop` on `num_workers` Ray Train workers with checkpoints under OUT/ray/NAME; a
    rerun with the same `out` resumes from the latest checkpoint. Returns the `Result`.

    `out` may be an object-store URI: Ray Train then persists checkpoints (and its run state)
    through the URI's pyarrow filesystem, so workers on other nodes need no shared disk and a
    rerun anywhere resumes from the bucket."""
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
        run_config=RunConfig(
            name=name,
            storage_path=_storage_path(out),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    return trainer.fit()


def _storage_path(out: str) -> str:
    from operators import storage

    if storage.is_remote(out):
        return storage.join(out, "ray")
    return os.path.abspath(os.path.join(out, "ray"))


class RaySession:
    """A Ray Train worker."""

    def __init__(self):
        import ray.train
        import ray.train.torch

        context = ray.train.get_context()
        self.rank = context.get_world_rank()
        self.world = context.get_world_size()
        self.device = str(ray.train.torch.get_device())

    def prepare(self, model):
        import ray.train.torch

        if self.world == 1:
            return model
        # Batches without media leave the vision tower unused; DDP must allow that.
        return ray.train.torch.prepare_model(
            model, parallel_strategy_kwargs={"find_unused_parameters": True}
        )

    def report(self, metrics: dict, checkpoint_dir: str | None = None) -> None:
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=checkpoint)

    @contextmanager
    def latest_checkpoint(self):
        """The latest reported checkpoint as a local directory, or None."""
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as folder:
            yield folder


class LocalSession:
    """One plain process on `device` ("auto": cuda when available); checkpoints are kept under
    `out/checkpoints/` (the last `keep`)."""

    rank, world = 0, 1

    def __init__(self, out: str, device: str = "auto", keep: int = 2):
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.root = os.path.join(out, "checkpoints")
        self.device, self.keep = device, keep

    def prepare(self, model):
        return model

    def _existing(self) -> list[str]:
        if not os.path.isdir(self.root):
            return []
        return sorted(d for d in os.listdir(self.root) if d.startswith("step-"))

    def report(self, metrics: dict, checkpoint_dir: str | None = None) -> None:
        if not checkpoint_dir:
            return
        name = f"step-{int(metrics['step']):08d}"
        target = os.path.join(self.root, name)
        tmp = target + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(checkpoint_dir, tmp)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        for old in self._existing()[: -self.keep]:
            shutil.rmtree(os.path.join(self.root, old), ignore_errors=True)

    @contextmanager
    def latest_checkpoint(self):
        existing = [d for d in self._existing() if not d.endswith(".tmp")]
        yield os.path.join(self.root, existing[-1]) if existing else None


def current_session(out: str):
    """The Ray Train session when called inside `trainer.fit()`, else a local one (on the GPU
    when there is one). A process without Ray installed is never inside Ray Train."""
    try:
        return RaySession()
    except (RuntimeError, ImportError):
        return LocalSession(out)
