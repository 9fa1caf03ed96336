"""Synthetic media for the device benchmark: JPEG photos, WAV recordings and one long MP4, made once.

Few distinct files are generated and the rest are copies: decoding cost does not depend on
the content, and generating a thousand distinct photos would cost more than timing them.
"""
from __future__ import annotations

import shutil
from pathlib import Path


def make_media(folder: Path, *, images: int, wavs: int, wav_seconds: float, video_seconds: float,
               video_size: tuple[int, int]) -> dict[str, list[Path]]:
    """`images` JPEGs, `wavs` stereo 44.1 kHz WAVs and one MP4 (H.264 + AAC) in `folder`, made once."""
    import numpy as np
    import soundfile as sf
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    unique = 32
    image_files = []
    for i in range(images):
        path = folder / f"img_{i:05d}.jpg"
        if not path.exists():
            if i < unique:
                yy, xx = np.mgrid[0:375, 0:500]
                base = np.stack([(xx + 7 * i) % 256, (yy * 2 + 13 * i) % 256, (xx + yy + 31 * i) % 256], -1)
                noisy = (base + rng.normal(0, 12, base.shape)).clip(0, 255).astype(np.uint8)
                Image.fromarray(noisy).save(path, quality=90)
            else:
                shutil.copyfile(folder / f"img_{i % unique:05d}.jpg", path)
        image_files.append(path)
    wav_files = []
    rate = 44100
    for i in range(wavs):
        path = folder / f"snd_{i:04d}.wav"
        if not path.exists():
            if i < unique:
                t = np.arange(int(rate * wav_seconds)) / rate
                tone = 0.2 * np.sin(2 * np.pi * (220 + 40 * i) * t)[:, None] * np.ones((1, 2))
                sf.write(path, (tone + 0.01 * rng.standard_normal(tone.shape)).astype(np.float32), rate)
            else:
                shutil.copyfile(folder / f"snd_{i % unique:04d}.wav", path)
        wav_files.append(path)
    video = folder / f"long_{int(video_seconds)}s.mp4"
    if not video.exists():
        make_video(video, video_seconds, video_size)
    return {"images": image_files, "wavs": wav_files, "video": [video]}


def make_video(path: Path, seconds: float, size: tuple[int, int], fps: int = 24) -> None:
    """A synthetic H.264 + AAC MP4 (moving gradients, a tone), written with PyAV."""
    import av
    import numpy as np

    width, height = size
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as container:
        vstream = container.add_stream("libx264", rate=fps)
        vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
        vstream.options = {"preset": "ultrafast", "g": str(2 * fps)}
        vstream.thread_type = "AUTO"
        astream = container.add_stream("aac", rate=44100)
        yy, xx = np.mgrid[0:height, 0:width]
        frames = [np.stack([(xx + 4 * k) % 256, (yy + 3 * k) % 256, (xx + yy + 8 * k) % 256], -1).astype(np.uint8)
                  for k in range(2 * fps)]
        total = int(seconds * fps)
        for n in range(total):
            frame = av.VideoFrame.from_ndarray(frames[n % len(frames)], format="rgb24")
            for packet in vstream.encode(frame):
                container.mux(packet)
        for packet in vstream.encode():
            container.mux(packet)
        samples_per_frame = 1024
        t0 = 0
        tone = np.sin(2 * np.pi * 440 * np.arange(44100) / 44100).astype(np.float32) * 0.2
        while t0 < seconds * 44100:
            chunk = np.take(tone, np.arange(t0, t0 + samples_per_frame) % 44100)[None, :]  # (1, samples)
            sound = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
            sound.sample_rate = 44100
            sound.pts = t0
            for packet in astream.encode(sound):
                container.mux(packet)
            t0 += samples_per_frame
        for packet in astream.encode():
            container.mux(packet)
    tmp.rename(path)
