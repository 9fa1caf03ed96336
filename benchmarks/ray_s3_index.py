"""Ray cluster indexing into S3 (moto): items/s with 1 and 2 worker nodes, driver CPU and bytes per 1,000 items.

    python benchmarks/ray_s3_index.py --files 60

Everything runs on this machine: a moto S3 server, a Ray head without CPUs and 1 then 2 worker
nodes of 1 CPU each (Ray's multi-node test cluster), the tiny preset (16-px images; its width is printed) with
random weights. Each configuration indexes the same
`--files` fresh PNGs into its own s3:// prefix, twice: `driver` mode (vectors come back and the
driver writes every row, the old path) and `worker` mode (actors write Lance data files to S3,
the driver commits fragment metadata). Measured per run:

- items/s: files / wall time of `index_paths` (planning, cluster work and commits; actor
  start-up included, which dominates short runs);
- driver CPU: user+sys seconds of this process (the driver) during the run, per 1,000 items;
- bytes in: result bytes the driver received from the cluster per 1,000 items;
- bytes out: bytes the driver itself stored in the bucket per 1,000 items: every object under
  the run's prefix, minus the data files the workers wrote (worker mode; counted from the
  fragment metadata they sent).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

BUCKET = "bench"
MB = 2**20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bucket_bytes(s3, prefix: str) -> int:
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        total += sum(obj["Size"] for obj in page.get("Contents", []))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=60)
    parser.add_argument("--batch-files", type=int, default=8)
    args = parser.parse_args()

    import boto3
    import torch
    from PIL import Image
    from ray.cluster_utils import Cluster

    import bindspace
    from bindspace.index import open_store
    from bindspace.index.indexer import index_paths, model_info_for
    from bindspace.index.ray_indexer import ModelSpec, RayRunner
    from bindspace.precision import cpu_flags

    work = Path(tempfile.mkdtemp(prefix="ray_s3_bench_"))
    torch.manual_seed(0)
    model = bindspace.create_model("imagebind_tiny_test")
    ckpt = work / "tiny.pth"
    torch.save(model.state_dict(), ckpt)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    cluster = None
    rows = []
    try:
        time.sleep(3)
        options = {"endpoint": endpoint, "allow_http": "true", "region": "us-east-1",
                   "aws_access_key_id": "bench", "aws_secret_access_key": "bench"}
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                          aws_secret_access_key="bench")
        s3.create_bucket(Bucket=BUCKET)
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "object_store_memory": 100 * MB, "include_dashboard": False})
        for nodes in (1, 2):
            cluster.add_node(num_cpus=1, object_store_memory=100 * MB)
            cluster.wait_for_nodes()
            for mode in ("driver", "worker"):
                media = work / f"media-{nodes}-{mode}"
                media.mkdir()
                rng = np.random.default_rng(nodes * 10 + (mode == "worker"))
                for i in range(args.files):
                    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(media / f"{i:04d}.png")
                prefix = f"run-{nodes}-{mode}"
                store = open_store(f"s3://{BUCKET}/{prefix}", create=True, storage_options=options)
                runner = RayRunner(ModelSpec(name="imagebind_tiny_test", checkpoint=str(ckpt), batch_size=8),
                                   address=cluster.address, workers=nodes, batch_files=args.batch_files,
                                   worker_writes=mode == "worker", init_kwargs={"configure_logging": False})
                written: list[int] = []
                if mode == "worker":  # count the data files workers wrote from the metadata the driver commits
                    commit = store.commit_written

                    def counting(payloads, commit=commit, written=written):
                        for payload in payloads:
                            written.extend(d["file_size_bytes"] for f in json.loads(payload) for d in f["files"])
                        commit(payloads)

                    store.commit_written = counting  # type: ignore[method-assign]
                cpu0, t0 = cpu_seconds(), time.perf_counter()
                summary = index_paths([media], store, None, runner=runner, model_info=model_info_for(model, ckpt),
                                      commit_files=args.batch_files, ann=False)
                wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
                import ray

                ray.shutdown()
                assert summary.added == args.files, summary
                per_k = 1000 / args.files
                out_bytes = bucket_bytes(s3, prefix + "/") - sum(written)
                rows.append((nodes, mode, args.files / wall, cpu * per_k, runner.bytes_received * per_k,
                             out_bytes * per_k))
    finally:
        if cluster is not None:
            cluster.shutdown()
        moto.terminate()
        moto.wait(timeout=30)

    print(f"Machine: {platform.machine()} {os.cpu_count()} CPUs, load average before: {os.getloadavg()}")
    print(f"CPU flags: {' '.join(sorted(cpu_flags()))}")
    print(f"tiny preset ({model.embed_dim}-d), {args.files} PNGs per run, {args.batch_files} files per actor batch")
    print(f"{'worker nodes':>12} {'writes':>7} {'items/s':>8} {'driver CPU s/1k':>16} {'bytes in/1k':>12} "
          f"{'bytes out/1k':>13}")
    for nodes, mode, rate, cpu, received, out in rows:
        print(f"{nodes:>12} {mode:>7} {rate:>8.2f} {cpu:>16.1f} {received:>12.0f} {out:>13.0f}")


if __name__ == "__main__":
    main()
