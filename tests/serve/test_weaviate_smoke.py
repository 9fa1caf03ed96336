"""The Weaviate multi2vec-bind container's own smoke tests, replayed against our server.

The container's smoke test is a `unittest` using the `requests` package against the server:
its setUp polls `GET /.well-known/ready` until 204 (100 tries, 1 s apart); then it checks the
probes and `/meta`, and posts `requests.post(url + "/vectorize", json=body)` bodies of growing
mixes (texts, JPEG/PNG images, WAV audio, an mp4 video, RGB JPEGs as depth and thermal, and
IMU CSVs sent as *file paths relative to the server's working directory*), asserting the
number of vectors per field, an empty list for a field sent empty, and the exact same video
vector from two requests of different content. It needs the original model's asset files,
so it cannot run verbatim here: this module replays the same sequence, with the same client
library and the same kinds of media, made here (a JPEG with an EXIF/GIMP header, an RGBA PNG,
WAVs of several rates, an H.264 mp4, CSVs with a header row and 1500 to 6000 rows).

It runs against uvicorn in this process with a 32-px, 16-d model (quick), and against a real
`bindspace serve` process with the 224-px tiny preset (slow), both started from a folder
holding `test/IMUSamples/` and allowing it with `--weaviate-paths`.
"""
from __future__ import annotations

import base64
import glob
import io
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import numpy as np
import pytest
import requests
import soundfile as sf
from PIL import Image
from serve_helpers import live_server

from testkit import spawned_serve

ANSWERS = ("textVectors", "imageVectors", "audioVectors", "videoVectors", "imuVectors", "thermalVectors",
           "depthVectors")
TEXTS = ["A dog.", "A car", "A bird"]
IMU_DIR = "test/IMUSamples"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---------------------------------------------------------------- media made here


def picture(seed: int, width: int, height: int) -> Image.Image:
    """A smooth RGB picture with some noise (each seed its own)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([np.sin(x / rng.uniform(5, 40) + seed), np.cos(y / rng.uniform(5, 40)),
                     np.sin((x + y) / rng.uniform(5, 40))], axis=-1)
    pixels = (base * 100 + 128 + rng.normal(0, 12, base.shape)).clip(0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def jpeg(seed: int, width: int = 320, height: int = 240, gimp: bool = False) -> bytes:
    buffer = io.BytesIO()
    options: dict = {"quality": 90}
    if gimp:  # what an image exported from GIMP carries: EXIF (software, orientation, resolution) and a comment
        exif = Image.Exif()
        exif[0x0131] = "GIMP 2.10.36"  # Software
        exif[0x0112] = 1  # Orientation: top-left
        exif[0x011A], exif[0x011B], exif[0x0128] = 72.0, 72.0, 2  # X/Y resolution, unit inch
        options.update(exif=exif.tobytes(), comment=b"Created with GIMP", dpi=(72, 72))
    picture(seed, width, height).save(buffer, "JPEG", **options)
    return buffer.getvalue()


def png_rgba(seed: int) -> bytes:
    img = picture(seed, 200, 300).convert("RGBA")
    img.putalpha(Image.linear_gradient("L").resize(img.size))
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


def wav(seed: int, seconds: float, rate: int, channels: int) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) + 0.05 * rng.normal(size=t.size)
    samples = np.stack([tone * (c + 1) / channels for c in range(channels)], axis=1)  # (N, channels)
    buffer = io.BytesIO()
    sf.write(buffer, samples.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def mp4(seed: int, frames: int = 24, fps: int = 12) -> bytes:
    """A 2-second mp4 of moving pictures (H.264 where PyAV can write it), written with PyAV."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        codec = "h264" if "libx264" in av.codecs_available else "mpeg4"  # PyAV builds without x264 exist
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_image(picture(seed + i, 96, 64))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def imu_csv(seed: int, rows: int) -> str:
    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.normal(0, 2, (rows, 3)), rng.normal(0, 0.5, (rows, 3))], axis=1)  # (T, 6)
    lines = ["accl_x,accl_y,accl_z,gyro_x,gyro_y,gyro_z"] + [",".join(f"{v:.6f}" for v in row) for row in values]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory) -> Path:
    """The server's working directory: test/IMUSamples/*.csv, as the container's smoke test expects."""
    root = tmp_path_factory.mktemp("weaviate_smoke")
    (root / IMU_DIR).mkdir(parents=True)
    for seed, rows in enumerate((1500, 3000, 6000)):
        (root / IMU_DIR / f"imu_{seed}.csv").write_text(imu_csv(seed, rows))
    return root


@pytest.fixture(scope="module")
def media() -> dict[str, list[str]]:
    """The base64 media of the smoke test's requests."""
    return {
        "images": [b64(jpeg(seed)) for seed in (1, 2, 3)],
        "gimp_image": [b64(jpeg(4, 640, 480, gimp=True))],
        "png_image": [b64(png_rgba(5))],
        "audio": [b64(wav(6, 1.0, 16000, 1)), b64(wav(7, 2.5, 44100, 2)), b64(wav(8, 4.0, 22050, 1))],
        "video": [b64(mp4(9))],
        "depth": [b64(jpeg(20 + i, 256, 192)) for i in range(6)],  # RGB JPEGs, as the container's samples
        "thermal": [b64(jpeg(30 + i, 192, 256)) for i in range(6)],
    }


# ---------------------------------------------------------------- servers


