"""ONNX Runtime benchmarks: exported fp32 and int8 towers against the plain fp32 eager path, side by side.

    python benchmarks/onnx_bench.py                       # prepare (export + quantize) then all cases
    python benchmarks/onnx_bench.py --tower text --profile

Same harness as run.py (its timing, cosine, media and machine helpers; weights.py's deterministic
imagebind_huge weights). Every (tower, path) runs in its own process, so its peak RSS is its own;
outputs are kept and cosines are taken per item against the plain fp32 path. The exports are made
once under ROOT/onnx/ (several GB of RAM and disk; --clean removes them afterwards).
Targets on a 2-core AVX-512 BF16/VNNI CPU: vision int8 >= 2.5x, audio int8 end to end >= 4x,
text >= 12x the plain fp32 path, at cosine >= 0.99 (>= 0.99999 for the fp32 export).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))
import run as base  # noqa: E402 - the shared harness (timed, cosine, media, machine)

NAME = base.NAME
TEXT_N, IMAGES_N, AUDIO_N = 64, 8, 12
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
TARGETS = {"text": 12.0, "vision": 2.5, "audio": 4.0}


def onnx_dir(root: Path, tower: str, precision: str) -> Path:
    return root / "onnx" / f"{tower}-{precision}"


# ---------------------------------------------------------------------------- preparation (child processes)


def prepare_export(root: Path, tower: str) -> dict:
    """Export one tower (fp32, checked against torch) unless already there."""
    import bindspace
    from bindspace.export import export_onnx
    from bindspace.index.fingerprint import model_fingerprint

    out = onnx_dir(root, tower, "fp32")
    if (out / "manifest.json").exists():
        return {"prepared": str(out)}
    start = time.perf_counter()
    model = bindspace.create_model(NAME, checkpoint=root / NAME, modalities=[tower])
    export_onnx(model, out, fingerprint=model_fingerprint(None, root / NAME))
    return {"prepared": str(out), "seconds": time.perf_counter() - start, "rss_gb": base.peak_rss_gb()}


def prepare_int8(root: Path, tower: str) -> dict:
    """Dynamic int8 copy of the fp32 export."""
    from bindspace.export import quantize_dir

    out = onnx_dir(root, tower, "int8")
    if (out / "manifest.json").exists():
        return {"prepared": str(out)}
    start = time.perf_counter()
    quantize_dir(onnx_dir(root, tower, "fp32"), out, mode="dynamic")
    return {"prepared": str(out), "seconds": time.perf_counter() - start, "rss_gb": base.peak_rss_gb()}


# ---------------------------------------------------------------------------- cases (child processes)


def _texts() -> torch.Tensor:
    from bindspace.preprocess import text

    return text(["a photo of a dog."] * TEXT_N)


def _model(root: Path, tower: str, path: str):
    import bindspace

    if path == "plain":
        return bindspace.create_model(NAME, checkpoint=root / NAME, modalities=[tower])
    return bindspace.create_model(checkpoint=onnx_dir(root, tower, path))


def case_text(root: Path, path: str) -> tuple[dict, np.ndarray]:
    model, ids = _model(root, "text", path), _texts()

    def plain():
        return base.plain_text(model, ids)

    def fast():
        with torch.no_grad():
            return model.encode("text", ids)

    seconds, out = base.timed(plain if path == "plain" else fast, 1 if path == "plain" else 3)
    return {"job": f"{TEXT_N} text prompts", "items_per_s": TEXT_N / seconds}, out.float().numpy()


def case_vision(root: Path, path: str) -> tuple[dict, np.ndarray]:
    model, x = _model(root, "vision", path), base._images(IMAGES_N)

    def run():
        with torch.no_grad():
            return model.encode("vision", x)

    seconds, out = base.timed(run, 1)
    return {"job": f"{IMAGES_N} images ViT-H/14", "items_per_s": IMAGES_N / seconds}, out.float().numpy()


def case_audio(root: Path, path: str) -> tuple[dict, np.ndarray]:
    from bindspace.embedding import Embedder
    from bindspace.preprocess import load_audio

    with tempfile.TemporaryDirectory() as tmp:
        files = base._audio_files(AUDIO_N, Path(tmp))
        model = _model(root, "audio", path)
        if path == "plain":
            def run():
                with torch.no_grad():
                    return torch.cat([model.encode("audio", load_audio(f)[None]) for f in files]).numpy()
        else:
            embedder = Embedder(model, batch_size=4, num_workers=2, progress=False)

            def run():
                return embedder.embed("audio", files).vectors

        seconds, out = base.timed(run, 1)
    return {"job": f"{AUDIO_N} audio files end to end", "items_per_s": AUDIO_N / seconds}, np.asarray(out)


CASES = {"text": case_text, "vision": case_vision, "audio": case_audio}
PATHS = {"plain": "plain fp32 eager", "fp32": "ONNX Runtime fp32", "int8": "ONNX Runtime int8 (dynamic)"}


def profile(root: Path, tower: str) -> dict:
    """Time per ONNX op type of one int8 run (which kernels take the time)."""
    import onnxruntime as ort

    from bindspace.model.onnx_backend import OnnxModel

    model = OnnxModel(onnx_dir(root, tower, "int8"))
    x = {"text": _texts, "vision": lambda: base._images(2)}.get(tower, lambda: torch.randn(4, 1, 128, 204))()
    feed = model.graph_input(tower, x)
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(root / "onnx" / f"profile-{tower}")
    entry = model.manifest["towers"][tower]
    graph = str(model.path / entry["graph"]["file"])
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    session.run(None, feed)
    session.run(None, feed)
    trace = json.loads(Path(session.end_profiling()).read_text())
    by_op: dict[str, float] = {}
    for event in trace:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            op = event.get("args", {}).get("op_name", "?")
            by_op[op] = by_op.get(op, 0.0) + event.get("dur", 0) / 1e6
    total = sum(by_op.values()) or 1.0
    top = sorted(by_op.items(), key=lambda kv: -kv[1])[:6]
    return {"tower": tower, "ops": {op: round(100 * s / total, 1) for op, s in top}}


# ---------------------------------------------------------------------------- parent


def cpu_flags() -> str:
    from bindspace.precision import cpu_flags as flags

    have = flags()
    return " ".join(f for f in FLAGS if f in have) or "(none of the listed)"


def child(root: Path, args: list[str]) -> dict | None:
    proc = subprocess.run([sys.executable, __file__, "--root", str(root), "--model", NAME, "--child", *args],
                          capture_output=True, text=True)
    if proc.returncode:
        print(f"{' '.join(args)} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lines = ["| job | path | items/s | speed-up vs plain fp32 | peak RSS GB | min cosine vs plain (per item) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        cos = f"{r['cosine']:.6f}" if "cosine" in r else ""
        lines.append(f"| {r['job']} | {r['path']} | {r['items_per_s']:.2f} | {r['speedup']:.2f}x | "
                     f"{r['rss_gb']:.2f} | {cos} |")
    return "\n".join(lines)


def main() -> None:
    global NAME
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tower", choices=sorted(CASES), action="append")
    parser.add_argument("--root", type=Path, default=Path(os.environ.get("BINDSPACE_BENCH", "/tmp/bindspace-bench")))
    parser.add_argument("--profile", action="store_true", help="also profile the int8 graphs (time per op type)")
    parser.add_argument("--prepare-only", action="store_true", help="export and quantize, measure nothing")
    parser.add_argument("--clean", action="store_true", help="delete ROOT/onnx afterwards")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument("--model", default=NAME, help="preset (default: %(default)s; imagebind_tiny_test: a smoke run)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    NAME = args.model
    torch.set_num_threads(min(torch.get_num_threads(), os.cpu_count() or 1))
    if args.child:
        kind, tower, *rest = args.child
        if kind == "case":
            measured, vectors = CASES[tower](args.root, rest[0])
            np.save(args.root / "onnx" / f"out-{tower}-{rest[0]}.npy", vectors)
            usage = resource.getrusage(resource.RUSAGE_SELF)  # CPU seconds: less load-dependent than wall time
            measured.update(path=PATHS[rest[0]], rss_gb=base.peak_rss_gb(), cpu_s=usage.ru_utime + usage.ru_stime)
            print(json.dumps(measured))
        else:
            fn = {"export": prepare_export, "int8": prepare_int8, "profile": profile}[kind]
            print(json.dumps(fn(args.root, tower)))
        return
    from weights import ensure_weights

    ensure_weights(args.root, NAME)
    (args.root / "onnx").mkdir(exist_ok=True)
    towers = args.tower or ["text", "audio", "vision"]
    for tower in towers:
        for step in ("export", "int8"):
            print(f"{step} {tower}: {child(args.root, [step, tower])}", file=sys.stderr)
    if args.prepare_only:
        return
    rows: list[dict] = []
    profiles: list[dict | None] = []
    for tower in towers:
        plain = None
        for path in PATHS:
            row = child(args.root, ["case", tower, path])
            if row is None:
                continue
            out = np.load(args.root / "onnx" / f"out-{tower}-{path}.npy")
            if path == "plain":
                plain = row
                ref = out
            else:
                a = out / np.linalg.norm(out, axis=1, keepdims=True)
                b = ref / np.linalg.norm(ref, axis=1, keepdims=True)
                row["cosine"] = float((a * b).sum(1).min())
            row["speedup"] = row["items_per_s"] / plain["items_per_s"] if plain else float("nan")
            rows.append(row)
            print(f"done {tower} {path}", file=sys.stderr)
        if args.profile:
            profiles.append(child(args.root, ["profile", tower]))
    print(f"Machine: {base.machine()}\nCPU flags: {cpu_flags()}\n")
    print(table(rows))
    for p in profiles:
        if p:
            print(f"\nint8 {p['tower']}: share of kernel time by op: {p['ops']}")
    if args.json:
        args.json.write_text(json.dumps({"machine": base.machine(), "cpu_flags": cpu_flags(), "rows": rows,
                                         "profiles": profiles}, indent=1))
    if args.clean:
        shutil.rmtree(args.root / "onnx", ignore_errors=True)


if __name__ == "__main__":
    main()
