"""Turn files, bytes and arrays into model inputs, one function per modality.

Each batch function takes a list of inputs and returns the stacked model input;
each `load_*` function takes one input and returns one item (no batch axis).
Every problem with an input raises `bindspace.errors.InputError` naming it.
"""
from __future__ import annotations

from .audio import audio, load_audio
from .depth import depth, load_depth
from .image import image, load_image
from .imu import imu, load_imu
from .thermal import load_thermal, thermal
from .tokenizer import tokenize as text
from .video import load_video, video

__all__ = [
    "text", "image", "audio", "video", "depth", "thermal", "imu",
    "load_image", "load_audio", "load_video", "load_depth", "load_thermal", "load_imu",
]
