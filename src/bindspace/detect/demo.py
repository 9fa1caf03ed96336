"""`bindspace demo detect`: the paper's audio-queried detection, in the digits world, offline.

A detector is trained on scenes of handwritten digits with TEXT classes only ("the digit
seven", ...; the bindspace demo model frozen). Then the same detector is asked for keypad
TONES instead: each class is the combined embedding of a few tones, which the detector never
saw. Because the demo model bound audio to images, the tones land where the digits' texts
are, and the boxes follow. Reported: box recall at IoU >= 0.5 with text classes and with tone
classes, and a contact sheet of tone-queried boxes.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..modality import Modality
from ..train.digits_world import DemoRun
from .config import DetectorConfig
from .detector import Detection, Detector, SpaceInfo, normalized, save_detector
from .evaluate import recall_precision
from .network import RegionNetwork
from .objective import SceneTargets
from .scenes import Scene, SceneSpec, draw_scene
from .training import FitSettings, fit_detector


@dataclass
class DetectDemoSettings(DemoRun):
    """Knobs of the demo (defaults: about 2.5 CPU minutes for the detector after the demo model's one)."""

    steps: int = 250
    batch_size: int = 32
    lr: float = 2e-3
    test_scenes: int = 200
    tones_per_class: int = 8
    threshold: float = 0.3
    distill: bool = True
    threads: int = 2


@dataclass
class DetectDemoResult:
    """Box recall (IoU >= 0.5, the right class, score >= threshold) per class source, and where things went."""

    text_recall: float
    tone_recall: float
    text_precision: float
    tone_precision: float
    objects: int
    seconds: float
    cpu_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stage_cpu_seconds: dict[str, float] = field(default_factory=dict)
    out: Path | None = None

    @property
    def ratio(self) -> float:
        """Tone-queried recall relative to text-queried recall."""
        return self.tone_recall / self.text_recall if self.text_recall > 0 else 0.0

    def report(self) -> str:
        """Human-readable summary."""
        lines = [
            f"text-queried  (classes as trained):  recall {self.text_recall:6.1%}  precision "
            f"{self.text_precision:6.1%}",
            f"tone-queried  (never seen in training): recall {self.tone_recall:6.1%}  precision "
            f"{self.tone_precision:6.1%}",
            f"tone recall / text recall: {self.ratio:.2f}  ({self.objects} digits in held-out scenes, IoU >= 0.5)",
            f"time: {self.seconds:.1f} s wall, {self.cpu_seconds:.1f} s CPU ("
            + ", ".join(f"{k} {v:.1f} s wall / {self.stage_cpu_seconds.get(k, 0.0):.1f} s CPU"
                        for k, v in self.stage_seconds.items()) + ")",
        ]
        if self.out is not None:
            lines.append(f"output: {self.out} (detector/, model/, examples/, contact_sheet.png, report.json)")
        return "\n".join(lines)


def run_detect_demo(out: str | Path | None = None, settings: DetectDemoSettings | None = None,
                    checkpoint: str | Path | None = None, log: Callable[[str], None] = print) -> DetectDemoResult:
    """Train (or load) the demo model, train the detector with text classes, evaluate with text and tones."""
    from ..train.digits_world import torch_threads

    s = settings or DetectDemoSettings()
    with torch_threads(s.threads), contextlib.ExitStack() as stack:
        if out is None and checkpoint is None:  # the demo model still needs a folder to live in meanwhile
            checkpoint_home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bindspace-detect-")))
            return _run(None, s, None, log, checkpoint_home / "model")
        return _run(Path(out) if out is not None else None, s, checkpoint, log,
                    Path(out) / "model" if out is not None else None)


def _run(out: Path | None, s: DetectDemoSettings, checkpoint: str | Path | None,
         log: Callable[[str], None], model_dir: Path | None) -> DetectDemoResult:
    from ..model.factory import create_model
    from ..train.demo import DemoSettings, run_demo
    from ..train.digits_world import digit_images, load_digits, tokenized_prompts

    clock = StageClock()
    clock.start("model")
    if checkpoint is None:
        log("the demo model: image, text and audio towers (bindspace demo)")
        demo = run_demo(model_dir, DemoSettings(**s.run_options()), log=log)
        checkpoint = demo.model_dir
    assert checkpoint is not None  # run_demo saved the model to model_dir
    model = create_model(checkpoint=checkpoint, modalities=[Modality.VISION, Modality.TEXT, Modality.AUDIO])

    clock.start("detector")
    ink, labels = load_digits()
    order = np.random.default_rng(s.seed).permutation(len(labels))
    test_pool, train_pool = order[:400], order[400:]
    with torch.no_grad():
        text_classes = _text_classes(model, tokenized_prompts())
        pixels, _ = digit_images(model.config.towers[Modality.VISION].input_size[-1])
        image_views = model.encode(Modality.VISION, pixels) if s.distill else None  # (N, D) ViLD targets
    spec = SceneSpec()
    config = DetectorConfig(embed_dim=model.config.embed_dim, image_size=spec.canvas)
    torch.manual_seed(s.seed)
    network = RegionNetwork(config)

    def batch(step: int) -> tuple[torch.Tensor, list[SceneTargets]]:
        rng = np.random.default_rng([s.seed, 1, step])
        scenes = [draw_scene(ink, labels, train_pool, rng, spec) for _ in range(s.batch_size)]
        return scene_pixels(scenes), [scene_targets(sc, spec.canvas, image_views) for sc in scenes]

    log(f"training the detector with TEXT classes only ({s.steps} steps of {s.batch_size} scenes)")
    history = fit_detector(network, batch, text_classes, FitSettings(steps=s.steps, lr=s.lr, log_every=100),
                           log if s.progress else (lambda _m: None))

    clock.start("evaluation")
    space = SpaceInfo(config.embed_dim, os.path.abspath(checkpoint))
    detector = Detector(network, space)
    tone_classes, tone_waves = _tone_classes(model, s)
    rng = np.random.default_rng([s.seed, 2])
    test = [draw_scene(ink, labels, test_pool, rng, spec) for _ in range(s.test_scenes)]
    names = [f"digit {d}" for d in range(10)]
    found_text = detector.detect([sc.image for sc in test], text_classes, names, threshold=s.threshold)
    found_tone = detector.detect([sc.image for sc in test], tone_classes, names, threshold=s.threshold)
    text_recall, text_precision = recall_precision(test, found_text)
    tone_recall, tone_precision = recall_precision(test, found_tone)
    result = DetectDemoResult(text_recall, tone_recall, text_precision, tone_precision,
                              sum(len(sc.labels) for sc in test), 0.0, 0.0, clock.wall, clock.cpu, out)
    if out is not None:
        clock.start("saving")
        _save(out, detector, result, s, test, found_tone, tone_waves, history)
    clock.stop()
    result.seconds, result.cpu_seconds = clock.total()
    if out is not None:
        (out / "report.json").write_text(json.dumps(_report_dict(result, s), indent=1) + "\n")
    return result


class StageClock:
    """Wall and CPU seconds (all of this process's threads) per named stage, one stage at a time."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._started = (time.perf_counter(), time.process_time())
        self._current: tuple[str, float, float] | None = None

    def start(self, name: str) -> None:
        """End the running stage (if any) and start `name`."""
        self.stop()
        self._current = (name, time.perf_counter(), time.process_time())

    def stop(self) -> None:
        """End the running stage."""
        if self._current is not None:
            name, wall, cpu = self._current
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu
            self._current = None

    def total(self) -> tuple[float, float]:
        """(wall, CPU) seconds since the clock was made."""
        return time.perf_counter() - self._started[0], time.process_time() - self._started[1]


def scene_pixels(scenes: list[Scene]) -> torch.Tensor:
    """Normalised pixels (B, 3, S, S) of scenes, as `Detector.prepare` makes them from the same pictures."""
    return normalized(np.stack([sc.image for sc in scenes]))  # (B, S, S, 3) uint8 -> (B, 3, S, S)


def scene_targets(scene: Scene, canvas: int, image_views: torch.Tensor | None) -> SceneTargets:
    """A scene's ground truth as fractions of the side (+ each digit's image embedding to distil)."""
    distill = image_views[torch.from_numpy(scene.sources)] if image_views is not None else None
    return SceneTargets(torch.from_numpy(scene.boxes) / canvas, torch.from_numpy(scene.labels), distill)


def _text_classes(model: Any, prompts: torch.Tensor) -> torch.Tensor:
    """(10, D): each digit's prompts embedded and averaged (the templates of the demo)."""
    emb = model.encode(Modality.TEXT, prompts.flatten(0, 1)).view(prompts.shape[0], prompts.shape[1], -1)
    return F.normalize(emb.mean(dim=1), dim=-1)


