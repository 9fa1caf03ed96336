"""Accelerator benchmark: the original's plain fp32 eager path against bindspace's fast paths, one table.

    bash benchmarks/gpu.sh                                                  # CUDA, imagebind_huge, <= 8 min
    python benchmarks/device_bench.py --device cpu --model imagebind_tiny_test   # the CPU check, < 1 min

Rows, per tower (vision = ViT images, text prompts, audio clips) and batch size: plain fp32
eager (fp32 weights, the math attention kernel, no TF32: the original's way) against ours
(fp32 with TF32 and SDPA; bf16 with SDPA flash attention; bf16 replayed from a CUDA graph;
bf16 with `torch.compile`). Every reduced-precision row gives the minimum cosine to the plain
fp32 output for the same inputs. Then: peak GPU memory, model-directory load time per tower,
vision MFU (FLOPs counted from the config), and end to end from files with decoding workers
(JPEGs, WAVs, and one long synthetic MP4 embedded in segments, vision and audio).

Each step runs in its own process under a time limit, and the whole run under a budget
(`--budget`), so one slow step (a long compile, a slow decoder) cannot eat the rest: a step
that runs out of time leaves its remaining rows marked "time limit". The weights are the
deterministic stand-ins of `weights.py`, generated on the device; speed does not depend on
the values.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))
from bench_media import make_media  # noqa: E402

TOWERS = ("vision", "text", "audio")
PATHS = ("plain fp32 eager", "fp32 TF32 + SDPA", "bf16 SDPA flash", "bf16 CUDA graph", "bf16 torch.compile")
UNITS = {"vision": "images/s", "text": "prompts/s", "audio": "clips/s"}
# Dense matrix peaks from the vendors' datasheets (FLOP/s), for MFU; measured bf16 is ~80 % of these.
PEAKS = {"H200": {"bf16": 989e12, "tf32": 495e12, "fp32": 67e12},
         "H100": {"bf16": 989e12, "tf32": 495e12, "fp32": 67e12},
         "A100": {"bf16": 312e12, "tf32": 156e12, "fp32": 19.5e12}}
# Seconds each step may take (inside the run's budget), in the order they run: most important first.
STEP_LIMITS = {"weights": 100, "vision": 170, "text": 75, "audio": 75, "e2e_images": 50, "e2e_video": 100,
               "load": 45, "e2e_audio": 35}
# Time a first torch.compile of each trunk needs, order of magnitude (ViT-H: 32 blocks of 1280).
COMPILE_SECONDS = {"vision": 75, "text": 40, "audio": 30}


@dataclass
class Profile:
    """Sizes for one run: the GPU profile fills an H200; the CPU one is a one-minute check."""

    batches: tuple[int, ...]
    images: int  # JPEG files for the end-to-end image row
    wavs: int
    wav_seconds: float
    video_seconds: float
    video_size: tuple[int, int]  # (width, height)
    e2e_batch: int
    min_seconds: float  # timing: repeat until this long (after warm-up) ...
    max_repeats: int  # ... or this many repeats
    compile: bool


# 4096 images: several seconds of decoding at the target rate, so worker start-up does not dominate.
GPU_PROFILE = Profile((1, 8, 64, 256), 4096, 256, 10.0, 480.0, (640, 360), 256, 0.5, 20, True)
CPU_PROFILE = Profile((1, 8), 16, 8, 4.0, 12.0, (320, 240), 8, 0.0, 1, False)


@dataclass
class Row:
    """One line of the table."""

    section: str
    path: str
    batch: int | None = None
    rate: float | None = None  # items per second
    unit: str = ""
    ms: float | None = None  # per batch (or the job's seconds x 1000 for jobs)
    seconds: float | None = None
    peak_gib: float | None = None
    cosine: float | None = None
    mfu: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- helpers


def sync(device: torch.device) -> None:
    """Wait for queued device work (timing must not stop at an asynchronous launch)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], torch.Tensor], device: torch.device, profile: Profile,
            deadline: float) -> tuple[float, torch.Tensor]:
    """Median seconds per call after one warm-up (repeats until min_seconds or max_repeats), and the output."""
    out = fn()
    sync(device)
    times: list[float] = []
    spent = 0.0
    while len(times) < max(profile.max_repeats, 1):
        if device.type == "cuda":
            start_event = torch.cuda.Event(enable_timing=True)
            end_event = torch.cuda.Event(enable_timing=True)
            start_event.record()
            out = fn()
            end_event.record()
            end_event.synchronize()
            seconds = start_event.elapsed_time(end_event) / 1000
        else:
            start = time.perf_counter()
            out = fn()
            seconds = time.perf_counter() - start
        times.append(seconds)
        spent += seconds
        if (spent >= profile.min_seconds and len(times) >= 3) or time.monotonic() + seconds > deadline:
            break
    return statistics.median(times), out


