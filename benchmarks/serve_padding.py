"""What bit-stable serving costs on this machine: a lone image request, and 8 clients at once.

Targets (issue 19): a lone image request takes at most 1.15x a bare model call of one image;
8 concurrent one-image clients get at least 0.9x the throughput of free batching
(`--free-batches`). The app is the real one (`create_app`, JSON + base64 JPEG, decode threads,
micro-batcher), driven in process through httpx's ASGI transport (no sockets, so the figures
are the server's own overhead, not the network's). `bindspace serve` packs its CPU towers' GEMM
weights (`layers.packed_linear`; not with `--plain-weights` or `--free-batches`); the bare calls
use a plain model, as a library user's `model.encode` does, and free batching is timed on plain
weights (`--free-batches`) and, for comparison, on packed ones.

The vision tower is ViT-H's geometry (224 px, patch 14: 257 tokens of width 1280, 16 heads)
with `--layers` of its 32 blocks (default 2: the cost per block is what batching changes;
the full tower is 16x slower and would not fit the time box). Random weights: speed does not
depend on the values. The load average is printed with the figures: on a shared machine
other jobs' load moves wall-clock times far more than the policies differ.

    python benchmarks/serve_padding.py                 # about 3 minutes on 2 loaded cores
    python benchmarks/serve_padding.py --layers 8 --requests 4 --json out.json
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
from bindspace.config import ModelConfig  # noqa: E402
from bindspace.modality import Modality  # noqa: E402
from bindspace.model.imagebind import ImageBindModel  # noqa: E402
from bindspace.model.presets import get_config  # noqa: E402
from bindspace.precision import cpu_flags  # noqa: E402

IMAGE = HERE.parent / "tests" / "fixtures" / "media" / "image_1.jpg"
FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "asimddp")


def machine() -> str:
    """CPU model, cores, the flags that decide the kernels, torch version, load average now."""
    cpu = "unknown"
    if Path("/proc/cpuinfo").exists():
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), platform.processor())
    have = cpu_flags()
    flags = " ".join(f for f in FLAGS if f in have) or "(none of the listed)"
    return (f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, flags: {flags}; "
            f"torch {torch.__version__}; load average {load()}")


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def vision_model(layers: int) -> ImageBindModel:
    """ViT-H's vision geometry with `layers` blocks (random weights)."""
    huge = get_config("imagebind_huge")
    tower = dataclasses.replace(huge.towers[Modality.VISION], layers=layers)
    torch.manual_seed(0)
    return ImageBindModel(ModelConfig(f"vit_h_{layers}_blocks", huge.embed_dim, {Modality.VISION: tower})).eval()


def bare_seconds(model: ImageBindModel, batch: int, repeats: int) -> float:
    """Median wall time of one forward of `batch` preprocessed images (after one warm-up)."""
    x = torch.randn(batch, 3, 224, 224)
    times = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            started = time.perf_counter()
            model({"vision": x})
            times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


async def _serve(app, clients: int, per_client: int, body: dict) -> tuple[float, list[float]]:
    """`clients` concurrent clients each posting `per_client` requests in turn: (their wall seconds, latencies)."""
    import httpx

    latencies: list[float] = []
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench",
                                     timeout=600) as client:
            async def one_client(count: int = per_client) -> None:
                for _ in range(count):
                    started = time.perf_counter()
                    response = await client.post("/v1/embed", json=body)
                    latencies.append(time.perf_counter() - started)
                    assert response.status_code == 200, response.text[:300]

            await one_client(1)  # warm-up: first request of this app (thread pools, allocator)
            latencies.clear()
            started = time.perf_counter()
            await asyncio.gather(*(one_client() for _ in range(clients)))
            seconds = time.perf_counter() - started
    return seconds, latencies


def served(layers: int, policy: str, *, clients: int, per_client: int) -> tuple[float, list[float]]:
    """(wall seconds, latencies) of the clients against a fresh app and model with one of POLICIES."""
    try:
        return asyncio.run(_serve(_app(vision_model(layers), policy), clients, per_client, _BODY))
    finally:
        gc.collect()  # the app's reference cycles hold its model (2.5 GB at full depth) until collected


