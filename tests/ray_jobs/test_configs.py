"""The cluster manifests in configs/ parse and carry what KubeRay / the autoscaler need."""

import pathlib

import yaml

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"


def test_kuberay_rayjob_manifest():
    job = yaml.safe_load((CONFIGS / "kuberay-rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    assert spec["entrypoint"].startswith("python -m ray_jobs.run ")
    cluster = spec["rayClusterSpec"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert "template" in cluster["headGroupSpec"]
    gpu = [g for g in cluster["workerGroupSpecs"] if g["groupName"] == "gpu-workers"]
    assert len(gpu) == 1
    group = gpu[0]
    assert group["minReplicas"] == 0 < group["maxReplicas"]
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert int(limits["nvidia.com/gpu"]) >= 1
    assert cluster["rayVersion"] == "2.60.0"


def test_autoscaler_cluster_yaml():
    config = yaml.safe_load((CONFIGS / "ray-cluster-autoscaler.yaml").read_text())
    for key in (
        "cluster_name",
        "max_workers",
        "provider",
        "available_node_types",
        "head_node_type",
        "head_start_ray_commands",
        "worker_start_ray_commands",
    ):
        assert key in config, key
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    gpu = types["gpu_worker"]
    assert gpu["min_workers"] == 0 < gpu["max_workers"] <= config["max_workers"]
    assert (
        sum(t.get("max_workers", 0) for n, t in types.items() if n != "head")
        <= (config["max_workers"])
    )


def test_the_cluster_recipe_the_rayjob_submits_loads_and_plans(tmp_path):
    from ray_jobs.recipe import load_recipe
    from ray_jobs.stages import score_steps_for

    job = yaml.safe_load((CONFIGS / "kuberay-rayjob.yaml").read_text())
    recipe_path = job["spec"]["entrypoint"].split()[-1]
    assert recipe_path == "configs/recipe-cluster.yaml"
    recipe = load_recipe(str(CONFIGS.parent / recipe_path))
    assert recipe.run.startswith("s3://") and recipe.input.startswith("s3://")
    assert recipe.score.num_gpus == 1 and recipe.score.generation_backend == "vllm"
    steps = {step.name: step for step in score_steps_for(recipe)}
    assert steps["model_descriptors"].num_gpus == 1
    assert steps["generation"].fn_kwargs["config"].model == recipe.run + "/proxy"
    assert all(spec.get("use_gpu") for spec in recipe.train)
