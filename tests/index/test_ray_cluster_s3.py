"""A real multi-node Ray cluster (head + 2 worker nodes on this machine) indexing into S3 served by moto.

What docs/search.md tells users to run, run here: `bindspace index --ray ADDRESS --db s3://...`
with the endpoint as --storage-option and credentials from AWS_* variables, then `search` and
`serve` on the same index; a worker node killed mid-run; the driver killed and rerun; an
unreachable endpoint and bad credentials. moto runs with IAM authentication on, so wrong
credentials are really refused. Under CI=true a missing piece fails instead of skipping.
"""
from __future__ import annotations

import base64
import importlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bindspace.index import open_store
from bindspace.index.indexer import ENV_COMMIT_PAUSE, index_paths
from bindspace.integrity import sha256_file
from testkit import free_port, post_json, spawned_serve

TINY = "imagebind_tiny_test"
BUCKET = "bindspace-ci"
MB = 2**20


def require(module: str) -> Any:
    """Import `module`; skip without it, but fail under CI=true (this test must run there)."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{module} is missing ({err}): CI must run the Ray cluster + S3 test")
        pytest.skip(f"{module} is not installed")


@pytest.fixture(scope="module")
def s3() -> Any:
    """moto's S3 server with IAM auth: a user allowed s3:*, its key, and a bucket."""
    require("moto.server")
    boto3 = require("boto3")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    # The first 3 requests (create user, policy, key) are unauthenticated; everything after must sign.
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("moto server did not start")
                time.sleep(0.2)
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup",
                           aws_secret_access_key="setup")
        iam.create_user(UserName="indexer")
        iam.put_user_policy(UserName="indexer", PolicyName="s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="indexer")["AccessKey"]
        creds = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
                 "AWS_REGION": "us-east-1"}
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                     aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket=BUCKET)
        yield {"endpoint": endpoint, "env": creds,
               "options": {"endpoint": endpoint, "allow_http": "true", "region": "us-east-1",
                           "aws_access_key_id": creds["AWS_ACCESS_KEY_ID"],
                           "aws_secret_access_key": creds["AWS_SECRET_ACCESS_KEY"]}}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster() -> Any:
    """A head node without CPUs (it schedules nothing) and two 1-CPU worker nodes, all on this machine."""
    require("ray.data")
    from ray.cluster_utils import Cluster

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # workers must get credentials from the driver
        assert name not in os.environ, f"unset {name}: the test checks that the driver hands it to workers"
    ray_cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "object_store_memory": 100 * MB, "include_dashboard": False})
    try:
        workers = [ray_cluster.add_node(num_cpus=1, object_store_memory=100 * MB) for _ in range(2)]
        ray_cluster.wait_for_nodes()
        yield ray_cluster, workers
    finally:
        ray_cluster.shutdown()


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "bindspace.cli", *args]


def s3_args(s3: Any) -> list[str]:
    """The endpoint as storage options; the credentials come from AWS_* variables (`cli_env`)."""
    return ["--storage-option", f"endpoint={s3['endpoint']}", "--storage-option", "allow_http=true"]


def cli_env(s3: Any, **extra: str) -> dict[str, str]:
    return {**os.environ, **s3["env"], **extra}


def index_args(root: Path, db: str, ckpt: Path, address: str, s3: Any) -> list[str]:
    return cli("index", str(root), "--db", db, *s3_args(s3), "--ray", address, "--model", TINY,
               "--checkpoint", str(ckpt), "--batch-size", "2", "--workers", "2", "--no-progress", "--ann", "no")


def rows(db: str, s3: Any) -> int:
    try:
        return open_store(db, storage_options=s3["options"]).count()
    except Exception:  # noqa: BLE001 - the table may not exist yet
        return 0