def lone_vs_bare(model: ImageBindModel, layers: int, repeats: int) -> tuple[list[float], list[float]]:
    """Lone image requests (default app, on its own model) and bare one-image calls of the plain `model`, alternated."""
    import httpx

    x = torch.randn(1, 3, 224, 224)
    app = _app(vision_model(layers), "fixed")

    async def run() -> tuple[list[float], list[float]]:
        requests, bare = [], []
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench",
                                         timeout=600) as client:
                for i in range(repeats + 1):  # the first pair warms up
                    started = time.perf_counter()
                    response = await client.post("/v1/embed", json=_BODY)
                    assert response.status_code == 200, response.text[:300]
                    request_s = time.perf_counter() - started
                    started = time.perf_counter()
                    with torch.inference_mode():
                        model({"vision": x})
                    if i:
                        requests.append(request_s)
                        bare.append(time.perf_counter() - started)
        return requests, bare

    return asyncio.run(run())


# Serving policies as `bindspace serve` runs them: the default (calls item by item on packed weights),
# --free-batches (plain weights), and free batches on packed weights (not an option: for comparison).
POLICIES = {"fixed": (True, True), "free": (False, False), "free, packed": (False, True)}


def _app(model: ImageBindModel, policy: str):
    from bindspace.layers.packed_linear import mkl_packing_available
    from bindspace.serve import Limits, create_app
    from bindspace.serve.pipeline import pack_served_towers

    fixed, packed = POLICIES[policy]
    if packed:  # as `bindspace serve` does unless --plain-weights or --free-batches
        pack_served_towers(model, mkl_packing_available())
    return create_app(model, limits=Limits(fixed_batches=fixed, request_timeout_s=600.0))


_BODY = {"modality": "image", "items": [base64.b64encode(IMAGE.read_bytes()).decode()]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=2, help="ViT-H blocks in the vision tower (default: 2 of 32)")
    parser.add_argument("--repeats", type=int, default=3, help="lone requests and bare calls timed (median)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2, help="requests per client in the concurrent runs")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()

    print(machine(), flush=True)
    model = vision_model(args.layers)
    out: dict = {"machine": machine(), "layers": args.layers}
    requests, bares = lone_vs_bare(model, args.layers, args.repeats)
    gc.collect()  # the lone requests' app and its model
    lone_s, bare_one = statistics.median(requests), statistics.median(bares)
    bare_eight = bare_seconds(model, 8, 1)
    out |= {"bare_1_s": bares, "bare_8_s": bare_eight, "lone_request_s": requests,
            "lone_over_bare": lone_s / bare_one, "load_after_lone": load()}

    # Alternate the policies so a change of the machine's load hits them alike.
    runs: dict[str, list[float]] = {policy: [] for policy in POLICIES}
    items = args.clients * args.requests
    for policy in [*POLICIES, *reversed(POLICIES)]:
        seconds, _ = served(args.layers, policy, clients=args.clients, per_client=args.requests)
        runs[policy].append(items / seconds)
        print(f"  {policy}: {items / seconds:.2f} img/s (load {load()})", flush=True)
    mean = {policy: statistics.mean(rates) for policy, rates in runs.items()}
    fixed, free = mean["fixed"], mean["free"]
    out |= {"img_per_s": runs, "fixed_over_free": fixed / free,
            "fixed_over_free_packed": fixed / mean["free, packed"], "load_after": load()}

    print(f"\nvision tower: ViT-H geometry, {args.layers} of 32 blocks, fp32, 224 px\n")
    print("| measure | value | target |\n|---|---|---|")
    print(f"| bare model call, 1 image (median of {len(bares)}) | {bare_one * 1000:.0f} ms | |")
    print(f"| bare model call, 8 images (the old padded cost of a lone request) | {bare_eight * 1000:.0f} ms | |")
    print(f"| lone image request (`/v1/embed`, default fixed batches; median, alternated with the bare "
          f"calls) | {lone_s * 1000:.0f} ms "
          f"({lone_s / bare_one:.2f}x bare) | <= 1.15x |")
    for policy, label in (("fixed", "item by item on packed weights (default)"),
                          ("free", "free batches (`--free-batches`, plain weights)"),
                          ("free, packed", "free batches on packed weights")):
        print(f"| {args.clients} clients, {label} | {mean[policy]:.2f} img/s "
              f"({', '.join(f'{r:.2f}' for r in runs[policy])}) | |")
    print(f"| default / free throughput | {fixed / free:.2f}x | >= 0.9x |")
    print(f"| default / free batches on packed weights | {fixed / mean['free, packed']:.2f}x | |")
    print(f"\nload average after: {load()}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
