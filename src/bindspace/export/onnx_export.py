"""`export_onnx`: one ONNX file per tower, a manifest, and a check against torch at export time."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import BindspaceError, first_line
from ..fsio import publish_dir, work_dir
from ..modality import Modality, as_modality
from ..model import onnx_manifest as mf
from ..quiet import quiet
from .graphs import INPUT_NAMES, MIN_TEXT_LENGTH, TowerGraph, input_shape, sample_input
from .manifest import file_entry, write_manifest

EXPORT_DTYPES = ("float32", "float16")
# The export check: least cosine between ONNX Runtime and torch outputs over the sample inputs.
MIN_COSINE = {"float32": 0.99999, "float16": 0.999}


class ExportError(BindspaceError):
    """An export could not be written or did not reproduce the torch model."""


def export_onnx(
    model: Any,
    out_dir: str | os.PathLike[str],
    *,
    modalities: Iterable[str | Modality] | None = None,
    opset: int = mf.DEFAULT_OPSET,
    dtype: str = "float32",
    check: bool = True,
    fingerprint: str | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Export the towers of an ImageBindModel (fp32 weights) into `out_dir`; returns it.

    Writes `<tower>.onnx` + `<tower>.onnx.data` (external weights, needed past 2 GB) per tower
    and `manifest.json`. With `check`, each graph is run in ONNX Runtime on deterministic sample
    inputs (two batch sizes, two text lengths) and compared with torch; a mismatch raises.
    `fingerprint` is the source weights' fingerprint (an fp32 export shares it, so an index built
    with the torch model is searched with the export).
    """
    if dtype not in EXPORT_DTYPES:
        raise ExportError(f"cannot export as {dtype!r} (choose from {', '.join(EXPORT_DTYPES)}; "
                          "int8: bindspace quantize)")
    if not mf.MIN_OPSET <= int(opset) <= mf.supported_opset():
        raise ExportError(f"opset {opset} is not supported: choose {mf.MIN_OPSET}-{mf.supported_opset()}")
    towers = list(model.modalities) if modalities is None else [as_modality(m) for m in modalities]
    missing = [str(m) for m in towers if m not in model.modalities]
    if missing:
        raise ExportError(f"the model has no {', '.join(missing)} tower (has: {', '.join(model.modalities)})")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out}: already exists and is not an empty directory")
    say = log or (lambda _msg: None)
    with work_dir(out) as work:
        entries = {}
        for tower in towers:
            say(f"exporting {tower}")
            entries[str(tower)] = _export_tower(model, tower, work, int(opset), dtype, check)
            if check:
                say(f"  {tower}: ONNX Runtime vs torch: cosine >= {entries[str(tower)]['check']['min_cosine']:.7f}")
        manifest = {
            "format": mf.FORMAT, "version": mf.VERSION, "config": model.config.to_dict(),
            "preprocessing": mf.PREPROCESSING_VERSION, "opset": int(opset), "precision": dtype,
            "fingerprint": fingerprint if dtype == "float32" else None, "source_fingerprint": fingerprint,
            "towers": entries, "software": _versions(),
        }
        write_manifest(work, manifest)
        publish_dir(work, out)
    return out


def _export_tower(model: Any, tower: Modality, root: Path, opset: int, dtype: str, check: bool) -> dict[str, Any]:
    cfg = model.config.towers[tower]
    graph: torch.nn.Module = TowerGraph(model, tower).eval()
    if dtype == "float16":
        graph = _half_copy(graph)
    name = INPUT_NAMES[tower]
    length = min(16, cfg.input_size[0]) if tower == Modality.TEXT else None
    example = _as(sample_input(tower, cfg, 2, length=length), dtype)
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    dims: dict[int, Any] = {0: batch}
    if tower == Modality.TEXT:
        dims[1] = torch.export.Dim("length", min=MIN_TEXT_LENGTH, max=cfg.input_size[0])
    file = root / f"{tower}.onnx"
    with quiet(EXPORTER_LOGGERS, stdout=True), torch.inference_mode(False), torch.no_grad():
        try:
            torch.onnx.export(
                graph, (example,), str(file), dynamo=True, opset_version=opset, input_names=[name],
                output_names=[mf.OUTPUT_NAME], dynamic_shapes=(dims,), external_data=True, optimize=True,
            )
        except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds; the user needs one line
            first = first_line(exc)
            raise ExportError(f"{tower}: ONNX export failed: {first}") from exc
    extra = sorted(p.name for p in root.iterdir() if p.name.startswith(file.name + "."))
    entry: dict[str, Any] = {
        "graph": file_entry(root, file.name),
        "external_data": [file_entry(root, n) for n in extra],
        "input": {"name": name, "shape": input_shape(tower, cfg),
                  "dtype": "int64" if tower == Modality.TEXT else dtype},
        "output": {"name": mf.OUTPUT_NAME, "shape": ["batch", model.config.embed_dim], "dtype": dtype},
        "logit_scale": float(model.logit_scale(tower)),
    }
    if check:
        entry["check"] = check_against_torch(graph, tower, cfg, file, dtype)
    return entry


def check_against_torch(graph: torch.nn.Module, tower: Modality, cfg: Any, file: Path, dtype: str) -> dict[str, float]:
    """Run the exported graph in ONNX Runtime and torch on sample inputs; raise unless they agree."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    cases: list[tuple[int, int, int | None]] = [(1, 0, None), (3, 1, None)]
    if tower == Modality.TEXT:
        cases += [(2, 2, MIN_TEXT_LENGTH + 3), (4, 3, cfg.input_size[0])]
    worst, diff = 1.0, 0.0
    for batch, seed, length in cases:
        x = _as(sample_input(tower, cfg, batch, seed=seed, length=length), dtype)
        with torch.no_grad():
            want = graph(x).float()
        got = torch.from_numpy(np.asarray(session.run(None, {INPUT_NAMES[tower]: x.numpy()})[0])).float()
        a, b = torch.nn.functional.normalize(want, dim=-1), torch.nn.functional.normalize(got, dim=-1)
        worst = min(worst, float((a * b).sum(-1).min()))
        diff = max(diff, float((a - b).abs().max()))
    if not worst >= MIN_COSINE[dtype]:
        raise ExportError(f"{tower}: ONNX Runtime output differs from torch (cosine {worst:.6f} < {MIN_COSINE[dtype]})")
    return {"min_cosine": round(worst, 9), "max_abs_diff_unit": diff, "cases": len(cases)}


def _as(x: torch.Tensor, dtype: str) -> torch.Tensor:
    return x.to(getattr(torch, dtype)) if x.is_floating_point() else x


def _half_copy(graph: torch.nn.Module) -> torch.nn.Module:
    """A float16 copy of a tower graph (the model itself stays float32)."""
    import copy

    return copy.deepcopy(graph).half()


def _versions() -> dict[str, str]:
    from .. import __version__

    out = {"bindspace": __version__, "torch": torch.__version__}
    for name in ("onnx", "onnxruntime", "onnxscript"):
        with contextlib.suppress(ImportError):
            out[name] = __import__(name).__version__
    return out


# The exporter's progress prints and warnings, silenced while it runs (its errors still raise).
EXPORTER_LOGGERS = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "")
