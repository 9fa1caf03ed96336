"""Open-vocabulary detection on the shared space: regions scored against class embeddings of any modality.

ImageBind's detection claim (an audio-queried Detic): a detector whose classifier is a set of
class embeddings accepts audio (or image, depth ...) classes in place of text ones, unchanged.
"""
from .config import DetectorConfig
from .detector import (
    Detection,
    DetectionClass,
    Detector,
    SpaceInfo,
    class_embeddings,
    is_detector_dir,
    load_detector,
    save_detector,
)
from .network import RegionNetwork, Regions

__all__ = [
    "Detection", "DetectionClass", "Detector", "DetectorConfig", "RegionNetwork", "Regions", "SpaceInfo",
    "class_embeddings", "is_detector_dir", "load_detector", "save_detector",
]
