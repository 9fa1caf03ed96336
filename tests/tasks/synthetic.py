"""Tiny datasets in each benchmark's exact on-disk layout (file names, CSV columns, folds)."""
from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import soundfile
from PIL import Image

ESC50_HEADER = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]


def write_wav(path: Path, seconds: float = 0.3, freq: float = 440.0, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)
    return path


def write_csv(path: Path, header: list[str], rows: Sequence[Sequence[object]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# ESC-50: 12 clips, 3 categories with the release's non-contiguous targets, folds 1..5;
# clip 1-7-A-41.wav is corrupt and 5-9-A-0.wav is listed but missing.
ESC50_ROWS = [
    # filename, fold, target, category
    ("1-1-A-0.wav", 1, 0, "dog"), ("1-2-A-5.wav", 1, 5, "chirping_birds"), ("1-7-A-41.wav", 1, 41, "chainsaw"),
    ("2-3-A-0.wav", 2, 0, "dog"), ("2-4-A-41.wav", 2, 41, "chainsaw"),
    ("3-5-A-5.wav", 3, 5, "chirping_birds"), ("3-6-A-41.wav", 3, 41, "chainsaw"),
    ("4-8-A-0.wav", 4, 0, "dog"), ("4-8-B-5.wav", 4, 5, "chirping_birds"),
    ("5-1-A-41.wav", 5, 41, "chainsaw"), ("5-2-A-5.wav", 5, 5, "chirping_birds"), ("5-9-A-0.wav", 5, 0, "dog"),
]
ESC50_CORRUPT, ESC50_MISSING = "1-7-A-41.wav", "5-9-A-0.wav"


def make_esc50(root: Path) -> Path:
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    rows = []
    for i, (name, fold, target, category) in enumerate(ESC50_ROWS):
        rows.append([name, fold, target, category, "True" if target == 0 else "False", name.split("-")[1], "A"])
        if name == ESC50_CORRUPT:
            (root / "audio" / name).write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
        elif name != ESC50_MISSING:
            write_wav(root / "audio" / name, 0.25, 200.0 + 90 * i)
    write_csv(root / "meta" / "esc50.csv", ESC50_HEADER, rows)
    return root


# Clotho: 4 clips with 5 captions each, plus one listed clip that is missing.
CLOTHO_FILES = ["Rain on a roof.wav", "dog barking, far away.wav", "engine idle.wav", "birds.wav", "gone.wav"]


def make_clotho(root: Path) -> Path:
    (root / "evaluation").mkdir(parents=True)
    rows = []
    for i, name in enumerate(CLOTHO_FILES):
        rows.append([name] + [f"caption {k} about clip {i}, \"quoted\"" for k in range(1, 6)])
        if name != "gone.wav":
            write_wav(root / "evaluation" / name, 0.25, 300.0 + 100 * i)
    write_csv(root / "clotho_captions_evaluation.csv", ["file_name"] + [f"caption_{k}" for k in range(1, 6)], rows)
    return root


# AudioCaps: 4 clips x 2 captions; files named three accepted ways, one clip not downloaded.
AUDIOCAPS_CLIPS = [("--0PQM4-hqg", "30", "--0PQM4-hqg_30.wav"), ("abcDEF12345", "0", "abcDEF12345.wav"),
                   ("xyz-_123456", "10", "Yxyz-_123456.flac"), ("missing0000", "40", None)]


def make_audiocaps(root: Path) -> Path:
    (root / "test").mkdir(parents=True)
    rows, cap_id = [], 100
    for i, (youtube_id, start, filename) in enumerate(AUDIOCAPS_CLIPS):
        for k in range(2):
            rows.append([cap_id, youtube_id, start, f"sound number {i}, take {k}"])
            cap_id += 1
        if filename:
            write_wav(root / "test" / filename, 0.25, 500.0 + 50 * i)
    write_csv(root / "test.csv", ["audiocap_id", "youtube_id", "start_time", "caption"], rows)
    return root


def depth_png(mm: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(mm.astype(np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def depth_map(seed: int, shape=(48, 64)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(500, 6000, size=shape).astype(np.uint16)  # millimetres


# NYU-D: (file, raw scene type); printer_room is a rare type merged into "others".
NYUD_ROWS = [("0001.png", "bedroom"), ("0002.png", "kitchen"), ("0003.png", "printer_room"),
             ("0004.png", "living_room"), ("0005.png", "Bathroom"), ("0006.png", "office")]


def make_nyud(root: Path, split: str = "test") -> Path:
    (root / split / "depth").mkdir(parents=True)
    for i, (name, _) in enumerate(NYUD_ROWS):
        if name == "0006.png":
            (root / split / "depth" / name).write_bytes(b"\x89PNG broken")
        else:
            (root / split / "depth" / name).write_bytes(depth_png(depth_map(i)))
    write_csv(root / split / "scenes.csv", ["file", "scene"], [list(r) for r in NYUD_ROWS])
    return root


def sun_encode(mm: np.ndarray) -> np.ndarray:
    """Millimetres as the SUN RGB-D release stores them: rotated left by 3 bits on 16 bits."""
    v = mm.astype(np.uint32)
    return (((v << 3) | (v >> 13)) & 0xFFFF).astype(np.uint16)


# SUN RGB-D: sample folders at different depths; "idk" is not one of the 19 classes.
SUND_SAMPLES = [("kv1/NYUdata/NYU0001", "bedroom"), ("kv1/NYUdata/NYU0002", "office"),
                ("kv2/kinect2data/000002_2014-05-26_14-23-37_260595134347_rgbf000103-resize", "idk"),
                ("realsense/lg/2014_10_24-15_09_54-1311000073", "conference_room"),
                ("xtion/xtion_align_data/2014_12_03/000001", "study_space")]


def make_sund(root: Path) -> Path:
    for i, (rel, scene) in enumerate(SUND_SAMPLES):
        folder = root / rel
        (folder / "depth").mkdir(parents=True)
        (folder / "image").mkdir()
        (folder / "scene.txt").write_text(scene + "\n")
        (folder / "depth" / f"{i:04d}.png").write_bytes(depth_png(sun_encode(depth_map(10 + i))))
    return root


def voc_xml(filename: str, size: tuple[int, int], boxes: list[tuple[str, int, int, int, int]]) -> str:
    objects = "".join(
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for name, x0, y0, x1, y1 in boxes
    )
    return (f"<annotation><folder>LLVIP</folder><filename>{filename}</filename><size><width>{size[0]}</width>"
            f"<height>{size[1]}</height><depth>3</depth></size>{objects}</annotation>")


# LLVIP: 3 infrared test images; 190001 has 2 persons (+ a tiny box that is dropped),
# 190002 has 1, 190003 has no annotation file.
LLVIP_BOXES = {
    "190001": [("person", 10, 10, 40, 70), ("person", 80, 20, 110, 90), ("person", 0, 0, 3, 3)],
    "190002": [("person", 50, 30, 90, 95)],
}


def make_llvip(root: Path) -> Path:
    (root / "infrared" / "test").mkdir(parents=True)
    (root / "visible" / "test").mkdir(parents=True)
    (root / "Annotations").mkdir()
    rng = np.random.default_rng(0)
    for stem in ("190001", "190002", "190003"):
        pixels = rng.integers(0, 255, size=(96, 128), dtype=np.uint8)
        Image.fromarray(pixels).convert("RGB").save(root / "infrared" / "test" / f"{stem}.jpg")
        if stem in LLVIP_BOXES:
            (root / "Annotations" / f"{stem}.xml").write_text(voc_xml(f"{stem}.jpg", (128, 96), LLVIP_BOXES[stem]))
    return root


IMAGENET = {"n01440764": 3, "n01443537": 2, "n02012849": 2}


def make_imagenet(root: Path, names: str | None = "n01440764 tench, Tinca tinca\nn01443537 goldfish\n") -> Path:
    rng = np.random.default_rng(1)
    for folder, count in IMAGENET.items():
        (root / folder).mkdir(parents=True)
        for k in range(count):
            pixels = rng.integers(0, 255, size=(40, 50, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / folder / f"ILSVRC2012_val_{folder}_{k}.JPEG", format="JPEG")
    (root / "n02012849" / "empty.JPEG").write_bytes(b"")
    if names:
        (root / "classnames.txt").write_text(names)
    return root


def write_video_with_audio(path, seconds=1.0, sound=True):
    """A tiny mp4 (64x48, 8 fps) with a mono AAC sine track (or none)."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=8)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        if sound:
            audio = container.add_stream("aac", rate=16000)
            audio.layout = "mono"
        for i in range(int(8 * seconds)):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 25 * i, np.uint8), format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if not sound:
            return path
        n = int(16000 * seconds)
        signal = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000)).astype(np.float32)
        for start in range(0, n, 1024):
            sound_frame = av.AudioFrame.from_ndarray(signal[None, start : start + 1024], format="fltp", layout="mono")
            sound_frame.sample_rate, sound_frame.pts = 16000, start
            for packet in audio.encode(sound_frame):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
    return path
