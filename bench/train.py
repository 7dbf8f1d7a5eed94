"""Samples/s of our SFT loop (Ray Train, 1 and 2 workers) beside a plain single-process HF
`Trainer` on the same rows, model, encoding and batch size; the ratio is Ray's overhead.

Both sides encode rows with `operators.vlm_inputs` and keep the encodings after the first
epoch (`cache_encodings`), run `epochs` passes, and count training-loop time only (model
loading and Ray start-up are printed separately). The model is the ~1M-parameter tiny
Qwen2-VL; `--rows` lines of the synthetic pool.

    python bench/train.py --rows 512 --epochs 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def synthetic_rows(root: str, n: int):
    """ROOT/rows.parquet: the readable rows of an `n`-line synthetic pool (defective lines
    quarantined at read), with the `position` column SFT reads. Returns the Table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from operators.formats.readers import iter_chunk_tables
    from operators.formats.records import RecordOptions
    from ray_jobs.synth import synthesize

    synthesize(n, os.path.join(root, "pool"), seed=0)
    options = RecordOptions(media_root=os.path.join(root, "pool"))
    pool = os.path.join(root, "pool", "pool.jsonl")
    rows = pa.concat_tables([r for r, _ in iter_chunk_tables(pool, options)])
    rows = rows.append_column("position", pa.array(range(rows.num_rows), type=pa.int64()))
    pq.write_table(rows, os.path.join(root, "rows.parquet"))
    return rows


def _setup(root: str, n: int):
    from training.tiny_models import TinyConfig, build_tiny_qwen2_vl

    rows = synthetic_rows(root, n)
    return build_tiny_qwen2_vl(os.path.join(root, "model"), TinyConfig()), rows


def bench_ours(model: str, root: str, workers: int, epochs: int, batch: int) -> dict:
    from training.sft import SftConfig, run_sft

    config = SftConfig(
        model=model,
        rows=os.path.join(root, "rows.parquet"),
        out=os.path.join(root, f"ours{workers}"),
        batch_size=batch,
        epochs=epochs,
        eval_every=10**9,
        cache_encodings=True,
    )
    started = time.time()
    result = run_sft(config, num_workers=workers, name=f"bench{workers}")
    metrics = result.metrics
    return {
        "samples_per_s": metrics["samples_seen"] / metrics["train_s"],
        "loop_s": metrics["train_s"],
        "total_s": time.time() - started,
        "loss": metrics["loss"],
    }


class EncodedRows:
    """A torch-style dataset: row k -> its encoding (kept after the first use)."""

    def __init__(self, rows, processor):
        from operators.vlm_inputs import InputsConfig

        self.rows, self.processor, self.cache = rows.to_pylist(), processor, {}
        self.inputs = InputsConfig()

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, k):
        from training.evaluate import encode_one

        if k not in self.cache:
            self.cache[k] = encode_one(self.processor, self.rows[k], self.inputs)[0]
        return self.cache[k]


def reference_trainer(model, processor, rows, output_dir: str, batch: int, use_cpu: bool, **run):
    """The reference of the SFT benchmarks: a plain HF `Trainer` over `rows` (a Table) with our
    encoding and collation, constant learning rate, no saves; `run`: num_train_epochs or
    max_steps, learning_rate. Its sampler shuffles; the work per sample is the same."""
    from transformers import Trainer, TrainingArguments

    from operators.vlm_inputs import collate

    def collator(encodings):
        batch_ = collate([e for e in encodings if e is not None], processor, "right")
        return {**batch_.inputs, "labels": batch_.labels}

    args = TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=batch,
        use_cpu=use_cpu,
        report_to="none",
        save_strategy="no",
        logging_steps=10**6,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        **run,
    )
    return Trainer(
        model=model,
        args=args,
        train_dataset=EncodedRows(rows, processor),
        data_collator=collator,
    )


def bench_hf(model_path: str, rows, root: str, epochs: int, batch: int) -> dict:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    torch.set_num_threads(1)
    processor = AutoProcessor.from_pretrained(model_path)
    model = AutoModelForImageTextToText.from_pretrained(model_path)
    trainer = reference_trainer(
        model,
        processor,
        rows,
        os.path.join(root, "hf"),
        batch,
        use_cpu=True,
        num_train_epochs=epochs,
        learning_rate=1e-3,
    )
    trainer.train()
    runtime = trainer.state.log_history[-1]["train_runtime"]
    return {"samples_per_s": len(rows) * epochs / runtime, "loop_s": runtime}


def main() -> None:
    import ray

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        model, rows = _setup(root, args.rows)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        hf = bench_hf(model, rows, root, args.epochs, args.batch)
        ours = {w: bench_ours(model, root, w, args.epochs, args.batch) for w in (1, 2)}
        print(f"rows={rows.num_rows} epochs={args.epochs} batch={args.batch} (CPU)")
        print(
            f"HF Trainer, 1 process:   {hf['samples_per_s']:.1f} samples/s "
            f"(loop {hf['loop_s']:.1f} s)"
        )
        for w, r in ours.items():
            print(
                f"ours, Ray Train {w} worker{'s' if w > 1 else ' '}: {r['samples_per_s']:.1f} "
                f"samples/s (loop {r['loop_s']:.1f} s, with Ray start {r['total_s']:.1f} s), "
                f"ratio to HF {r['samples_per_s'] / hf['samples_per_s']:.2f}"
            )


if __name__ == "__main__":
    main()
