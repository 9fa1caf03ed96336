"""The benchmarks `bindspace eval` knows, with the ImageBind paper's zero-shot numbers (percent)."""
from __future__ import annotations

from ...errors import BindspaceError
from . import audiocaps, clotho, esc50, imagenet, llvip, nyud, sund
from .base import Benchmark

# Paper numbers: ImageBind (Girdhar et al., CVPR 2023), emergent zero-shot classification
# (top-1 accuracy) and zero-shot text->audio retrieval (recall@10), ImageBind ViT-H.
BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("esc50", "ESC-50 (audio, 50 classes, 5 folds)", "classification", "audio", "top1",
                  {"top1": 66.9}, esc50.load, "ROOT/meta/esc50.csv + ROOT/audio/*.wav", "clips"),
        Benchmark("clotho", "Clotho v2 evaluation (text->audio)", "retrieval", "audio", "R@10",
                  {"R@10": 28.4}, clotho.load,
                  "ROOT/clotho_captions_evaluation.csv + ROOT/evaluation/*.wav", "clips"),
        Benchmark("audiocaps", "AudioCaps test (text->audio)", "retrieval", "audio", "R@10",
                  {"R@10": 42.3}, audiocaps.load, "ROOT/test.csv + ROOT/test/<youtube_id>[_<start>].wav", "clips"),
        Benchmark("nyud", "NYU-Depth v2 (depth, 10 scene classes)", "classification", "depth", "top1",
                  {"top1": 54.0}, nyud.load, "ROOT/<split>/depth/*.png + ROOT/<split>/scenes.csv", "depth maps"),
        Benchmark("sund", "SUN RGB-D (depth, 19 scene classes)", "classification", "depth", "top1",
                  {"top1": 35.1}, sund.load, "ROOT/**/<sample>/depth/*.png + <sample>/scene.txt", "samples"),
        Benchmark("llvip", "LLVIP (thermal, person vs background)", "classification", "thermal", "top1",
                  {"top1": 63.4}, llvip.load, "ROOT/infrared/test/*.jpg + ROOT/Annotations/*.xml", "images"),
        Benchmark("imagenet", "ImageNet-1k val (images)", "classification", "image", "top1",
                  {"top1": 77.7}, imagenet.load, "ROOT/<class folder>/*.JPEG", "images"),
    )
}


def get_benchmark(name: str) -> Benchmark:
    """A benchmark by name (esc50, clotho, audiocaps, nyud, sund, llvip, imagenet)."""
    key = name.strip().lower().replace("-", "")
    if key not in BENCHMARKS:
        raise BindspaceError(f"unknown benchmark {name!r} (choose from {', '.join(BENCHMARKS)})")
    return BENCHMARKS[key]
