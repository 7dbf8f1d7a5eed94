"""The pretrained base: content address, cache, determinism, and the real runtime loading it
(training/base.py, ray_jobs/base.py). Builds use the micro model and a few steps."""

from __future__ import annotations

import dataclasses
import os

from training.base import BaseRecipe, base_key, cache_root, ensure_base

TINY_BUILD = BaseRecipe(captions=48, steps=4, batch_size=16, size="micro")


def test_key_changes_with_every_recipe_field_but_threads():
    keys = {base_key(TINY_BUILD)}
    changes = {
        "seed": 1,
        "captions": 49,
        "steps": 5,
        "batch_size": 8,
        "learning_rate": 1e-3,
        "size": "tiny",
        "num_frames": 4,
    }
    for field, value in changes.items():
        keys.add(base_key(dataclasses.replace(TINY_BUILD, **{field: value})))
    assert len(keys) == len(changes) + 1
    assert base_key(dataclasses.replace(TINY_BUILD, threads=2)) == base_key(TINY_BUILD)


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MMCURATE_CACHE", str(tmp_path / "c"))
    assert cache_root() == str(tmp_path / "c")
    monkeypatch.delenv("MMCURATE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_root() == str(tmp_path / "x" / "mmcurate")


def test_build_is_cached_deterministic_and_loads_through_the_runtime(tmp_path):
    import torch
    from safetensors.torch import load_file

    from operators.vlm_runtime import RuntimeConfig, VLMRuntime
    from training.tiny_models import TinyConfig, build_tiny_qwen2_vl

    first = ensure_base(TINY_BUILD, str(tmp_path / "a"))
    assert first == os.path.join(str(tmp_path / "a"), "base", base_key(TINY_BUILD))
    marker = os.path.join(first, "_SUCCESS")
    stamp = os.stat(marker).st_mtime_ns
    assert ensure_base(TINY_BUILD, str(tmp_path / "a")) == first
    assert os.stat(marker).st_mtime_ns == stamp  # found, not rebuilt
    second = ensure_base(TINY_BUILD, str(tmp_path / "b"))
    a = load_file(os.path.join(first, "model.safetensors"))
    b = load_file(os.path.join(second, "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the pretraining moved the weights away from the initialisation
    init = build_tiny_qwen2_vl(str(tmp_path / "init"), TinyConfig.micro())
    c = load_file(os.path.join(init, "model.safetensors"))
    moved = [k for k in a if a[k].shape == c[k].shape and not torch.allclose(a[k], c[k])]
    assert len(moved) > len(a) // 2
    runtime = VLMRuntime(RuntimeConfig(model=first))
    assert runtime.model.config.model_type == "qwen2_vl"


def test_cli_path_names_the_cache_folder(tmp_path, capsys):
    from ray_jobs.cli import main

    assert main(["base", "path", "--cache", str(tmp_path), "--steps", "7"]) == 0
    key = base_key(dataclasses.replace(BaseRecipe(), steps=7))
    assert capsys.readouterr().out.strip() == os.path.join(str(tmp_path), "base", key)
