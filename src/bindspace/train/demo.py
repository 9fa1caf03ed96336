"""`bindspace demo`: watch emergent zero-shot happen on a laptop, with data that needs no download.

The world: scikit-learn's bundled handwritten digits (8x8 images), telephone keypad (DTMF)
tones for the same digits, and short texts ("the digit seven", "a handwritten 7", ...).

Stage 1 trains small image and text towers together, CLIP-style, on image <-> text pairs.
Stage 2 freezes both and trains an audio tower on image <-> audio pairs only: the tone of
a 7 is paired with a picture of a 7, never with any text. Yet afterwards a tone is
matched to the right text most of the time: binding audio to images put it in the
shared space the text already lives in. That is ImageBind's central idea, in minutes.

Both stages run through the real training code (Trainer, InfoNCE, AdamW + warmup/cosine,
checkpoints), and the inputs go through the real preprocessing (the image loader, the
Kaldi filterbank of the audio loader, the CLIP tokenizer), so the saved model directory
classifies your own PNG and WAV files with `bindspace classify --checkpoint DIR`.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig, TowerConfig
from ..modality import Modality
from ..model.contract import EmbeddingModel
from ..model.imagebind import ImageBindModel
from .augment import sample_generator
from .build import BindModel
from .config import OptimConfig, RunConfig
from .data import PairBatch
from .digits_world import (
    SAMPLE_RATE,
    TEMPLATES,
    WORDS,
    DemoRun,
    digit_images,
    dtmf_waveforms,
    generator,
    jitter_images,
    load_digits,
    render_digit,
    tokenized_prompts,
    tone_features,
    torch_threads,
)
from .loop import METRICS_FILE, Trainer

CHANCE = 0.1


def demo_config() -> ModelConfig:
    """The small three-tower model (standard audio geometry: 128 mel bins x 204 frames at 16 kHz)."""
    return ModelConfig("bindspace_demo", 64, {
        Modality.VISION: TowerConfig(64, 2, 4, (16, 16), (2, 8, 8), in_channels=3, pre_norm=True),
        Modality.TEXT: TowerConfig(64, 2, 4, (77,), (1,), vocab_size=49408, logit_scale=1 / 0.07,
                                   learnable_logit_scale=True),
        # Full-height patches: a keypad tone is two steady spectral lines, best seen a column at a time.
        Modality.AUDIO: TowerConfig(64, 2, 4, (128, 204), (128, 24), add_bias_kv=True, logit_scale=20.0),
    })


@dataclass
class DemoSettings(DemoRun):
    """Knobs of the demo (defaults reach >= 80 % emergent accuracy in well under 5 CPU minutes)."""

    stage1_steps: int = 400
    stage2_steps: int = 250
    batch_size: int = 128
    lr: float = 3e-3
    train_tones: int = 1000
    test_tones: int = 500


@dataclass
class DemoResult:
    """Accuracies on held-out data (chance is 10 %), timing and where the model went."""

    audio_to_text: float
    image_to_text: float
    audio_to_image: float
    seconds: float
    cpu_seconds: float
    model_dir: Path | None = None
    saved_check: float | None = None  # accuracy of the saved model on the example WAV files
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def report(self) -> str:
        """Human-readable summary."""
        lines = [
            f"image -> text zero-shot accuracy (stage 1, held-out digits): {self.image_to_text:6.1%}",
            f"audio -> image (class of the nearest held-out digit image): {self.audio_to_image:6.1%}",
            f"audio -> text EMERGENT accuracy (audio never paired with text): {self.audio_to_text:6.1%}"
            f"   (chance {CHANCE:.0%})",
            f"time: {self.seconds:.1f} s wall, {self.cpu_seconds:.1f} s CPU "
            f"({', '.join(f'{k} {v:.1f} s' for k, v in self.stage_seconds.items())})",
        ]
        if self.model_dir is not None:
            lines.append(f"model directory: {self.model_dir}")
            if self.saved_check is not None:
                lines.append("saved model, example WAVs through the standard audio loader: "
                             f"{self.saved_check:.0%} correct")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- the data


class BatchMaker:
    """A PairSource whose batch (epoch, i) is made by a function of a generator seeded with (seed, epoch, i)."""

    def __init__(self, make: Callable[[torch.Generator], PairBatch], batches_per_epoch: int, seed: int) -> None:
        self.make, self.batches_per_epoch, self.seed = make, batches_per_epoch, seed

    def batches(self, epoch: int, start: int) -> Iterator[PairBatch]:
        """Batches `start`.. of `epoch`."""
        for index in range(start, self.batches_per_epoch):
            yield self.make(sample_generator(self.seed, epoch, index))


# ----------------------------------------------------------------------------- the run


def run_demo(out: str | Path | None = None, settings: DemoSettings | None = None,
             log: Callable[[str], None] = print) -> DemoResult:
    """Build the world, run both stages, evaluate, and save a model directory to `out` if given."""
    s = settings or DemoSettings()
    with torch_threads(s.threads):
        return _run(out, s, log)


def _run(out: str | Path | None, s: DemoSettings, log: Callable[[str], None]) -> DemoResult:
    wall, cpu = time.perf_counter(), time.process_time()
    stage_seconds: dict[str, float] = {}
    torch.manual_seed(s.seed)
    config = demo_config()
    model = ImageBindModel(config)
    model.init_weights()

    tick = time.perf_counter()
    images, labels = digit_images(config.towers[Modality.VISION].input_size[-1])
    split = torch.randperm(len(labels), generator=generator(s.seed, 1))
    test_ids, train_ids = split[:400], split[400:]
    by_class = [train_ids[labels[train_ids] == d] for d in range(10)]
    prompts = tokenized_prompts()
    tone_labels = torch.randint(0, 10, (s.train_tones,), generator=generator(s.seed, 2))
    test_tone_labels = torch.randint(0, 10, (s.test_tones,), generator=generator(s.seed, 3))
    tones = tone_features(tone_labels, generator(s.seed, 4))
    test_tones = tone_features(test_tone_labels, generator(s.seed, 5))
    stage_seconds["data"] = time.perf_counter() - tick
    log(f"data: {len(train_ids)} training / {len(test_ids)} test digit images, {s.train_tones} training / "
        f"{s.test_tones} test keypad tones, {prompts.shape[0] * prompts.shape[1]} texts "
        f"({stage_seconds['data']:.1f} s)")

    scratch = tempfile.TemporaryDirectory(prefix="bindspace-demo-")  # the stages' checkpoints; metrics are kept
    workdir = Path(scratch.name)
    B = s.batch_size

    # Stage 1: image <-> text, both towers trained, CLIP-style (the text tower's logit scale learns).
    def stage1_batch(gen: torch.Generator) -> PairBatch:
        pick = train_ids[torch.randint(0, len(train_ids), (B,), generator=gen)]
        y = labels[pick]
        texts = prompts[y, torch.randint(0, len(TEMPLATES), (B,), generator=gen)]  # (B, 77)
        return PairBatch(anchor=texts, target=jitter_images(images[pick], gen))

    _freeze(model, Modality.AUDIO)
    bind1 = BindModel(model, Modality.TEXT, Modality.VISION, train_anchor=True)
    # The token table (49408 x 64: 3 M numbers for the ~40 distinct tokens of the prompts) keeps
    # its random init: AdamW over it would take most of stage 1's time and gain nothing.
    token_table = cast(nn.Embedding, model.modality_preprocessors[Modality.TEXT].token_embedding)
    token_table.weight.requires_grad_(False)
    log("stage 1: training image and text towers together on image <-> text pairs")
    tick = time.perf_counter()
    _fit(bind1, BatchMaker(stage1_batch, 10**9, s.seed), s.stage1_steps, s, workdir / "stage1")
    stage_seconds["stage 1"] = time.perf_counter() - tick

    model.eval()
    with torch.no_grad():
        classes = _class_embeddings(model, prompts)
        test_images = model.encode(Modality.VISION, images[test_ids])
    image_to_text = _accuracy(test_images @ classes.T, labels[test_ids])
    log(f"stage 1 done: image -> text accuracy on held-out digits {image_to_text:.1%}")

    # Stage 2: image <-> audio only; image (and text) towers frozen.
    def stage2_batch(gen: torch.Generator) -> PairBatch:
        pick = torch.randint(0, len(tone_labels), (B,), generator=gen)
        y = tone_labels[pick]
        partner = torch.stack([by_class[int(d)][int(torch.randint(0, len(by_class[int(d)]), (), generator=gen))]
                               for d in y])  # a random training image of the same digit
        return PairBatch(anchor=jitter_images(images[partner], gen), target=_time_mask(tones[pick], gen))

    for modality in model.modalities:
        _freeze(model, modality, frozen=modality != Modality.AUDIO)
    bind2 = BindModel(model, Modality.VISION, Modality.AUDIO)
    log("stage 2: binding an audio tower to the frozen image tower with image <-> audio pairs only")
    tick = time.perf_counter()
    _fit(bind2, BatchMaker(stage2_batch, 10**9, s.seed + 1), s.stage2_steps, s, workdir / "stage2")
    stage_seconds["stage 2"] = time.perf_counter() - tick

    model.eval()
    with torch.no_grad():
        test_audio = model.encode(Modality.AUDIO, test_tones)
    audio_to_text = _accuracy(test_audio @ classes.T, test_tone_labels)
    nearest = (test_audio @ test_images.T).argmax(dim=1)
    audio_to_image = float((labels[test_ids][nearest] == test_tone_labels).float().mean())

    result = DemoResult(audio_to_text, image_to_text, audio_to_image, 0.0, 0.0, stage_seconds=stage_seconds)
    if out is not None:
        result.model_dir, result.saved_check = _save(model, Path(out), s, result)
        for stage in ("stage1", "stage2"):
            shutil.copyfile(workdir / stage / METRICS_FILE, Path(out) / f"{stage}_{METRICS_FILE}")
    scratch.cleanup()
    result.seconds = time.perf_counter() - wall
    result.cpu_seconds = time.process_time() - cpu
    return result


def _freeze(model: ImageBindModel, modality: Modality, frozen: bool = True) -> None:
    for group in (model.modality_preprocessors, model.modality_trunks, model.modality_heads,
                  model.modality_postprocessors):
        for param in group[modality].parameters():
            param.requires_grad_(not frozen)


def _time_mask(features: torch.Tensor, gen: torch.Generator, longest: int = 24) -> torch.Tensor:
    """Zero one random run of frames per item (B, 1, 128, T)."""
    batch, frames = features.shape[0], features.shape[-1]
    width = torch.randint(0, longest + 1, (batch, 1), generator=gen)
    start = (torch.rand(batch, 1, generator=gen) * (frames - width)).long()
    cols = torch.arange(frames)[None]  # (1, T)
    keep = ~((cols >= start) & (cols < start + width))  # (B, T)
    return features * keep[:, None, None, :]


def _fit(bind: BindModel, source: BatchMaker, steps: int, s: DemoSettings, out_dir: Path) -> None:
    run = RunConfig(out_dir=str(out_dir), steps=steps, batch_size=s.batch_size, log_every=25, save_every=0,
                    keep_checkpoints=1, seed=s.seed, device="cpu", resume="never", tensorboard=False,
                    progress=s.progress)
    optim = OptimConfig(lr=s.lr, weight_decay=0.05, betas=(0.9, 0.98), warmup_steps=max(steps // 10, 1),
                        min_lr=0.0, grad_clip=1.0)
    Trainer(bind, source, run=run, optim=optim).fit()


def _class_embeddings(model: EmbeddingModel, prompts: torch.Tensor) -> torch.Tensor:
    """One unit vector per digit: the mean of its prompts' embeddings (10, D)."""
    emb = model.encode(Modality.TEXT, prompts.flatten(0, 1)).view(prompts.shape[0], prompts.shape[1], -1)
    return F.normalize(emb.mean(dim=1), dim=-1)