def check_exactly_once(db: str, s3: Any, expected: int) -> None:
    store = open_store(db, storage_options=s3["options"])
    by_uri = store.items_by_uri()
    assert store.count() == expected == len(by_uri)
    for uri, items in by_uri.items():
        assert len(items) == 1, uri
        assert items[0].content_hash == sha256_file(uri)
    assert store.dedupe() == 0


@pytest.mark.slow
def test_cli_on_cluster_into_s3_equals_local_then_search_and_serve(cluster, s3, tmp_path, media, embedder,
                                                                     tiny_pth):
    ray_cluster, _ = cluster
    for i in range(6):
        media.image(f"img{i}.png", seed=i)
    media.audio("long.wav", seconds=5.0)
    media.raw("broken.jpg", b"\xff\xd8\xff\xe0 nope")
    local = open_store(tmp_path / "local", create=True)
    index_paths([media.root], local, embedder, segment_seconds=2.0)

    db = f"s3://{BUCKET}/same"
    done = subprocess.run([*index_args(media.root, db, tiny_pth, ray_cluster.address, s3), "--segment-seconds", "2",
                           "--json"], env=cli_env(s3), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert (summary["added"], summary["items"]) == (7, 9)  # 6 images + 3 audio windows
    assert [os.path.basename(s["path"]) for s in summary["skipped"]] == ["broken.jpg"]

    remote = open_store(db, storage_options=s3["options"])
    want = {i.id: i for items in local.items_by_uri().values() for i in items}
    got = {i.id: i for items in remote.items_by_uri().values() for i in items}
    assert sorted(got) == sorted(want) and remote.count() == 9
    for rid, item in want.items():
        mine, theirs = remote.get(rid), local.get(rid)
        assert mine is not None and theirs is not None
        assert (mine.uri, mine.segment) == (item.uri, item.segment)
        np.testing.assert_allclose(np.asarray(mine.vector), np.asarray(theirs.vector), atol=1e-6)

    # search: the same s3:// index, the same options; an indexed image finds itself first
    found = subprocess.run(cli("search", "--db", db, *s3_args(s3), "--image", str(media.path("img3.png")), "-k", "3",
                               "--json"), env=cli_env(s3), capture_output=True, text=True, timeout=300)
    assert found.returncode == 0, found.stderr[-3000:]
    results = json.loads(found.stdout)["results"]
    assert results[0]["uri"] == str(media.path("img3.png")) and results[0]["score"] > 0.999

    # serve: the same index over HTTP
    with spawned_serve(["--db", db, *s3_args(s3), "--threads", "1"], env=cli_env(s3), ready_s=180) as server:
        image = base64.b64encode(media.path("img5.png").read_bytes()).decode()
        hits = post_json(server.base + "/v1/search", {"parts": [{"modality": "image", "data": image}], "k": 20})["hits"]
        assert sorted(h["id"] for h in hits) == sorted(want)
        assert hits[0]["uri"] == str(media.path("img5.png"))


@pytest.mark.slow
def test_worker_node_killed_mid_run_each_file_once(cluster, s3, media, tiny_model, tiny_pth):
    import ray

    from bindspace.index.indexer import model_info_for
    from bindspace.index.ray_indexer import ModelSpec, RayRunner

    ray_cluster, workers = cluster
    files = 24
    for i in range(files):
        media.image(f"img{i:02d}.png", seed=i)
    db = f"s3://{BUCKET}/node-killed"
    store = open_store(db, create=True, storage_options=s3["options"])

    def driver_writes(items: Any) -> None:
        raise AssertionError("the driver wrote rows: workers must write them")

    store.add = driver_writes  # type: ignore[method-assign]
    spec = ModelSpec(name=TINY, checkpoint=str(tiny_pth), batch_size=2)
    result: dict[str, Any] = {}

    def run() -> None:
        runner = RayRunner(spec, address=ray_cluster.address, workers=2, batch_files=2,
                           init_kwargs={"configure_logging": False})
        try:
            result["summary"] = index_paths([media.root], store, None, runner=runner,
                                            model_info=model_info_for(tiny_model, tiny_pth), commit_files=2, ann=False)
        except BaseException as exc:  # noqa: BLE001 - reported below; a rerun must then finish the job
            result["error"] = exc

    try:
        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 400
        while rows(db, s3) < 4:
            assert thread.is_alive(), f"the run ended before a node could be killed: {result}"
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.3)
        assert rows(db, s3) < files
        ray_cluster.remove_node(workers[1], allow_graceful=False)  # SIGKILL the node's raylet and workers
        thread.join(timeout=400)
        assert not thread.is_alive(), "the run hung after losing a node"
        if "error" in result:  # allowed: then the same run again must finish it
            again = index_paths([media.root], store, None,
                                runner=RayRunner(spec, address=ray_cluster.address, workers=1, batch_files=2),
                                model_info=model_info_for(tiny_model, tiny_pth), commit_files=2, ann=False)
            assert again.added + again.unchanged == files
        else:
            assert result["summary"].added == files
        check_exactly_once(db, s3, files)
    finally:
        ray.shutdown()
        workers[1] = ray_cluster.add_node(num_cpus=1, object_store_memory=100 * MB)  # two workers again
        ray_cluster.wait_for_nodes()


