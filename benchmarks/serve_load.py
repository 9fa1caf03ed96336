"""Bounded local load test of `bindspace serve` with the tiny preset: micro-batching vs batch size 1.

For each --max-batch value, starts `bindspace serve` on 127.0.0.1 (a free port; never another
host) with deterministic tiny-preset weights, runs --clients concurrent keep-alive HTTP
clients for --duration seconds, each posting one request after another, then reports
throughput, latency percentiles, status codes (5xx must be zero) and the server's mean batch
size (from /metrics).

    python benchmarks/serve_load.py                       # 200 clients, 30 s, --max-batch 32 then 1
    python benchmarks/serve_load.py --clients 50 --duration 10 --workload search --json out.json

Workloads: text (POST /v1/embed, one text each; the query path of a search), search (POST
/v1/search against a 1000-item in-memory index of random vectors), image (POST /v1/embed with
one small base64 PNG each), vectorize (Weaviate's POST /vectorize with one text, sent as Go's
client sends it: no Content-Type), embeddings (OpenAI-style POST /v1/embeddings, one text).
`--model` picks the preset (random weights; imagebind_huge needs several GB of memory).
The CPU's model name and its vector-instruction flags are printed first: they decide the numbers.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import re
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"  # the load test never leaves this machine


@dataclass
class RunResult:
    """What one server configuration achieved."""

    max_batch: int
    workload: str
    clients: int
    seconds: float
    requests: int = 0
    throughput_rps: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    server_errors: int = 0
    connection_errors: int = 0
    mean_batch: float = 0.0
    model_calls: int = 0


# ------------------------------------------------------------------ the server


# Started with `python -c`: the tiny preset with fixed-seed weights, optionally an in-memory index.
SERVER = textwrap.dedent("""
    import sys, numpy as np, torch, uvicorn
    from dataclasses import dataclass
    import bindspace
    from bindspace.serve import Limits, create_app

    port, max_batch, threads, with_index = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
    preset = sys.argv[5]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = bindspace.create_model(preset, modalities=["text"] if preset != "imagebind_tiny_test" else None)

    @dataclass
    class Item:
        id: str; uri: str; modality: str; content_hash: str; size: int; mtime: float
        segment_start: float | None; segment_end: float | None; model: str; model_checksum: str | None

    @dataclass
    class Hit:
        item: Item; score: float

    class MemoryStore:  # exact search over random unit vectors: the load is on the server, not on a database
        def __init__(self, n, dim):
            rng = np.random.default_rng(0)
            v = rng.standard_normal((n, dim)).astype(np.float32)
            self.vectors = v / np.linalg.norm(v, axis=1, keepdims=True)
            self.items = [Item(f"item{i}", f"/nonexistent/{i}.jpg", "image", "", 0, 0.0, None, None,
                               "imagebind_tiny_test", None) for i in range(n)]
        def model_info(self): return None
        def count(self, modality=None): return len(self.items)
        def get(self, item_id): return None
        def search(self, vector, k=10, *, modality=None, where=None):
            scores = self.vectors @ vector
            top = np.argsort(-scores)[:k]
            return [Hit(self.items[i], float(scores[i])) for i in top]

    store = MemoryStore(1000, model.embed_dim) if with_index else None
    app = create_app(model, store, limits=Limits(max_batch=max_batch, request_timeout_s=120.0, max_pending=100_000))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", backlog=4096)
""")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_server(port: int, max_batch: int, threads: int, with_index: bool, preset: str) -> subprocess.Popen:
    """The server process, once /readyz answers 200."""
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(max_batch), str(threads),
                             "1" if with_index else "0", preset], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stderr = proc.stderr.read().decode() if proc.stderr is not None else ""
            raise SystemExit(f"server exited: {stderr[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/readyz", timeout=2) as response:
                if response.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not become ready in 600 s")


def batch_stats(port: int) -> tuple[float, int]:
    """(mean items per model call, model calls) from the server's /metrics."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    total = sum(float(v) for v in re.findall(r"^bindspace_batch_size_sum\{[^}]*\} (\S+)$", text, re.M))
    calls = sum(float(v) for v in re.findall(r"^bindspace_batch_size_count\{[^}]*\} (\S+)$", text, re.M))
    return (total / calls if calls else 0.0), int(calls)


# ------------------------------------------------------------------ the clients


def request_bytes(workload: str, port: int, index: int) -> bytes:
    """One keep-alive HTTP/1.1 POST for a workload; texts differ per request (nothing is cached)."""
    content_type = "Content-Type: application/json\r\n"
    body: dict[str, object]
    if workload == "text":
        path, body = "/v1/embed", {"modality": "text", "texts": [f"a photo of thing number {index}"]}
    elif workload == "vectorize":  # Weaviate's Go client: no Content-Type, Go's user agent, gzip accepted
        path, body = "/vectorize", {"texts": [f"a photo of thing number {index}"]}
        content_type = "User-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n"
    elif workload == "embeddings":
        path, body = "/v1/embeddings", {"model": "bindspace", "input": f"a photo of thing number {index}",
                                        "encoding_format": "float"}
    elif workload == "search":
        path, body = "/v1/search", {"parts": [{"modality": "text", "text": f"a dog number {index}"}], "k": 10}
    elif workload == "image":
        path, body = "/v1/embed", {"modality": "image", "items": [SMALL_PNG]}
    else:
        raise ValueError(workload)
    payload = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n{content_type}"
            f"Content-Length: {len(payload)}\r\nConnection: keep-alive\r\n\r\n")
    return head.encode() + payload