def _accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    return float((scores.argmax(dim=1) == labels).float().mean())


def _save(model: ImageBindModel, out: Path, s: DemoSettings, result: DemoResult) -> tuple[Path, float]:
    """Model directory + example PNG/WAV files; then reload it and classify the WAVs via the standard loader."""
    import soundfile as sf
    from PIL import Image

    from ..model.checkpoint import save_model_dir
    from ..model.factory import create_model
    from ..preprocess.audio import load_audio

    extra = {"demo": {"seed": s.seed, "stage1_steps": s.stage1_steps, "stage2_steps": s.stage2_steps,
                      "audio_to_text": result.audio_to_text, "image_to_text": result.image_to_text},
             "labels": list(WORDS), "templates": list(TEMPLATES)}
    save_model_dir(model.state_dict(), model.config, out, extra=extra)
    examples = out / "examples"
    examples.mkdir(exist_ok=True)
    images, labels = load_digits()
    gen = generator(s.seed, 6)
    digits = torch.arange(10)
    waves = dtmf_waveforms(digits, gen)
    for d in range(10):
        index = int(np.flatnonzero(labels == d)[-1])
        Image.fromarray(render_digit(images[index])).save(examples / f"digit_{d}.png")
        sf.write(examples / f"tone_{d}.wav", waves[d].numpy(), SAMPLE_RATE, subtype="FLOAT")
    (examples / "labels.txt").write_text("\n".join(WORDS) + "\n")

    loaded = create_model(checkpoint=out, modalities=[Modality.TEXT, Modality.AUDIO])
    with torch.no_grad():
        classes = _class_embeddings(loaded, tokenized_prompts())
        wavs = torch.stack([load_audio(str(examples / f"tone_{d}.wav")) for d in range(10)])  # (10, 3, 1, 128, 204)
        emb = loaded.encode(Modality.AUDIO, wavs)
    return out, _accuracy(emb @ classes.T, digits)
