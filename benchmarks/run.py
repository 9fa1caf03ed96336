"""Inference benchmarks: bindspace's fast path against a plain fp32 eager path, per modality.

    python benchmarks/run.py                 # all cases, prints a markdown table
    python benchmarks/run.py --case text     # one case
    python benchmarks/run.py --device cuda   # the accelerator table (device_bench.py; gpu.sh sets it up)

Each case runs in its own process so peak RSS is measured cleanly. The weights are
deterministic stand-ins for imagebind_huge (`weights.py`); speed and memory do not
depend on the values. Timings are wall-clock medians over repeats after one warm-up.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

HERE = Path(__file__).resolve().parent
MEDIA = HERE.parent / "tests" / "fixtures" / "media"
NAME = "imagebind_huge"
T = TypeVar("T")


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def plain_text(model, ids: torch.Tensor) -> torch.Tensor:
    """The original's text path: all 77 positions, no cut at the longest text."""
    with torch.no_grad():
        tokens = model.modality_preprocessors["text"](ids)
        tokens = model.modality_trunks["text"](tokens, causal=True)
        return model.modality_heads["text"](tokens, ids.argmax(-1))


def timed(fn: Callable[[], T], repeats: int = 3) -> tuple[float, T]:
    """Median seconds of `repeats` calls after a warm-up, and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = torch.nn.functional.normalize(a.float(), dim=-1), torch.nn.functional.normalize(b.float(), dim=-1)
    return float((a * b).sum(-1).min())


# ---------------------------------------------------------------------------- cases


def case_load_plain(root: Path) -> dict:
    """What the original does: build the whole fp32 model, torch.load the .pth, copy it in."""
    from bindspace.model.imagebind import ImageBindModel
    from bindspace.model.presets import get_config

    start = time.perf_counter()
    model = ImageBindModel(get_config(NAME))
    state = torch.load(root / f"{NAME}.pth", map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return {"job": "load whole model (.pth)", "path": "plain", "seconds": time.perf_counter() - start,
            "rss_gb": peak_rss_gb()}


def _load(root: Path, source: str, modalities, dtype=torch.float32, label="") -> dict:
    import bindspace

    checkpoint = root / f"{NAME}.pth" if source == "pth" else root / NAME
    start = time.perf_counter()
    model = bindspace.create_model(NAME, checkpoint=checkpoint, modalities=modalities, dtype=dtype)
    seconds = time.perf_counter() - start
    # Touch every weight once, as a first forward would, so lazily mapped pages count in the RSS.
    for tensor in model.state_dict().values():
        tensor.abs().max()
    return {"job": label, "path": "bindspace", "seconds": seconds, "rss_gb": peak_rss_gb()}


def case_load_whole(root: Path) -> dict:
    return _load(root, "pth", None, label="load whole model (.pth)")


def case_load_text(root: Path) -> dict:
    return _load(root, "dir", ["text"], label="load text tower (model dir)")


def case_load_audio(root: Path) -> dict:
    return _load(root, "dir", ["audio"], label="load audio tower (model dir)")


def case_load_vision(root: Path) -> dict:
    return _load(root, "dir", ["vision"], label="load vision tower (model dir)")


def case_load_vision_bf16(root: Path) -> dict:
    return _load(root, "dir", ["vision"], torch.bfloat16, label="load vision tower bf16 (model dir)")


def case_text(root: Path) -> list[dict]:
    import bindspace
    from bindspace.preprocess import text

    model = bindspace.create_model(NAME, checkpoint=root / NAME, modalities=["text"])
    ids = text(["a photo of a dog."] * 64)

    def plain():
        return plain_text(model, ids)

    def fast():
        with torch.no_grad():
            return model.encode("text", ids)

    t_plain, ref = timed(plain, 1)
    t_fast, out = timed(fast, 3)
    return [
        {"job": "64 text prompts", "path": "plain fp32, 77 positions", "items_per_s": 64 / t_plain,
         "rss_gb": peak_rss_gb()},
        {"job": "64 text prompts", "path": "bindspace fp32, cut at longest", "items_per_s": 64 / t_fast,
         "cosine": cosine(out, ref), "rss_gb": peak_rss_gb()},
    ]


def _images(n: int) -> torch.Tensor:
    from bindspace.preprocess import image

    files = sorted(MEDIA.glob("image_*"))
    return image([files[i % len(files)] for i in range(n)])


def case_image(root: Path) -> list[dict]:
    import bindspace

    model = bindspace.create_model(NAME, checkpoint=root / NAME, modalities=["vision"])
    x = _images(8)
    rows = []

    def run():
        with torch.no_grad():
            return model.encode("vision", x)

    t32, ref = timed(run, 1)
    rows.append({"job": "8 images ViT-H/14", "path": "plain fp32", "items_per_s": 8 / t32, "rss_gb": peak_rss_gb()})
    model.to(torch.bfloat16)
    t16, out = timed(run, 2)
    rows.append({"job": "8 images ViT-H/14", "path": "bindspace bf16", "items_per_s": 8 / t16,
                 "cosine": cosine(out, ref), "rss_gb": peak_rss_gb()})
    model.to(torch.float32)
    model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    t8, out8 = timed(run, 1)
    rows.append({"job": "8 images ViT-H/14", "path": "int8 dynamic (Linear layers)", "items_per_s": 8 / t8,
                 "cosine": cosine(out8, ref), "rss_gb": peak_rss_gb()})
    return rows


def _audio_files(n: int, folder: Path) -> list[Path]:
    import shutil

    sources = sorted(MEDIA.glob("audio_*.wav"))
    files = []
    for i in range(n):
        target = folder / f"clip_{i:03d}.wav"
        shutil.copy(sources[i % len(sources)], target)
        files.append(target)
    return files


def case_audio(root: Path) -> list[dict]:
    import bindspace
    from bindspace.embedding import Embedder
    from bindspace.preprocess import load_audio

    n = 12
    with tempfile.TemporaryDirectory() as tmp:
        files = _audio_files(n, Path(tmp))
        model = bindspace.create_model(NAME, checkpoint=root / NAME, modalities=["audio"])

        def serial():
            with torch.no_grad():
                return torch.cat([model.encode("audio", load_audio(f)[None]) for f in files])

        t_serial, ref = timed(serial, 1)
        fast_model = bindspace.create_model(NAME, checkpoint=root / NAME, modalities=["audio"], dtype=torch.bfloat16)
        embedder = Embedder(fast_model, batch_size=4, num_workers=2, progress=False)
        t_fast, result = timed(lambda: embedder.embed("audio", files), 1)
        out = torch.from_numpy(result.vectors)
    return [
        {"job": f"{n} audio files end to end", "path": "plain fp32, serial", "items_per_s": n / t_serial,
         "rss_gb": peak_rss_gb()},
        {"job": f"{n} audio files end to end", "path": "bindspace bf16, batch 4, 2 workers", "items_per_s": n / t_fast,
         "cosine": cosine(out, ref), "rss_gb": peak_rss_gb()},
    ]


def case_video(root: Path) -> list[dict]:
    import bindspace
    from bindspace.preprocess import load_video

    video = MEDIA / "video_1.mp4"
    start = time.perf_counter()
    x = load_video(video)[None]  # (1, 15, 3, 2, 224, 224)
    decode_s = time.perf_counter() - start
    model = bindspace.create_model(NAME, checkpoint=root / NAME, modalities=["vision"], dtype=torch.bfloat16)

    def run():
        with torch.no_grad():
            return model.encode("vision", x)

    t, _ = timed(run, 1)
    views = x.shape[1]
    return [{"job": "video, 15 views ViT-H", "path": "bindspace bf16", "items_per_s": views / t,
             "unit": "views/s", "decode_s": decode_s, "rss_gb": peak_rss_gb()}]


CASES = {
    "load_plain": case_load_plain, "load_whole": case_load_whole, "load_text": case_load_text,
    "load_audio": case_load_audio, "load_vision": case_load_vision, "load_vision_bf16": case_load_vision_bf16,
    "text": case_text, "image": case_image, "audio": case_audio, "video": case_video,
}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d')}")


def table(rows: list[dict]) -> str:
    lines = ["| job | path | items/s | load s | peak RSS GB | cosine vs plain |", "|---|---|---|---|---|---|"]
    for r in rows:
        rate = f"{r['items_per_s']:.2f} {r.get('unit', '')}".strip() if "items_per_s" in r else ""
        load = f"{r['seconds']:.1f}" if "seconds" in r else ""
        cos = f"{r['cosine']:.6f}" if "cosine" in r else ""
        lines.append(f"| {r['job']} | {r['path']} | {rate} | {load} | {r['rss_gb']:.2f} | {cos} |")
    return "\n".join(lines)


def main() -> None:
    if any(arg == "--device" or arg.startswith("--device=") for arg in sys.argv[1:]):
        from device_bench import main as device_main  # per tower x path x batch, on any device

        sys.exit(device_main(sys.argv[1:]))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=sorted(CASES), action="append")
    parser.add_argument("--root", type=Path, default=Path(os.environ.get("BINDSPACE_BENCH", "/tmp/bindspace-bench")))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    if args.child:
        result = CASES[args.case[0]](args.root)
        print(json.dumps(result if isinstance(result, list) else [result]))
        return
    from weights import ensure_weights

    ensure_weights(args.root)
    rows = []
    for name in args.case or list(CASES):
        proc = subprocess.run([sys.executable, __file__, "--child", "--case", name, "--root", str(args.root)],
                              capture_output=True, text=True)
        if proc.returncode:
            print(f"case {name} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        rows += json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"done {name}", file=sys.stderr)
    print(f"Machine: {machine()}\n")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