def _small_png() -> str:
    from PIL import Image

    rng = np.random.default_rng(0)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


SMALL_PNG = ""


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP response; returns its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status


async def client(port: int, workload: str, start: float, stop: float, seed: int,
                 latencies: list[float], statuses: dict[str, int], errors: list[int]) -> None:
    """One client: sequential requests on one kept-alive connection until `stop`."""
    count = 0
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.perf_counter() < stop:
        try:
            if writer is None or reader is None:
                reader, writer = await asyncio.open_connection(HOST, port)
            data = request_bytes(workload, port, seed * 1_000_000 + count)
            began = time.perf_counter()
            writer.write(data)
            await writer.drain()
            status = await read_response(reader)
            ended = time.perf_counter()
            if began >= start:  # requests begun during the warm-up are not measured
                latencies.append(ended - began)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
            count += 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors.append(1)
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.05)
    if writer is not None:
        writer.close()


async def load(port: int, workload: str, clients: int, warmup: float, duration: float) -> tuple[list, dict, int, float]:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors: list[int] = []
    now = time.perf_counter()
    start, stop = now + warmup, now + warmup + duration
    await asyncio.gather(*(client(port, workload, start, stop, i, latencies, statuses, errors)
                           for i in range(clients)))
    return latencies, statuses, len(errors), time.perf_counter() - start


def run_one(max_batch: int, args: argparse.Namespace) -> RunResult:
    port = free_port()
    proc = start_server(port, max_batch, args.server_threads, args.workload == "search", args.model)
    try:
        latencies, statuses, errors, seconds = asyncio.run(
            load(port, args.workload, args.clients, args.warmup, args.duration))
        mean_batch, calls = batch_stats(port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    ms = np.array(latencies) * 1000
    result = RunResult(max_batch=max_batch, workload=args.workload, clients=args.clients, seconds=round(seconds, 2),
                       requests=len(latencies), statuses=statuses, connection_errors=errors,
                       mean_batch=round(mean_batch, 2), model_calls=calls)
    if len(ms):
        result.throughput_rps = round(len(ms) / seconds, 1)
        result.p50_ms, result.p90_ms, result.p99_ms = (round(float(np.percentile(ms, q)), 1) for q in (50, 90, 99))
        result.max_ms = round(float(ms.max()), 1)
    result.server_errors = sum(n for code, n in statuses.items() if code.startswith("5"))
    return result


WORKLOADS = ("text", "search", "image", "vectorize", "embeddings", "all")
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
             "amx_int8", "asimd", "sve")


def cpu_info() -> dict:
    """CPU model name, core count and the vector-instruction flags that matter to torch."""
    import os

    model, flags = "unknown", set[str]()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == "unknown":
                    model = value.strip()
                elif key.strip() in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count(), "flags": [f for f in CPU_FLAGS if f in flags]}


def report(results: list[RunResult]) -> None:
    """One table per workload, and the speed-up of the first --max-batch over the last."""
    print(f"{'workload':>10} {'max_batch':>9} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'requests':>9} {'5xx':>4} {'conn err':>8} {'mean batch':>10}  statuses")
    for r in results:
        print(f"{r.workload:>10} {r.max_batch:>9} {r.throughput_rps:>8.1f} {r.p50_ms:>8.1f} {r.p90_ms:>8.1f} "
              f"{r.p99_ms:>8.1f} {r.max_ms:>8.1f} {r.requests:>9} {r.server_errors:>4} {r.connection_errors:>8} "
              f"{r.mean_batch:>10.2f}  {r.statuses}")
    if len(results) >= 2 and results[-1].throughput_rps:
        print(f"speed-up of max_batch={results[0].max_batch} over max_batch={results[-1].max_batch}: "
              f"{results[0].throughput_rps / results[-1].throughput_rps:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds per configuration")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each measurement")
    parser.add_argument("--max-batch", default="32,1", help="comma-separated server --max-batch values")
    parser.add_argument("--workload", choices=WORKLOADS, default="text",
                        help="one workload, or 'all' for each in turn (default: %(default)s)")
    parser.add_argument("--model", default="imagebind_tiny_test",
                        help="preset served with random weights; presets other than the tiny one load only the text "
                             "tower (default: %(default)s)")
    parser.add_argument("--server-threads", type=int, default=1, help="torch threads in the server")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    if not 1 <= args.clients <= 2000 or not 0 < args.duration <= 600:
        parser.error("bounded test: --clients 1..2000 and --duration up to 600 s")
    if args.model != "imagebind_tiny_test" and args.workload in ("image", "all"):
        parser.error("--workload image needs the tiny preset (other presets load the text tower only)")
    global SMALL_PNG
    SMALL_PNG = _small_png()
    cpu = cpu_info()
    print(f"cpu: {cpu['model']}, {cpu['cores']} cores, flags: {' '.join(cpu['flags']) or 'none of interest'}")
    workloads = [w for w in WORKLOADS if w != "all"] if args.workload == "all" else [args.workload]
    results = []
    for workload in workloads:
        args.workload = workload
        runs = []
        for value in (int(v) for v in args.max_batch.split(",")):
            print(f"max_batch={value}: {args.clients} clients x {args.duration:g} s ({workload}) ...", file=sys.stderr)
            runs.append(run_one(value, args))
        report(runs)
        results.extend(runs)
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu, "model": args.model,
                                               "results": [asdict(r) for r in results]}, indent=2))
    return 1 if any(r.server_errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
