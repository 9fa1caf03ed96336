"""One ViT-H MLP GEMM in every int8 format ONNX Runtime offers against fp32: the ceiling of int8 on this CPU.

    python benchmarks/int8_gemm.py              # 8 images' tokens (2056 x 1280 @ 1280 x 5120), 1 thread
    python benchmarks/int8_gemm.py --rows 257 --threads 2

Why it exists: a whole int8 tower cannot be faster than its GEMMs, so when a tower misses its
speed target this says whether the kernel or the graph is the limit. CPU seconds per call
(process time, median of 5 after a warm-up): they depend far less on other jobs than wall time.
Cosines are to the fp32 product of the same random operands.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

WIDTH, HIDDEN = 1280, 5120  # ViT-H/14: model width and MLP width


def cpu_ms(fn: Callable[[], object], repeats: int = 5) -> float:
    """Median CPU milliseconds of `repeats` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return 1000 * statistics.median(times)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)  # a float32 sum of 10 M products drifts past 1
    return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))


def main() -> None:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    from bindspace.model.int8_recipe import quantization_recipe
    from bindspace.precision import cpu_flags

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=8 * 257, help="activation rows (tokens); default: 8 images")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((WIDTH, HIDDEN)) * 0.02).astype(np.float32)  # (K, N)
    x = rng.standard_normal((args.rows, WIDTH)).astype(np.float32)  # (M, K)
    reference = x @ weight
    rows: list[tuple[str, float, float]] = []

    linear = torch.nn.Linear(WIDTH, HIDDEN, bias=False)
    linear.weight.data = torch.from_numpy(weight.T.copy())  # (N, K)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        rows.append(("torch fp32 (the eager path)", cpu_ms(lambda: linear(xt)), cosine(linear(xt).numpy(), reference)))

    flags = cpu_flags()
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "gemm",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", WIDTH])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", HIDDEN])],
                                  [numpy_helper.from_array(weight, "w")])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), fp32)

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.feeds = iter([{"x": x[:64]}])

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self.feeds, None)

        variants: dict[str, Callable[[Path], None]] = {
            "dynamic, u8 x s8": lambda out: quantize_dynamic(fp32, out, weight_type=QuantType.QInt8),
            "dynamic, u8 x s8, reduce_range": lambda out: quantize_dynamic(fp32, out, weight_type=QuantType.QInt8,
                                                                           reduce_range=True),
            "dynamic, u8 x u8": lambda out: quantize_dynamic(fp32, out, weight_type=QuantType.QUInt8),
            "static QDQ, s8 x s8": lambda out: quantize_static(fp32, out, Reader(), quant_format=QuantFormat.QDQ,
                                                               activation_type=QuantType.QInt8,
                                                               weight_type=QuantType.QInt8),
            "static QOperator, u8 x u8": lambda out: quantize_static(fp32, out, Reader(),
                                                                     quant_format=QuantFormat.QOperator,
                                                                     activation_type=QuantType.QUInt8,
                                                                     weight_type=QuantType.QUInt8),
        }
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
        paths = {"ONNX Runtime fp32": fp32}
        for label, make in variants.items():
            paths[f"ONNX Runtime int8 {label}"] = out = Path(tmp) / f"{len(paths)}.onnx"
            make(out)
        for label, path in paths.items():
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

            def call(session: ort.InferenceSession = session) -> object:
                return session.run(None, {"x": x})

            y = session.run(None, {"x": x})[0]
            rows.append((label, cpu_ms(call), cosine(y, reference)))

    base = rows[0][1]
    print(f"CPU flags: {' '.join(sorted(f for f in flags if f.startswith(('avx', 'amx', 'fma', 'asimd'))))}; "
          f"int8 recipe for this CPU: {quantization_recipe(flags).cpu_kind}; torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}")
    print(f"GEMM ({args.rows} x {WIDTH}) @ ({WIDTH} x {HIDDEN}), {args.threads} thread(s), CPU ms per call\n")
    print("| kernel | CPU ms | GOP/s | vs torch fp32 | cosine to fp32 |\n|---|---|---|---|---|")
    ops = 2 * args.rows * WIDTH * HIDDEN
    for label, ms, cos in rows:
        print(f"| {label} | {ms:.1f} | {ops / ms / 1e6:.0f} | {base / ms:.2f}x | {cos:.6f} |")


if __name__ == "__main__":
    main()
