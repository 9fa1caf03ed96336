"""Deployment formats: ONNX export (one graph per tower), int8 quantization, writing the exported manifest.

Heavy dependencies (onnx, onnxruntime, the torch exporter) are imported inside the functions.
Reading an exported directory is `bindspace.model.onnx_manifest`, beside the runtime.
"""

__all__ = ["export_onnx", "quantize_dir"]


def __getattr__(name: str):  # lazy: `from bindspace.export import export_onnx` loads torch.onnx only then
    if name == "export_onnx":
        from .onnx_export import export_onnx

        return export_onnx
    if name == "quantize_dir":
        from .quantize import quantize_dir

        return quantize_dir
    raise AttributeError(name)
