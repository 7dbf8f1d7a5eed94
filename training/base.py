"""The synthetic world's pretrained base model: a tiny Qwen2-VL pretrained on captions.

Real post-training starts from a VLM that already reads images (Qwen2-VL, LLaVA); a model from
random weights reads nothing, so no descriptor or selection could be judged with it. The base
is the tiny Qwen2-VL of training/tiny_models.py, with a tokenizer trained on the caption and
question words, pretrained by the product's SFT loop (training/sft.py, caption tokens only)
on the caption corpus of training/base_corpus.py, as LLaVA's alignment stage trains on
captions before instruction tuning.

The build is deterministic and content-addressed: `base_key(recipe)` hashes the corpus
version, the recipe (seed, corpus size, steps, batch, learning rate, model size) and the
model's code version, and the model lives in `cache_root()/base/<key>/` (`$MMCURATE_CACHE`,
else `$XDG_CACHE_HOME/mmcurate`, else `~/.cache/mmcurate`). `ensure_base` returns that folder,
building it first when it is absent; the folder is renamed into place whole and holds
`base.json` (recipe, key, build figures) and a `_SUCCESS` marker written last. The result is an
HF model directory (save_pretrained + processor) that the runtime loads by path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace

from training.base_corpus import FIRST_LINE, write_corpus
from training.tiny_models import BASE_CORPUS, TinyConfig, build_tiny_qwen2_vl

__all__ = ["BaseRecipe", "base_key", "build_base", "cache_root", "ensure_base"]

CORPUS_VERSION = 1  # bump when the captions or the renderer's output change
MODEL_SIZES = {"tiny": TinyConfig(), "micro": TinyConfig.micro()}


@dataclass(frozen=True)
class BaseRecipe:
    """How the base is built; every field is part of its key (except `threads`)."""

    seed: int = 0  # corpus draws, model init and order
    captions: int = 6000  # corpus rows (distinct media)
    steps: int = 900  # optimizer steps (batch rows each); the corpus repeats in its order
    batch_size: int = 32
    learning_rate: float = 2e-3
    size: str = "tiny"  # a key of MODEL_SIZES
    num_frames: int = 8  # video frames seen (the pool's default)
    threads: int = 1  # torch threads; not part of the key

    def key_fields(self) -> dict:
        fields = asdict(self)
        fields.pop("threads")
        return fields


def base_key(recipe: BaseRecipe) -> str:
    """A content address: the SHA-1 (16 hex digits) of the corpus version and the recipe."""
    payload = {"corpus_version": CORPUS_VERSION, "first_line": FIRST_LINE}
    payload.update(recipe.key_fields())
    digest = hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    return f"qwen2-vl-{recipe.size}-{digest}"


def cache_root() -> str:
    """The user cache folder: $MMCURATE_CACHE, else $XDG_CACHE_HOME/mmcurate, else
    ~/.cache/mmcurate."""
    if os.environ.get("MMCURATE_CACHE"):
        return os.path.abspath(os.environ["MMCURATE_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "mmcurate")


def _tokenizer_texts(rows_path: str) -> list[str]:
    """Caption and prompt texts of the corpus plus the pool's question words (BASE_CORPUS)."""
    import pyarrow.parquet as pq

    texts = [
        m["content"]
        for r in pq.read_table(rows_path, columns=["messages"]).to_pylist()
        for m in r["messages"]
    ]
    return texts + [BASE_CORPUS] * 20


def build_base(out: str, recipe: BaseRecipe = BaseRecipe()) -> dict:
    """Build the base into `out` (an HF model directory) and return the build figures."""
    from training.sft import train_loop_per_worker

    started = time.time()
    with tempfile.TemporaryDirectory(prefix="mmcurate-base-") as work:
        rows = write_corpus(recipe.seed, recipe.captions, os.path.join(work, "corpus"))
        corpus_s = time.time() - started
        init = os.path.join(work, "init")
        size = replace(MODEL_SIZES[recipe.size], seed=recipe.seed)
        build_tiny_qwen2_vl(init, size, texts=_tokenizer_texts(rows))
        train = os.path.join(work, "train")
        progress = train_loop_per_worker(
            {
                "model": init,
                "rows": rows,
                "out": train,
                "batch_size": recipe.batch_size,
                "learning_rate": recipe.learning_rate,
                "epochs": 1 + recipe.steps * recipe.batch_size // recipe.captions,
                "max_steps": recipe.steps,
                "eval_every": 0,
                "cache_encodings": True,
                "num_frames": recipe.num_frames,
                "threads": recipe.threads,
                "seed": recipe.seed,
            }
        )
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(os.path.join(train, "model"), out)
    figures = {
        "key": base_key(recipe),
        "recipe": asdict(recipe),
        "corpus_version": CORPUS_VERSION,
        "samples_seen": progress["samples_seen"],
        "final_loss": progress["loss"],
        "corpus_s": round(corpus_s, 1),
        "build_s": round(time.time() - started, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    with open(os.path.join(out, "base.json"), "w") as handle:
        json.dump(figures, handle, indent=2)
    return figures


def ensure_base(recipe: BaseRecipe = BaseRecipe(), root: str | None = None) -> str:
    """The cached base of `recipe` (built first when absent); returns its folder."""
    final = os.path.join(root or cache_root(), "base", base_key(recipe))
    if os.path.exists(os.path.join(final, "_SUCCESS")):
        return final
    os.makedirs(os.path.dirname(final), exist_ok=True)
    tmp = f"{final}.tmp-{os.getpid()}"
    figures = build_base(tmp, recipe)
    with open(os.path.join(tmp, "_SUCCESS"), "w") as handle:
        json.dump({"key": figures["key"]}, handle)
    if os.path.exists(os.path.join(final, "_SUCCESS")):  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return final
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    print(f"[mmcurate] base built: {final} ({figures['build_s']}s)", flush=True)
    return final