def min_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """The worst row's cosine between two embedding batches."""
    a = torch.nn.functional.normalize(a.float().cpu(), dim=-1)
    b = torch.nn.functional.normalize(b.float().cpu(), dim=-1)
    return float((a * b).sum(-1).min())


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def peak_flops(device: torch.device, precision: str) -> float | None:
    """The datasheet peak for MFU, when the device is one we know."""
    name = device_name(device)
    for key, peaks in PEAKS.items():
        if key in name:
            return peaks[precision]
    return None


def tower_flops(config: Any, tower: str) -> float:
    """Forward FLOPs for one item of a ViT-style tower, counted from its config (matmuls only, 2 per MAC)."""
    cfg = config.towers[tower]
    width, layers = cfg.width, cfg.layers
    if tower == "text":
        tokens, stem = cfg.input_size[0], 0.0
    else:
        kernel = cfg.patch_size[-2:]
        grid = math.prod(s // k for s, k in zip(cfg.input_size[-2:], kernel))
        frames = cfg.patch_size[0] if tower == "vision" and len(cfg.patch_size) == 3 else 1
        patch_in = cfg.in_channels * frames * math.prod(kernel)
        tokens = grid + 1  # + the class token
        stem = 2.0 * grid * patch_in * width
    keys = tokens + (1 if cfg.add_bias_kv else 0)
    hidden = int(cfg.mlp_ratio * width)
    per_block = 2.0 * tokens * (4 * width * width + 2 * width * hidden) + 4.0 * tokens * keys * width
    return stem + layers * per_block + 2.0 * width * config.embed_dim


# ---------------------------------------------------------------------------- inputs


def model_inputs(tower: str, config: Any, batch: int, seed: int = 0) -> torch.Tensor:
    """Random model inputs of the tower's shape (values do not change the speed)."""
    gen = torch.Generator().manual_seed(seed + batch)
    cfg = config.towers[tower]
    if tower == "text":
        try:
            from bindspace.preprocess import text
        except ImportError:  # the tokenizer's ftfy missing on a bare machine: ids of the same lengths
            return _token_ids(batch, cfg.input_size[0], gen)
        prompts = [f"a photo of a {w} number {i}" for i, w in zip(range(batch), _words(batch))]
        return text(prompts)
    return torch.randn(batch, cfg.in_channels, *cfg.input_size, generator=gen)


def _token_ids(batch: int, context: int, gen: torch.Generator) -> torch.Tensor:
    """CLIP-style ids (B, context): start token, 5-12 word ids, end token (the largest id), zero padding."""
    ids = torch.zeros(batch, context, dtype=torch.long)
    for row in range(batch):
        words = int(torch.randint(5, 13, (1,), generator=gen))
        ids[row, 0] = 49406
        ids[row, 1 : words + 1] = torch.randint(300, 40000, (words,), generator=gen)
        ids[row, words + 1] = 49407
    return ids


def _words(n: int) -> list[str]:
    base = ["dog", "cat", "red car", "mountain lake at dawn", "violin", "crowded street market", "bird"]
    return [base[i % len(base)] for i in range(n)]


def plain_text(model: Any, ids: torch.Tensor) -> torch.Tensor:
    """The original's text path: all 77 positions through the trunk, pooled at the end token."""
    tokens = model.modality_preprocessors["text"](ids)
    tokens = model.modality_trunks["text"](tokens, causal=True)
    pooled = model.modality_heads["text"](tokens, ids.argmax(-1))
    return torch.nn.functional.normalize(model.modality_postprocessors["text"](pooled).float(), dim=-1)


# ---------------------------------------------------------------------------- model-only step


def run_tower(args: argparse.Namespace, profile: Profile, deadline: float) -> list[Row]:
    """Every path at every batch size for one tower: throughput, peak memory, cosine to plain fp32, MFU.

    One copy of the tower is on the device at a time (fp32 for the first two paths, then bf16,
    compiled in place last), so each row's peak memory is that path's own: weights plus activations.
    """
    import bindspace

    tower, device = args.step, torch.device(args.device)
    model_dir = Path(args.root) / args.model
    model = bindspace.create_model(checkpoint=model_dir, modalities=[tower], device=device)
    config = model.config
    flops = tower_flops(config, tower) if tower == "vision" else None
    batches = sorted(profile.batches, reverse=True)  # the largest batch matters most: measure it first
    inputs = {batch: model_inputs(tower, config, batch).to(device) for batch in batches}
    rows: list[Row] = []
    refs: dict[int, torch.Tensor] = {}

    def add(path: str, batch: int, seconds: float, out: torch.Tensor, precision: str, note: str = "") -> None:
        rate = batch / seconds
        peak = peak_flops(device, precision)
        mfu = flops * rate / peak if flops is not None and peak is not None else None
        cos = min_cosine(out, refs[batch]) if path != PATHS[0] and batch in refs else None
        emit(args, rows, Row(tower, path, batch, rate, UNITS[tower], seconds * 1000, None, peak_gib(device), cos,
                             mfu, note))

    with torch.inference_mode():
        for path in PATHS:
            if path == PATHS[2]:  # from here on bf16: swap the copy on the device
                del model
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                model = bindspace.create_model(checkpoint=model_dir, modalities=[tower], device=device,
                                               dtype=torch.bfloat16)
            for batch in batches:
                if time.monotonic() > deadline - 2:
                    emit(args, rows, Row(tower, path, batch, unit=UNITS[tower], note="time limit"))
                    continue
                reset_peak(device)
                try:
                    outcome = time_path(path, tower, inputs[batch], model, profile, deadline)
                except Exception as exc:  # one failing path must not cost the other rows
                    outcome = f"failed: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:80]}"
                if isinstance(outcome, str):
                    emit(args, rows, Row(tower, path, batch, unit=UNITS[tower], note=outcome))
                    continue
                seconds, out, precision, note = outcome
                if path == PATHS[0]:
                    refs[batch] = out.float().cpu()
                add(path, batch, seconds, out, precision, note)
    return rows


def time_path(path: str, tower: str, x: torch.Tensor, model: Any, profile: Profile,
              deadline: float) -> tuple[float, torch.Tensor, str, str] | str:
    """(seconds per batch, output, precision for MFU, note) for one path, or why it was not run."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    device = x.device
    cuda = device.type == "cuda"
    if path == PATHS[0]:  # the original's way: fp32 everywhere, attention as explicit matrix products
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        with sdpa_kernel([SDPBackend.MATH]):
            if tower == "text":
                seconds, out = measure(lambda: plain_text(model, x), device, profile, deadline)
            else:
                seconds, out = measure(lambda: model.encode(tower, x), device, profile, deadline)
        return seconds, out, "fp32", ""
    if path == PATHS[1]:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        try:
            seconds, out = measure(lambda: model.encode(tower, x), device, profile, deadline)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        return seconds, out, "tf32" if cuda else "fp32", ""
    if path == PATHS[2]:
        seconds, out = measure(lambda: model.encode(tower, x), device, profile, deadline)
        return seconds, out, "bf16", ""
    if path == PATHS[3]:
        if not cuda:
            return "needs CUDA"
        seconds, out = graphed(model, tower, x, profile, deadline)
        return seconds, out, "bf16", ""
    if not profile.compile:
        return "off in this profile (--compile to run)"
    if not getattr(model, "_bench_compiled", False):
        if time.monotonic() > deadline - COMPILE_SECONDS[tower]:
            return f"time limit (a first compile needs ~{COMPILE_SECONDS[tower]} s)"
        model.compile_towers()  # in place: the last path, so the eager rows are done
        model._bench_compiled = True
    start = time.perf_counter()
    model.encode(tower, x)  # compiles for this shape; the time is reported beside the row
    sync(device)
    compile_s = time.perf_counter() - start
    seconds, out = measure(lambda: model.encode(tower, x), device, profile, deadline)
    return seconds, out, "bf16", f"first call (compile) {compile_s:.0f} s"


def emit(args: argparse.Namespace, rows: list[Row], row: Row) -> None:
    """Keep a row, and append it to the step's rows file at once: a step killed later keeps its rows."""
    rows.append(row)
    if getattr(args, "rows_file", None):
        with open(args.rows_file, "a") as handle:
            handle.write(json.dumps(asdict(row)) + "\n")


def graphed(model: Any, tower: str, x: torch.Tensor, profile: Profile,
            deadline: float) -> tuple[float, torch.Tensor]:
    """Capture one encode at this batch shape in a CUDA graph and time its replays (launch overhead gone)."""
    device = x.device
    if tower == "text":
        # encode() cuts the batch at its longest prompt, a host decision a graph cannot hold: cut here.
        static_in = x[:, : int(x.argmax(-1).max()) + 1].clone()

        def forward() -> torch.Tensor:
            return plain_text(model, static_in)
    else:
        static_in = x.clone()

        def forward() -> torch.Tensor:
            return model.encode(tower, static_in)
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(2):  # warm up outside the graph: lazy init, kernel selection
            forward()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = forward()

    def replay() -> torch.Tensor:
        graph.replay()
        return static_out

    return measure(replay, device, profile, deadline)


# ---------------------------------------------------------------------------- weights and load


def run_weights(args: argparse.Namespace, profile: Profile, deadline: float) -> list[Row]:
    """Generate the deterministic weights on the device and write the model directory."""
    from weights import ensure_weights

    start = time.perf_counter()
    made = ensure_weights(Path(args.root), args.model, device=args.device, pth=False)
    seconds = time.perf_counter() - start
    size = sum(f.stat().st_size for f in made[1].glob("*.safetensors")) / 2**30
    rows: list[Row] = []
    emit(args, rows, Row("setup", "deterministic weights built on the device + model dir written", seconds=seconds,
                         note=f"{size:.2f} GiB fp32"))
    return rows


def run_load(args: argparse.Namespace, profile: Profile, deadline: float) -> list[Row]:
    """Model-directory load time per tower, straight onto the device, fp32 and bf16."""
    import bindspace

    device = torch.device(args.device)
    rows: list[Row] = []
    for tower in TOWERS:
        for dtype in (torch.float32, torch.bfloat16):
            label = f"load {tower} tower from model dir ({'bf16' if dtype == torch.bfloat16 else 'fp32'})"
            if time.monotonic() > deadline - 2:
                emit(args, rows, Row("load", label, note="time limit"))
                continue
            reset_peak(device)
            start = time.perf_counter()
            model = bindspace.create_model(checkpoint=Path(args.root) / args.model, modalities=[tower],
                                           device=device, dtype=dtype)
            sync(device)
            seconds = time.perf_counter() - start
            params = sum(p.numel() for p in model.parameters())
            emit(args, rows, Row("load", label, seconds=seconds, peak_gib=peak_gib(device),
                                 note=f"{params / 1e6:.3g} M parameters; files in the page cache"))
            del model
    return rows


# ---------------------------------------------------------------------------- end to end


def run_e2e(args: argparse.Namespace, profile: Profile, deadline: float) -> list[Row]:
    """From files: decoding workers feed the bf16 model (fp32 on CPU); cosine to fp32 on the same files."""
    import bindspace
    from bindspace.embedding import Embedder

    device = torch.device(args.device)
    workers = args.workers if args.workers is not None else max((os.cpu_count() or 2) - 1, 1)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    media = make_media(Path(args.root) / "media", images=profile.images, wavs=profile.wavs,
                       wav_seconds=profile.wav_seconds, video_seconds=profile.video_seconds,
                       video_size=profile.video_size)
    model_dir = Path(args.root) / args.model
    kind = {"e2e_images": "image", "e2e_audio": "audio", "e2e_video": "video"}[args.step]
    towers = ["vision"] if kind in ("image", "video") else ["audio"]
    if kind == "video":
        towers = ["vision", "audio"]
    model = bindspace.create_model(checkpoint=model_dir, modalities=towers, device=device, dtype=dtype)
    reference = bindspace.create_model(checkpoint=model_dir, modalities=towers, device=device)
    fast = Embedder(model, batch_size=profile.e2e_batch, num_workers=workers, progress=False)
    exact = Embedder(reference, batch_size=min(profile.e2e_batch, 64), num_workers=workers, progress=False)
    rows: list[Row] = []
    label = f"{'bf16' if dtype == torch.bfloat16 else 'fp32'}, batch {profile.e2e_batch}, {workers} decoding workers"
    if kind in ("image", "audio"):
        files = media["images"] if kind == "image" else media["wavs"]
        fast.embed(kind, files[: profile.e2e_batch])  # warm-up: worker start, kernel selection
        sync(device)
        reset_peak(device)
        start = time.perf_counter()
        result = fast.embed(kind, files)
        sync(device)
        seconds = time.perf_counter() - start
        check = exact.embed(kind, files[:32])
        cos = min_cosine(torch.from_numpy(result.vectors[:32]), torch.from_numpy(check.vectors))
        section = "end to end: JPEG files" if kind == "image" else "end to end: WAV files"
        unit = "images/s" if kind == "image" else "files/s"
        emit(args, rows, Row(section, label, profile.e2e_batch, len(files) / seconds, unit, None, seconds,
                             peak_gib(device), cos, note=f"{len(files)} files"))
        return rows
    video = media["video"][0]
    segment = 10.0
    reset_peak(device)
    start = time.perf_counter()
    # Each window is clips x crops views, so 4 windows make 60 images per forward pass (the windows
    # themselves are spread over every decoding worker by the embedder).
    windows = Embedder(model, batch_size=4, num_workers=workers, progress=False)
    vis = windows.embed("video", [video], segment_seconds=segment)
    sync(device)
    vis_s = time.perf_counter() - start
    start = time.perf_counter()
    aud = fast.embed("audio", [video], segment_seconds=segment)
    sync(device)
    aud_s = time.perf_counter() - start
    length = profile.video_seconds
    duration = f"{length / 60:g}-min" if length >= 60 else f"{length:g}-s"
    emit(args, rows, Row(f"end to end: {duration} MP4", f"vision + audio, {segment:g} s segments, "
                         f"{label.replace(f'batch {profile.e2e_batch}', 'vision 4 windows per batch')}",
                         seconds=vis_s + aud_s, peak_gib=peak_gib(device),
                         note=f"{vis.vectors.shape[0]} vision + {aud.vectors.shape[0]} audio segments; "
                              f"vision {vis_s:.1f} s, audio {aud_s:.1f} s"))
    return rows


STEPS: dict[str, Callable[[argparse.Namespace, Profile, float], list[Row]]] = {
    "weights": run_weights, "vision": run_tower, "text": run_tower, "audio": run_tower,
    "e2e_images": run_e2e, "e2e_video": run_e2e, "load": run_load, "e2e_audio": run_e2e,
}
assert list(STEPS) == list(STEP_LIMITS)


# ---------------------------------------------------------------------------- table


def machine_lines(device: torch.device) -> list[str]:
    """Device, CPU and software, for the header above the table."""
    from bindspace.precision import cpu_flags

    lines = [f"Device: {device_name(device)} ({device.type})"]
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        lines.append(f"GPU: {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs, "
                     f"compute capability {props.major}.{props.minor}, CUDA {torch.version.cuda}")
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma", "sse4_2", "asimd", "sve")
    flags = [f for f in wanted if f in cpu_flags()]
    lines.append(f"CPU: {cpu_name()}, {os.cpu_count()} cores; flags: {' '.join(flags) or 'unknown'}")
    peak = {p: peak_flops(device, p) for p in ("bf16", "tf32", "fp32")}
    if all(peak.values()):
        lines.append("MFU: vision FLOPs counted from the config, over the datasheet dense peak "
                     + ", ".join(f"{p} {v / 1e12:.0f} TFLOP/s" for p, v in peak.items() if v))
    lines.append(f"torch {torch.__version__}, Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')}")
    return lines


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def table(rows: list[Row]) -> str:
    """The one markdown table."""
    lines = ["| section | path | batch | throughput | ms / batch | seconds | peak GPU GiB | cosine vs fp32 | MFU "
             "| note |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rate = f"{r.rate:,.1f} {r.unit}" if r.rate is not None else ""
        mfu = f"{100 * r.mfu:.1f} %" if r.mfu is not None else ""
        lines.append(f"| {r.section} | {r.path} | {r.batch or ''} | {rate} | {_fmt(r.ms, '.2f')} | "
                     f"{_fmt(r.seconds, '.2f')} | {_fmt(r.peak_gib, '.2f')} | {_fmt(r.cosine, '.6f')} | {mfu} | "
                     f"{r.note} |")
    return "\n".join(lines)


def ratio_rows(rows: list[Row], e2e_batch: int) -> list[Row]:
    """Derived lines: the best path's speed-up over plain fp32 at the largest batch; end to end vs model only."""
    out = []
    for tower in TOWERS:
        timed = [r for r in rows if r.section == tower and r.rate is not None and r.batch is not None]
        if not timed:
            continue
        biggest = max(r.batch or 0 for r in timed)
        at_biggest = [r for r in timed if r.batch == biggest]
        base = next((r for r in at_biggest if r.path == PATHS[0]), None)
        best = max(at_biggest, key=lambda r: r.rate or 0.0)
        if base is not None and base.rate and best.rate:
            out.append(Row("summary", f"{tower}: best path at batch {biggest} vs plain fp32 eager", biggest,
                           best.rate, best.unit, note=f"{best.rate / base.rate:.2f}x ({best.path})"))
    model_only = max((r.rate or 0.0 for r in rows if r.section == "vision" and r.batch == e2e_batch
                      and r.path != PATHS[0]), default=0.0)
    e2e = next((r for r in rows if r.section == "end to end: JPEG files" and r.rate), None)
    if e2e is not None and e2e.rate and model_only:
        out.append(Row("summary", f"end-to-end images vs the best model-only vision path at batch {e2e_batch}",
                       rate=e2e.rate, unit="images/s", note=f"{100 * e2e.rate / model_only:.0f} %"))
    return out


def target_rows(rows: list[Row]) -> list[Row]:
    """Issue 15's targets for imagebind_huge on an H200, each marked met or missed from the measured rows."""
    def best(section: str, batch: int | None = None, bf16: bool = False) -> float:
        return max((r.rate or 0.0 for r in rows if r.section == section and r.rate
                    and (batch is None or r.batch == batch) and (not bf16 or r.path.startswith("bf16"))), default=0.0)

    def row(goal: str, value: str, met: bool | None) -> Row:
        verdict = "not measured" if met is None else ("met" if met else "MISSED")
        return Row("target", goal, note=f"{verdict}: {value}")

    out = []
    vision = best("vision", 256, bf16=True)
    plain = next((r.rate for r in rows if r.section == "vision" and r.batch == 256 and r.path == PATHS[0]
                  and r.rate), None)
    out.append(row("ViT-H bf16 >= 1,500 images/s at batch 256", f"{vision:,.0f} images/s",
                   vision >= 1500 if vision else None))
    out.append(row(">= 3x plain fp32 eager at batch 256", f"{vision / plain:.1f}x" if plain and vision else "-",
                   vision >= 3 * plain if plain and vision else None))
    text = best("text")
    out.append(row("text >= 10,000 prompts/s", f"{text:,.0f} prompts/s", text >= 10_000 if text else None))
    e2e = best("end to end: JPEG files")
    share = e2e / vision if vision else 0.0
    out.append(row("end-to-end images >= 80 % of model-only (bf16, batch 256)", f"{100 * share:.0f} %",
                   share >= 0.8 if e2e and vision else None))
    video = next((r.seconds for r in rows if r.section.endswith("MP4") and r.seconds), None)
    out.append(row("8-minute video (vision + audio, all segments) < 60 s", f"{video:.1f} s" if video else "-",
                   video < 60 if video else None))
    cosines = [r.cosine for r in rows if r.cosine is not None]
    out.append(row("cosine >= 0.999 to fp32 on every reduced-precision path",
                   f"lowest {min(cosines):.6f}" if cosines else "-", min(cosines) >= 0.999 if cosines else None))
    return out


def ordered(rows: list[Row]) -> list[Row]:
    """Setup and load rows, then tower rows by path and batch (measured largest batch first), then the rest."""
    def key(item: tuple[int, Row]) -> tuple[int, int, int, int]:
        index, row = item
        if row.section in TOWERS and row.path in PATHS:
            return (TOWERS.index(row.section), PATHS.index(row.path), row.batch or 0, index)
        first = {"setup": -2, "load": -1}  # then the towers, then end to end and notes as they came
        return (first.get(row.section, len(TOWERS)), 0, 0, index)
    return [row for _, row in sorted(enumerate(rows), key=key)]


# ---------------------------------------------------------------------------- driver


def child(args: argparse.Namespace) -> None:
    """Run one step in this process and print its rows as JSON (the last stdout line)."""
    profile = profile_for(args)
    deadline = time.monotonic() + args.limit
    torch.manual_seed(0)
    rows = STEPS[args.step](args, profile, deadline)
    print(f"{args.step}: {len(rows)} rows", file=sys.stderr)


def profile_for(args: argparse.Namespace) -> Profile:
    profile = GPU_PROFILE if args.device.startswith("cuda") else CPU_PROFILE
    if args.batches:
        profile = Profile(**{**asdict(profile), "batches": tuple(args.batches)})
    if args.compile is not None:
        profile = Profile(**{**asdict(profile), "compile": args.compile})
    return profile


def run_step_here(args: argparse.Namespace, step: str, limit: float) -> list[Row]:
    """One step in this process (the CPU check: no interpreter start per step; the limit is checked, not enforced)."""
    started = time.monotonic()
    step_args = argparse.Namespace(**{**vars(args), "step": step, "rows_file": None})
    try:
        rows = STEPS[step](step_args, profile_for(args), started + limit)
    except Exception as exc:  # noqa: BLE001 - a failed step is a row of the table, like in a child process
        rows = [Row(step, "(rest of the step)", note=f"failed: {type(exc).__name__}: {exc}"[:160])]
    print(f"[{step}] {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    return rows


def run_step(args: argparse.Namespace, step: str, limit: float) -> list[Row]:
    """One step in a child process: its own limit inside, and a hard kill a little after it."""
    argv = [sys.executable, __file__, "--child", step, "--device", args.device, "--model", args.model,
            "--root", str(args.root), "--limit", f"{limit:.0f}"]
    if args.batches:
        argv += ["--batches", *map(str, args.batches)]
    if args.compile is not None:
        argv.append("--compile" if args.compile else "--no-compile")
    if args.workers is not None:
        argv += ["--workers", str(args.workers)]
    rows_file = Path(args.root) / f"rows_{step}.jsonl"
    rows_file.unlink(missing_ok=True)
    argv += ["--rows-file", str(rows_file)]
    started = time.monotonic()
    problem = None
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=limit + 10)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            problem = f"failed: {(proc.stderr.strip().splitlines() or ['no output'])[-1][:150]}"
    except subprocess.TimeoutExpired:
        problem = f"killed at its {limit:.0f} s limit"
    print(f"[{step}] {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    rows = [Row(**json.loads(line)) for line in rows_file.read_text().splitlines()] if rows_file.exists() else []
    if problem:  # the rows it finished are kept; the line says where it stopped
        rows.append(Row(step, "(rest of the step)", note=problem))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=os.environ.get("BINDSPACE_BENCH_DEVICE", "cuda"))
    parser.add_argument("--model", default=os.environ.get("BINDSPACE_BENCH_MODEL", "imagebind_huge"))
    parser.add_argument("--root", type=Path, default=Path(os.environ.get("BINDSPACE_BENCH", "/tmp/bindspace-bench")))
    parser.add_argument("--budget", type=float, default=float(os.environ.get("BINDSPACE_BENCH_BUDGET", "450")),
                        help="seconds for the whole run (steps get their own limits inside it)")
    parser.add_argument("--steps", nargs="+", choices=list(STEPS), help="run only these steps (weights always)")
    parser.add_argument("--batches", nargs="+", type=int, help="batch sizes (default: 1 8 64 256)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile rows (default: on for CUDA, off for CPU)")
    parser.add_argument("--workers", type=int, help="decoding workers (default: cores - 1)")
    parser.add_argument("--json", type=Path, help="also write the rows and machine lines as JSON")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                        help="each step in its own process under a hard time limit (default: on for CUDA)")
    parser.add_argument("--child", choices=list(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=float, default=60.0, help=argparse.SUPPRESS)
    parser.add_argument("--rows-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.step = args.child
        child(args)
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"device {args.device!r} is not available here (torch {torch.__version__}: CUDA "
              f"{'built' if torch.backends.cuda.is_built() else 'not built'}); use --device cpu", file=sys.stderr)
        return 2
    started = time.monotonic()
    end = started + args.budget
    args.root.mkdir(parents=True, exist_ok=True)
    steps = ["weights"] + [s for s in (args.steps or list(STEPS)) if s != "weights"]
    rows: list[Row] = []
    for n, step in enumerate(steps):
        left = end - time.monotonic()
        # Keep a few seconds for every step still to come, so the last ones are not starved.
        reserve = 8.0 * (len(steps) - n - 1)
        limit = min(STEP_LIMITS[step], left - reserve)
        if limit < 5:
            rows.append(Row(step, "(whole step)", note="skipped: the run's time budget is spent"))
            continue
        isolate = args.isolate if args.isolate is not None else device.type == "cuda"
        rows += run_step(args, step, limit) if isolate else run_step_here(args, step, limit)
    rows = ordered(rows) + ratio_rows(rows, profile_for(args).e2e_batch)
    if args.model == "imagebind_huge":
        rows += target_rows(rows)
    header = machine_lines(device)
    print("\n".join(header))
    print(f"Model: {args.model}; whole run {time.monotonic() - started:.0f} s (budget {args.budget:.0f} s)\n")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"machine": header, "rows": [asdict(r) for r in rows]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
