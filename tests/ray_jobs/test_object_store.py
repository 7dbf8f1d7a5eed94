"""The pipeline on object-store URIs: a real S3 server on loopback (moto_server), pyarrow's real
S3 client, and the session's local Ray. A pool uploaded to the bucket is run through ingest ->
score -> dedup -> cluster -> select -> report with `input`, `media_root` and `run` as `s3://`
URIs; every output in the bucket must equal a local run's on the same pool.

moto[server] pins python-dateutil < 3, which the project's environment does not allow, so the
server runs from its own virtual environment, made by the README's set-up command
(`bash scripts/setup.sh`, at the version pinned in pyproject.toml's `s3test` extra). The test
looks at MMCURATE_MOTO_SERVER, `.venv-moto/bin/moto_server` and PATH, in that order, and uses
the first server of the pinned version; another version (moto 5.2.1's multipart upload fails
with INTERNAL_FAILURE) or none is a skip naming the set-up step, or a failure when
MMCURATE_REQUIRE_S3 is set.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pytest
import yaml

from operators import storage
from ray_jobs.recipe import load_recipe
from ray_jobs.run import plan, run_recipe
from ray_jobs.synth import synthesize

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUCKET = "mmcurate-test"
RATES = {  # more bad rows than the default pool, so quarantine is exercised remotely
    "exact_dup": 0.05,
    "near_dup": 0.08,
    "wrong_answer": 0.05,
    "text_answerable": 0.0,
    "corrupt_media": 0.04,
    "missing_media": 0.04,
    "malformed": 0.03,
    "path_escape": 0.04,
}
STAGES = ["ingest", "score", "dedup", "cluster", "select", "report"]


def pinned_moto_version() -> str:
    """The moto version of pyproject.toml's `s3test` extra (`moto[server]==X`)."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        extras = tomllib.load(handle)["project"]["optional-dependencies"]
    pin = next(req for req in extras["s3test"] if req.startswith("moto"))
    return pin.split("==", 1)[1]


def _server_interpreter(server: str) -> str:
    """The Python that runs a `moto_server` script: its shebang's, else the `python` beside it
    (a pyenv shim is a shell script whose neighbour `python` is the same environment's)."""
    with open(server, "rb") as handle:
        first = handle.readline().decode("utf-8", "replace").strip()
    if first.startswith("#!") and "python" in os.path.basename(first[2:].split()[0]):
        return first[2:].split()[0]
    return os.path.join(os.path.dirname(server), "python")


def moto_version(server: str) -> str | None:
    """The moto version installed beside `server`, or None when it cannot be told."""
    try:
        result = subprocess.run(
            [
                _server_interpreter(server),
                "-c",
                "import importlib.metadata as m; print(m.version('moto'))",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def find_moto_server() -> tuple[str | None, list[str]]:
    """The first candidate server of the pinned version, and what was said of the others."""
    candidates = [
        os.environ.get("MMCURATE_MOTO_SERVER"),
        os.path.join(ROOT, ".venv-moto", "bin", "moto_server"),
        shutil.which("moto_server"),
    ]
    pinned, rejected = pinned_moto_version(), []
    for server in dict.fromkeys(c for c in candidates if c and os.path.exists(c)):
        version = moto_version(server)
        if version == pinned:
            return server, rejected
        rejected.append(f"{server} is moto {version or 'of unknown version'}, not {pinned}")
    return None, rejected


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, process, seconds: float = 30.0) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"moto_server did not answer at {url}")


@pytest.fixture(scope="module")
def s3(ray_session):
    """A moto S3 server, its endpoint in this process's environment and in the Ray workers'
    (Ray is restarted with the variables in `runtime_env`, as a cluster job would set them)."""
    server, rejected = find_moto_server()
    if server is None:
        found = "; ".join(rejected) or "none in MMCURATE_MOTO_SERVER, .venv-moto or on PATH"
        message = (
            f"no moto_server {pinned_moto_version()} ({found}): "
            "run the README's set-up command, `bash scripts/setup.sh`"
        )
        if os.environ.get("MMCURATE_REQUIRE_S3"):
            pytest.fail(f"{message} (MMCURATE_REQUIRE_S3 is set)")
        pytest.skip(message)
    print(f"[s3] moto_server {pinned_moto_version()} from {server}", file=sys.__stderr__)
    port = _free_port()
    process = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    saved = {k: os.environ.get(k) for k in env}
    try:
        _wait_until_up(endpoint, process)
        os.environ.update(env)
        storage._filesystem_of.cache_clear()  # a filesystem cached by an earlier server's module
        admin = pafs.S3FileSystem(
            endpoint_override=f"127.0.0.1:{port}", scheme="http", allow_bucket_creation=True
        )
        admin.create_dir(BUCKET)
        ray_session.shutdown()
        ray_session.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": env},
        )
        ray_session.data.DataContext.get_current().enable_progress_bars = False
        yield f"s3://{BUCKET}"
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        storage._filesystem_of.cache_clear()
        process.terminate()
        process.wait(timeout=30)