def _tone_classes(model: Any, s: DetectDemoSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """(10, D) class embeddings from fresh keypad tones (a few per digit, combined) and one waveform per digit."""
    from ..train.digits_world import audio_features, dtmf_waveforms

    digits = torch.arange(10).repeat_interleave(s.tones_per_class)
    gen = torch.Generator().manual_seed(10_000 + s.seed)
    waves = dtmf_waveforms(digits, gen)  # (10*K, T)
    with torch.no_grad():
        emb = model.encode(Modality.AUDIO, audio_features(waves))  # (10*K, D)
    classes = F.normalize(F.normalize(emb, dim=-1).view(10, s.tones_per_class, -1).mean(dim=1), dim=-1)
    return classes, waves[:: s.tones_per_class]


def _save(out: Path, detector: Detector, result: DetectDemoResult, s: DetectDemoSettings, test: list[Scene],
          found_tone: list[list[Detection]], tone_waves: torch.Tensor, history: list[dict[str, float]]) -> None:
    import soundfile as sf
    from PIL import Image

    from ..train.digits_world import SAMPLE_RATE
    from .draw import draw_detections

    detector.space.checkpoint = "../model" if (out / "model").is_dir() else detector.space.checkpoint
    save_detector(detector, out / "detector", training={"demo": asdict(s), "history": history,
                                                         "text_recall": result.text_recall,
                                                         "tone_recall": result.tone_recall})
    examples = out / "examples"
    examples.mkdir(exist_ok=True)
    for i, (scene, found) in enumerate(zip(test[:4], found_tone[:4])):
        Image.fromarray(scene.image).save(examples / f"scene_{i}.png")
        # found_by_tone: the digits a tone query found in this scene (the "try it" line picks one of them)
        (examples / f"scene_{i}.json").write_text(json.dumps(
            {"boxes": scene.boxes.tolist(), "labels": scene.labels.tolist(),
             "found_by_tone": sorted({d.class_index for d in found} & set(scene.labels.tolist()))}) + "\n")
    for d in range(10):
        sf.write(examples / f"tone_{d}.wav", tone_waves[d].numpy(), SAMPLE_RATE, subtype="FLOAT")
    tiles = [draw_detections(Image.fromarray(scene.image), dets) for scene, dets in zip(test[:8], found_tone[:8])]
    side, gap = tiles[0].width, 6
    rows = (len(tiles) + 3) // 4
    sheet = Image.new("RGB", (side * 4 + gap * 5, side * rows + gap * (rows + 1)), "#888888")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, (gap + (i % 4) * (side + gap), gap + (i // 4) * (side + gap)))
    sheet.save(out / "contact_sheet.png")


def _report_dict(result: DetectDemoResult, s: DetectDemoSettings) -> dict[str, Any]:
    return {"text_recall": result.text_recall, "tone_recall": result.tone_recall, "ratio": result.ratio,
            "text_precision": result.text_precision, "tone_precision": result.tone_precision,
            "objects": result.objects, "iou": 0.5, "threshold": s.threshold, "seconds": result.seconds,
            "cpu_seconds": result.cpu_seconds, "threads": s.threads, "stage_seconds": result.stage_seconds,
            "stage_cpu_seconds": result.stage_cpu_seconds}