@contextmanager
def cli_server(model_dir: Path, cwd: Path) -> Iterator[str]:
    """`bindspace serve --weaviate-paths test/IMUSamples` as a process started in `cwd`; yields the base URL."""
    with spawned_serve(["--checkpoint", str(model_dir), "--threads", "1", "--log-level", "warning",
                        "--weaviate-paths", IMU_DIR], cwd=cwd, ready_s=None) as server:
        yield server.base  # the smoke test polls /.well-known/ready itself
    assert server.returncode == 0 and "Traceback" not in server.output, server.output[-3000:]


@pytest.fixture(scope="module", params=["small-uvicorn", pytest.param("tiny-cli", marks=pytest.mark.slow)])
def url(request, smoke_dir) -> Iterator[str]:
    """The base URL of a server whose working directory is `smoke_dir` (the test's too: the paths are relative)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(smoke_dir)
        if request.param == "small-uvicorn":
            from bindspace.serve import create_app
            from bindspace.serve.weaviate import PATHS_OPTION

            app = create_app(request.getfixturevalue("small_model"),
                             extras={PATHS_OPTION: [os.path.realpath(IMU_DIR)]})
            with live_server(app) as base:
                yield base
        else:
            with cli_server(request.getfixturevalue("tiny_model_dir"), smoke_dir) as base:
                yield base


# ---------------------------------------------------------------- the smoke test's sequence


def wait_ready(url: str) -> None:
    """The smoke test's setUp: poll /.well-known/ready until 204, up to 100 times, 1 s apart."""
    for _ in range(100):
        try:
            if requests.get(url + "/.well-known/ready").status_code == 204:
                return
        except requests.ConnectionError:
            pass
        time.sleep(1)
    pytest.fail("the server never became ready")


def vectorize(url: str, body: dict) -> dict:
    response = requests.post(url + "/vectorize", json=body)
    assert response.status_code == 200, response.text[:500]
    answer = response.json()
    # Every answer field is there, as a list, for every request (empty when that field was not asked for).
    assert all(isinstance(answer.get(field), list) for field in ANSWERS), sorted(answer)
    return answer


def counts(answer: dict) -> dict[str, int]:
    return {field: len(answer[field]) for field in ANSWERS if answer[field]}


def test_well_known_live_ready_and_meta(url):
    wait_ready(url)
    assert requests.get(url + "/.well-known/live").status_code == 204
    assert requests.get(url + "/.well-known/ready").status_code == 204
    response = requests.get(url + "/meta")
    assert response.status_code == 200 and isinstance(response.json(), dict)


def test_vectorize_texts_images_audio(url, media):
    wait_ready(url)
    answer = vectorize(url, {"texts": TEXTS, "images": media["images"], "audio": media["audio"]})
    assert counts(answer) == {"textVectors": 3, "imageVectors": 3, "audioVectors": 3}


def test_vectorize_images(url, media):
    wait_ready(url)
    answer = vectorize(url, {"texts": ["This is plane"], "images": media["gimp_image"]})
    assert counts(answer) == {"textVectors": 1, "imageVectors": 1}
    answer = vectorize(url, {"texts": TEXTS, "images": media["images"][:2]})
    assert counts(answer) == {"textVectors": 3, "imageVectors": 2}
    answer = vectorize(url, {"texts": [], "images": media["png_image"]})
    assert len(answer["textVectors"]) == 0 and len(answer["imageVectors"]) == 1


def test_vectorize_video(url, media):
    wait_ready(url)
    answer = vectorize(url, {"texts": TEXTS, "video": media["video"]})
    assert counts(answer) == {"textVectors": 3, "videoVectors": 1}
    video_vector = answer["videoVectors"]
    answer = vectorize(url, {"texts": TEXTS, "images": media["images"], "video": media["video"]})
    assert counts(answer) == {"textVectors": 3, "imageVectors": 3, "videoVectors": 1}
    assert answer["videoVectors"] == video_vector  # exact float equality, as the smoke test asserts


def test_vectorize_depth_and_thermal(url, media):
    wait_ready(url)
    answer = vectorize(url, {"depth": media["depth"], "thermal": media["thermal"]})
    assert counts(answer) == {"depthVectors": 6, "thermalVectors": 6}
    answer = vectorize(url, {"texts": TEXTS, "images": media["images"], "video": media["video"],
                             "depth": media["depth"], "thermal": media["thermal"]})
    assert counts(answer) == {"textVectors": 3, "imageVectors": 3, "videoVectors": 1, "depthVectors": 6,
                              "thermalVectors": 6}


def test_vectorize_imu_paths(url, media):
    wait_ready(url)
    imu_paths = glob.glob("test/IMUSamples/*.csv")  # relative to the server's working directory, as sent
    assert len(imu_paths) == 3
    answer = vectorize(url, {"imu": imu_paths})
    assert counts(answer) == {"imuVectors": 3}
    answer = vectorize(url, {"texts": TEXTS, "images": media["images"], "audio": media["audio"],
                             "video": media["video"], "depth": media["depth"], "thermal": media["thermal"],
                             "imu": imu_paths})
    assert counts(answer) == {"textVectors": 3, "imageVectors": 3, "audioVectors": 3, "videoVectors": 1,
                              "depthVectors": 6, "thermalVectors": 6, "imuVectors": 3}
    # The same file read by path or sent as base64 is the same input.
    sent = vectorize(url, {"imu": [b64(Path(imu_paths[0]).read_bytes())]})["imuVectors"]
    assert sent[0] == answer["imuVectors"][0]