def test_moto_server_of_another_version_is_never_used(tmp_path, monkeypatch):
    """A server whose environment lacks the pinned moto is passed over, with its reason."""
    fake = tmp_path / "bin" / "moto_server"
    fake.parent.mkdir()
    fake.write_text(f"#!{sys.executable}\nprint('not moto')\n")  # no moto in this venv
    fake.chmod(0o755)
    monkeypatch.setenv("MMCURATE_MOTO_SERVER", str(fake))
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    server, rejected = find_moto_server()
    pinned = pinned_moto_version()
    assert server != str(fake)
    assert rejected[0] == f"{fake} is moto of unknown version, not {pinned}"
    if server is not None:  # the set-up script's environment, when it exists
        assert moto_version(server) == pinned


def test_storage_calls_on_s3(s3):
    base = storage.join(s3, "unit")
    storage.write_bytes(storage.join(base, "a", "b.bin"), b"0123456789")
    assert storage.read_bytes(storage.join(base, "a", "b.bin"), 3, 7) == b"3456"
    assert storage.size(storage.join(base, "a", "b.bin")) == 10
    assert storage.isdir(storage.join(base, "a")) and storage.listdir(base) == ["a"]
    assert storage.listdir(storage.join(base, "none")) == []
    with pytest.raises(RuntimeError), storage.open_output(storage.join(base, "c.txt")) as out:
        out.write(b"half")
        raise RuntimeError("killed")
    assert not storage.exists(storage.join(base, "c.txt"))
    table = pa.table({"id": ["x", "y"]})
    storage.write_parquet(table, storage.join(base, "t", "part-00000.parquet"))
    assert storage.read_parquet(storage.join(base, "t")).equals(table)
    storage.remove(base)
    assert not storage.exists(storage.join(base, "a", "b.bin"))


def _upload_pool(local: str, target: str) -> None:
    """Upload the pool's regular files (an object store has no symlinks: the synthetic pool's
    symlink escapes are simply absent in the bucket)."""
    for folder, _, files in os.walk(local):
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                continue
            key = os.path.relpath(path, local).replace(os.sep, "/")
            with open(path, "rb") as handle:
                storage.write_bytes(storage.join(target, key), handle.read())


@pytest.fixture(scope="module")
def pools(s3, tmp_path_factory):
    """(local pool, the same pool in the bucket): 160 lines with extra bad rows."""
    local = str(tmp_path_factory.mktemp("pool160"))
    synthesize(160, local, seed=5, rates=RATES, parallel=False)
    remote = storage.join(s3, "pools", "p160")
    _upload_pool(local, remote)
    return local, remote