@pytest.mark.slow
def test_driver_killed_then_rerun_resumes(cluster, s3, media, tiny_pth):
    ray_cluster, _ = cluster
    files = 12
    for i in range(files):
        media.image(f"img{i:02d}.png", seed=50 + i)
    db = f"s3://{BUCKET}/driver-killed"
    cmd = index_args(media.root, db, tiny_pth, ray_cluster.address, s3)

    proc = subprocess.Popen(cmd, env=cli_env(s3, **{ENV_COMMIT_PAUSE: "1.0"}), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 400
    while not 2 <= rows(db, s3) < files:
        assert proc.poll() is None, f"the indexer ended before it could be killed: {proc.communicate()[1]!r}"
        assert time.monotonic() < deadline, "the indexer made no progress"
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    committed = rows(db, s3)
    assert 2 <= committed < files

    done = subprocess.run(cmd, env=cli_env(s3), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"added {files - committed}, updated 0, removed 0, unchanged {committed}" in done.stderr
    check_exactly_once(db, s3, files)


@pytest.mark.slow
def test_unreachable_endpoint_or_bad_credentials_is_one_line_before_any_model_work(s3, media, capsys, monkeypatch):
    from bindspace.cli import main

    media.image("a.png")
    for name, value in s3["env"].items():
        monkeypatch.setenv(name, value)
    closed = f"http://127.0.0.1:{free_port()}"
    # The checkpoint does not exist: reaching the store must fail first, before the model is even looked for.
    common = ["index", str(media.root), "--model", TINY, "--checkpoint", str(media.root / "missing.pth"),
              "--storage-option", "allow_http=true"]
    cases = [
        (["--db", f"s3://{BUCKET}/x", "--storage-option", f"endpoint={closed}"], [closed, "connection refused"]),
        (["--db", f"s3://{BUCKET}/x", "--storage-option", f"endpoint={s3['endpoint']}",
          "--storage-option", "aws_secret_access_key=wrong"],
         [s3["endpoint"], "refused the credentials", "SignatureDoesNotMatch"]),
        (["--db", f"s3://{BUCKET}/x", "--storage-option", f"endpoint={s3['endpoint']}",
          "--storage-option", "aws_access_key_id=AKIANOBODY"],
         [s3["endpoint"], "refused the credentials", "InvalidAccessKeyId"]),
        (["--db", "s3://no-such-bucket/x", "--storage-option", f"endpoint={s3['endpoint']}"],
         [s3["endpoint"], "bucket 'no-such-bucket' does not exist"]),
    ]
    for extra, words in cases:
        assert main([*common, *extra]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and len(err) < 400, err
        for word in words:
            assert word in err, err
        assert "missing.pth" not in err and ".rs:" not in err and "RetryError" not in err, err
