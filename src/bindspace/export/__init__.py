"""Deployment formats: ONNX export (one graph per tower), int8 quantization, the exported manifest.

Heavy dependencies (onnx, onnxruntime, the torch exporter) are imported inside the functions.
"""
from .manifest import FORMAT, is_onnx_dir, onnx_fingerprint, read_onnx_manifest

__all__ = ["FORMAT", "export_onnx", "is_onnx_dir", "onnx_fingerprint", "quantize_dir", "read_onnx_manifest"]


def __getattr__(name: str):  # lazy: `from bindspace.export import export_onnx` loads torch.onnx only then
    if name == "export_onnx":
        from .onnx_export import export_onnx

        return export_onnx
    if name == "quantize_dir":
        from .quantize import quantize_dir

        return quantize_dir
    raise AttributeError(name)
