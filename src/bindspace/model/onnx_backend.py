"""An exported directory run by ONNX Runtime, with the torch model's calling contract.

`OnnxModel` answers what the Embedder, tasks, index and server use: `encode`, `forward`
(dict in, dict of postprocessed embeddings out), `config`, `modalities`, `embed_dim`,
`tower_config`, `logit_scale`, `parameters()` (for the device), `eval/train/to`. No torch
model code runs: torch only carries the input and output tensors.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import ModelConfig
from ..errors import BindspaceError, CheckpointError, first_line
from ..modality import Modality, as_modality
from . import onnx_manifest as mf
from .contract import EmbeddingModel, text_run_length

_NUMPY = {"float32": np.float32, "float16": np.float16, "int64": np.int64}


class OnnxModel(EmbeddingModel):
    """The towers of an exported directory as ONNX Runtime sessions."""

    def __init__(self, path: str | os.PathLike[str], modalities: Iterable[str | Modality] | None = None, *,
                 device: str | torch.device = "cpu", verify: bool = True, threads: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.manifest = mf.read_onnx_manifest(self.path)
        self.config = ModelConfig.from_dict(self.manifest["config"])
        self.precision = str(self.manifest["precision"])
        self.kind_warning = _kind_warning(self.path, self.manifest)
        if self.kind_warning:
            from .int8_recipe import KindWarning

            warnings.warn(self.kind_warning, KindWarning, stacklevel=2)
        entries: dict[str, Any] = self.manifest["towers"]
        wanted = list(self.config.towers) if modalities is None else [as_modality(m) for m in modalities]
        absent = [str(m) for m in wanted if str(m) not in entries]
        if modalities is not None and absent:
            raise CheckpointError(f"{self.path}: has no ONNX graph for {', '.join(absent)} (has: {', '.join(entries)})")
        self.modalities: tuple[Modality, ...] = tuple(
            m for m in self.config.towers if m in wanted and str(m) in entries)
        self._entries = {m: entries[str(m)] for m in self.modalities}
        self.register_parameter("device_anchor", nn.Parameter(torch.empty(0), requires_grad=False))
        self.to(device)
        self._sessions = {m: self._session(m, self._entries[m], verify, threads) for m in self.modalities}

    # ----------------------------------------------------------------- the torch model's API

    @property
    def fingerprint(self) -> str:
        """Which weights this directory holds (see `manifest.onnx_fingerprint`)."""
        return mf.onnx_fingerprint(self.path)

    def logit_scale(self, modality: str | Modality) -> torch.Tensor:
        """The multiplier the tower's postprocessor applies, as a 0-d tensor."""
        return torch.tensor(float(self._entries[self._check(modality)]["logit_scale"]))

    # ----------------------------------------------------------------- internals

    def _session(self, modality: Modality, entry: dict[str, Any], verify: bool, threads: int | None) -> Any:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BindspaceError("running an exported model needs onnxruntime: pip install 'bindspace[onnx]'") from None
        if verify:
            mf.verify_files(self.path, str(modality), entry)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: a missing optional provider is not the user's problem
        if threads:
            options.intra_op_num_threads = int(threads)
        providers = ["CPUExecutionProvider"]
        if self._device().type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BindspaceError("this onnxruntime has no CUDA provider: "
                                     "install onnxruntime-gpu or use --device cpu")
            providers.insert(0, "CUDAExecutionProvider")
        file = self.path / entry["graph"]["file"]
        try:
            return ort.InferenceSession(str(file), options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            first = first_line(exc)
            raise CheckpointError(f"{file}: onnxruntime cannot load it: {first}") from None

    def _device(self) -> torch.device:
        return next(self.parameters()).device  # the anchor parameter: where `.to()` moved the model

    def graph_input(self, modality: str | Modality, x: torch.Tensor) -> dict[str, np.ndarray]:
        """The feed of a tower's graph for a plain batch: text cut at its longest text, images as clips."""
        modality = self._check(modality)
        self._check_shape(modality, x)
        x = x.detach().cpu()
        if modality == Modality.TEXT:
            eot = x.argmax(dim=-1)  # (B,) end-of-text holds the largest id
            # Causal attention: positions after the longest text's end change no pooled token;
            # cut there, rounded up to the length bucket the torch model runs at too.
            x = x[:, : max(text_run_length(int(eot.max()) + 1, x.shape[1]), 2) if x.numel() else 2].to(torch.int64)
        elif modality == Modality.VISION and x.ndim == 4:
            x = x.unsqueeze(2).expand(-1, -1, self.config.towers[modality].patch_size[0], -1, -1)  # image -> clip
        spec = self._entries[modality]["input"]
        array = x.float().numpy() if x.is_floating_point() else x.numpy()
        return {spec["name"]: np.ascontiguousarray(array, dtype=_NUMPY[spec["dtype"]])}

    def _embed_items(self, modality: Modality, x: torch.Tensor) -> torch.Tensor:
        """One embedding per item of a plain batch, float32 on the model's device."""
        if x.shape[0] == 0:
            self._check_shape(modality, x)
            return torch.empty(0, self.embed_dim, device=self._device())
        out = self._sessions[modality].run(None, self.graph_input(modality, x))[0]
        return torch.from_numpy(np.asarray(out, dtype=np.float32)).to(self._device())


def _kind_warning(path: Path, manifest: dict[str, Any]) -> str | None:
    """One line when an int8 directory was quantized for a CPU kind whose kernels this CPU lacks."""
    quantization = manifest.get("quantization")
    if not isinstance(quantization, dict):
        return None
    from .int8_recipe import Recipe, kind_mismatch

    # before recipes were recorded, every directory had int8 weights: the old manifests read as such
    recorded = quantization.get("recipe") or {"mode": quantization.get("mode", "dynamic")}
    message = kind_mismatch(Recipe.from_dict(recorded))
    return None if message is None else f"{path}: {message}"


def load_onnx_model(path: str | os.PathLike[str], config: ModelConfig | None = None,
                    modalities: Iterable[str | Modality] | None = None, *,
                    device: str | torch.device = "cpu", verify: bool = True) -> OnnxModel:
    """Open an exported directory; with `config`, refuse a directory exported from another model."""
    stored = mf.onnx_config(path)
    if config is not None and config.name != stored.name and config.to_dict()["towers"] != stored.to_dict()["towers"]:
        raise CheckpointError(f"{Path(path)}: holds an export of {stored.name!r}, not {config.name!r}")
    return OnnxModel(path, modalities, device=device, verify=verify)