def _recipe(tmp_path, name: str, pool: str, run: str, **extra) -> str:
    data = {
        "name": name,
        "input": storage.join(pool, "pool.jsonl"),
        "media_root": pool,
        "run": run,
        "num_cpus": 2,
        "stages": STAGES,
        "ingest": {"chunk_bytes": 12000},
        "score": {
            "descriptors": [],
            "ost": "none",
            "capabilities": "none",
            "shards_per_group": 8,
        },
        "cluster": {"k": 4, "sample_size": 200},
        "subsets": [
            # no model descriptors in this run: GDO's neutral fallback, asked for by name
            {
                "method": "gdo",
                "preset": "diverse",
                "budget": 0.5,
                "allow_missing_descriptors": True,
            },
            {"method": "random", "budget": 30},
        ],
        **extra,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _rows(run: str, stage: str):
    """A stage folder's Parquet files as one table sorted by id."""
    folder = storage.join(run, stage)
    files = [n for n in storage.listdir(folder) if n.endswith(".parquet")]
    tables = [storage.read_parquet(storage.join(folder, n)) for n in files]
    return pa.concat_tables(tables).sort_by("id")


def _relative_media(table, root: str):
    """Replace the `media` column by paths relative to the media root (local or URI)."""
    media = [[p[len(root) :].lstrip("/") for p in paths] for paths in table["media"].to_pylist()]
    index = table.column_names.index("media")
    return table.set_column(index, "media", [media]).drop_columns(["origin"])


@pytest.mark.slow
def test_pipeline_on_s3_equals_local_run(s3, pools, tmp_path):
    local_pool, remote_pool = pools
    local_run, remote_run = str(tmp_path / "run"), storage.join(s3, "runs", "p160")
    local = run_recipe(load_recipe(_recipe(tmp_path, "local", local_pool, local_run)))
    recipe = load_recipe(_recipe(tmp_path, "remote", remote_pool, remote_run))
    remote = run_recipe(recipe)

    # Counts reconcile, and the remote media checks found the same bad rows.
    for stage in ("ingest", "score"):
        counts = remote[stage]
        assert counts["input"] == counts["kept"] + counts["quarantined"]
    assert remote["ingest"]["input"] == 160
    assert remote["score"] == local["score"]
    assert remote["dedup"] == local["dedup"]
    links = (
        {
            os.path.splitext(name)[0]
            for name in os.listdir(os.path.join(local_pool, "media", "links"))
        }
        if os.path.isdir(os.path.join(local_pool, "media", "links"))
        else set()
    )
    local_q = _rows(local_run, "quarantine/ingest").to_pylist()
    remote_q = _rows(remote_run, "quarantine/ingest").to_pylist()
    assert [q["id"] for q in remote_q] == [q["id"] for q in local_q]
    for mine, theirs in zip(remote_q, local_q, strict=True):
        line = int(theirs["origin"].rsplit(":", 1)[1])
        if f"{line:07d}" in links:  # a symlink escape locally; absent in the bucket
            assert (theirs["reason"], mine["reason"]) == ("path_escape", "missing_media")
        else:
            assert mine["reason"] == theirs["reason"], (mine, theirs)
    reasons = remote["ingest"]["reasons"]
    assert reasons.get("corrupt_media", 0) > 0 and reasons.get("path_escape", 0) > 0

    # The same rows, descriptors, duplicate clusters, clusters and subsets.
    for stage in ("pool", "scored"):
        mine = _relative_media(_rows(remote_run, stage), remote_pool)
        theirs = _relative_media(_rows(local_run, stage), os.path.realpath(local_pool))
        assert mine.column_names == theirs.column_names
        assert mine.equals(theirs), stage
    assert remote["score"]["kept"] > 100
    assert _rows(remote_run, "dedup").equals(_rows(local_run, "dedup"))
    dedup = _rows(remote_run, "dedup")
    assert pc.sum(pc.invert(dedup["dup_keep"])).as_py() > 0  # duplicates were found
    assert _rows(remote_run, "clusters").equals(_rows(local_run, "clusters"))
    for name in ("gdo-diverse", "random"):
        subset = storage.join("subsets", name)
        assert _rows(remote_run, subset).equals(_rows(local_run, subset))
        manifests = [
            json.loads(storage.read_text(storage.join(run, subset, "manifest.json")))
            for run in (remote_run, local_run)
        ]
        assert manifests[0] == manifests[1]
    page = storage.read_text(storage.join(remote_run, "report.html"))
    assert "mmcurate report: p160" in page and "Duplicates" in page
    config = yaml.safe_load(storage.read_text(storage.join(remote_run, "config.yaml")))
    assert config["run"] == remote_run

    # Resume semantics: complete stages are skipped; --only removes and reruns remotely.
    actions = dict(plan(recipe))
    assert all(actions[s] == "skip (complete)" for s in STAGES[:-1]), actions
    marker = storage.join(remote_run, "dedup", "_SUCCESS")
    storage.write_text(storage.join(remote_run, "dedup", "stale.parquet"), "not Parquet")
    rerun = run_recipe(recipe, only="dedup")
    assert not storage.exists(storage.join(remote_run, "dedup", "stale.parquet"))
    assert rerun["dedup"] == local["dedup"] and storage.exists(marker)
    assert _rows(remote_run, "dedup").equals(_rows(local_run, "dedup"))


@pytest.mark.slow
def test_model_stages_on_s3(s3, pools, tmp_path):
    """Proxy warm-up (tiny base built locally and uploaded, Ray Train checkpoints in the
    bucket) and the loss descriptor on the proxy copied back to a local cache."""
    from ray_jobs.proxy import proxy_warmup

    _, remote_pool = pools
    run = storage.join(s3, "runs", "model")
    proxy = {"base": "", "fraction": 0.3, "epochs": 1, "batch_size": 16}
    score = {"descriptors": ["loss"], "ost": "none", "text_embedding": False, "styles": False}
    score |= {"capabilities": "none", "shards_per_group": 8, "model_batch_size": 32}
    path = _recipe(tmp_path, "model", remote_pool, run, proxy=proxy, score=score)
    data = yaml.safe_load(open(path))
    data.update(stages=["ingest", "proxy", "score"], subsets=[])
    with open(path, "w") as handle:
        yaml.safe_dump(data, handle)
    results = run_recipe(load_recipe(path))

    assert storage.exists(storage.join(run, "proxy_base", "config.json"))
    assert storage.exists(storage.join(run, "proxy", "model.safetensors"))
    assert storage.listdir(storage.join(run, "proxy_train"))  # Ray Train's run in the bucket
    trained = storage.read_text(storage.join(run, "proxy", "train_ids.txt")).split()
    kept = results["ingest"]["kept"]
    assert 0.15 * kept < len(trained) < 0.45 * kept
    score = results["score"]
    assert score["input"] == kept == score["kept"] + score["quarantined"]
    loss = _rows(run, "scored")["loss"].to_numpy(zero_copy_only=False)
    assert len(loss) == score["kept"] and (loss > 0).all() and (loss < 50).all()
    before = results["proxy"]["steps"]
    assert proxy_warmup(run)["steps"] == before  # complete in the bucket: read back, not redone
