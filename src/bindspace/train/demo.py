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

import contextlib
import math
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
from ..errors import BindspaceError
from ..modality import Modality
from ..model.imagebind import ImageBindModel
from .augment import sample_generator
from .build import BindModel
from .config import OptimConfig, RunConfig
from .data import PairBatch
from .loop import METRICS_FILE, Trainer

SAMPLE_RATE = 16000
CLIP_SECONDS = 2.0
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEMPLATES = (
    "the digit {w}", "a handwritten {n}", "the number {w}", "a drawing of the digit {n}", "{w}",
    "a picture of a {w}", "the numeral {n}", "a scribbled {w}", "digit {n}", "an image of the number {w}",
)
# DTMF (ITU-T Q.23): each key is the sum of one low-group and one high-group sine.
DTMF_LOW = {1: 697, 2: 697, 3: 697, 4: 770, 5: 770, 6: 770, 7: 852, 8: 852, 9: 852, 0: 941}
DTMF_HIGH = {1: 1209, 2: 1336, 3: 1477, 4: 1209, 5: 1336, 6: 1477, 7: 1209, 8: 1336, 9: 1477, 0: 1336}
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
class DemoSettings:
    """Knobs of the demo (defaults reach >= 80 % emergent accuracy in well under 5 CPU minutes)."""

    stage1_steps: int = 400
    stage2_steps: int = 250
    batch_size: int = 128
    lr: float = 3e-3
    train_tones: int = 1000
    test_tones: int = 500
    seed: int = 0
    progress: bool = True
    # Matrices this small gain little from threads, and on a shared CPU extra threads mostly
    # wait for each other (2 threads measured 5x slower than 1 on a busy 2-core machine).
    threads: int = 1


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


def digit_images(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits through the standard image loader -> (N, 3, size, size) and labels (N,)."""
    from PIL import Image

    from ..preprocess.image import load_image

    images, labels = _load_digits()
    pixels = [load_image(Image.fromarray(render_digit(image)), f"digit {i}", size=size)
              for i, image in enumerate(images)]
    return torch.stack(pixels), torch.from_numpy(labels).long()


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise BindspaceError("the demo needs scikit-learn for its bundled digits: "
                             "pip install 'bindspace[train]'") from None
    digits = load_digits()
    return digits.images, digits.target


def render_digit(image: np.ndarray) -> np.ndarray:
    """An 8x8 digit (ink 0..16) as an 8x8 grey image of dark ink on white paper (uint8)."""
    return (255 - np.clip(image, 0, 16) * 255 / 16).round().astype(np.uint8)


def dtmf_waveforms(labels: torch.Tensor, gen: torch.Generator, seconds: float = CLIP_SECONDS) -> torch.Tensor:
    """Keypad tones (N, seconds*16k): random duration, onset, level, twist, detuning, phase and noise."""
    n, length = labels.shape[0], int(seconds * SAMPLE_RATE)

    def draw(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, 1, generator=gen, dtype=torch.float64)  # (N, 1)

    low = torch.tensor([DTMF_LOW[int(y)] for y in labels], dtype=torch.float64)[:, None]
    high = torch.tensor([DTMF_HIGH[int(y)] for y in labels], dtype=torch.float64)[:, None]
    duration = draw(0.2, 1.5)
    onset = draw(0.0, 1.0) * (seconds - duration)
    level = 10 ** (draw(-30, -3) / 20)  # dBFS
    twist = 10 ** (draw(-3, 3) / 20)  # high-group level relative to the low group
    snr = 10 ** (draw(0, 30) / 20)
    low = low * (1 + draw(-0.015, 0.015))  # DTMF receivers accept 1.5 % deviation
    high = high * (1 + draw(-0.015, 0.015))
    phase1, phase2 = draw(0, 2 * math.pi), draw(0, 2 * math.pi)
    noise_seed = int(torch.randint(0, 2**62, (), generator=gen))
    t = torch.arange(length, dtype=torch.float64) / SAMPLE_RATE  # (T,)
    out = torch.empty(n, length)
    for rows in torch.arange(n).split(256):  # chunks keep the float64 phase arrays small
        gate = (t >= onset[rows]) & (t < onset[rows] + duration[rows])  # (b, T)
        tone = (torch.sin(2 * math.pi * low[rows] * t + phase1[rows]).float()
                + twist[rows].float() * torch.sin(2 * math.pi * high[rows] * t + phase2[rows]).float())
        noise_gen = torch.Generator().manual_seed(noise_seed + int(rows[0]))
        noise = torch.randn(len(rows), length, generator=noise_gen) / snr[rows].float()
        out[rows] = level[rows].float() * (0.5 * tone * gate + noise)
    return out


def audio_features(waveforms: torch.Tensor, frames: int = 204) -> torch.Tensor:
    """(N, T) 16 kHz waveforms of <= 2 s -> (N, 1, 128, frames), exactly what `load_audio` gives each.

    For audio no longer than one clip the loader's three clips coincide, so one batched
    pass of the same filterbank and normalisation reproduces it (a test checks this).
    """
    from ..preprocess.audio import MEL_BINS, MEL_MEAN, MEL_STD
    from ..preprocess.fbank import fbank

    out = []
    for chunk in waveforms.split(64):  # bounds the filterbank's intermediates (~20 MB a chunk)
        chunk = chunk - chunk.mean(dim=1, keepdim=True)
        mel = fbank(chunk, SAMPLE_RATE, MEL_BINS).transpose(1, 2)  # (B, 128, F)
        have = mel.shape[2]
        mel = F.pad(mel, (0, frames - have)) if have < frames else mel[..., :frames]
        out.append(((mel - MEL_MEAN) / MEL_STD)[:, None])  # (B, 1, 128, frames)
    return torch.cat(out)


def tone_features(labels: torch.Tensor, gen: torch.Generator, chunk: int = 64) -> torch.Tensor:
    """Audio model inputs (N, 1, 128, 204) of fresh random tones, made a chunk at a time to bound memory."""
    return torch.cat([audio_features(dtmf_waveforms(part, gen)) for part in labels.split(chunk)])


def tokenized_prompts() -> torch.Tensor:
    """(10, templates, 77) token ids: every template for every digit."""
    from ..preprocess.tokenizer import tokenize

    texts = [t.format(w=WORDS[d], n=d) for d in range(10) for t in TEMPLATES]
    return tokenize(texts).view(10, len(TEMPLATES), -1)


def jitter_images(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Small random shifts and zooms of a batch (B, 3, H, W), as handwriting varies."""
    batch = images.shape[0]
    scale = 1 + (torch.rand(batch, generator=gen) * 2 - 1) * 0.1
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0] = scale
    theta[:, 1, 1] = scale
    theta[:, :, 2] = (torch.rand(batch, 2, generator=gen) * 2 - 1) * 0.15
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="border", align_corners=False)


class BatchMaker:
    """A PairSource whose batch (epoch, i) is made by a function of a generator seeded with (seed, epoch, i)."""

    def __init__(self, make: Callable[[torch.Generator], PairBatch], batches_per_epoch: int, seed: int) -> None:
        self.make, self.batches_per_epoch, self.seed = make, batches_per_epoch, seed

    def batches(self, epoch: int, start: int) -> Iterator[PairBatch]:
        """Batches `start`.. of `epoch`."""
        for index in range(start, self.batches_per_epoch):
            yield self.make(sample_generator(self.seed, epoch, index))


# ----------------------------------------------------------------------------- the run


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with `count` (at least 1) torch threads, restoring the previous number after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(count, 1))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


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
    split = torch.randperm(len(labels), generator=_gen(s.seed, 1))
    test_ids, train_ids = split[:400], split[400:]
    by_class = [train_ids[labels[train_ids] == d] for d in range(10)]
    prompts = tokenized_prompts()
    tone_labels = torch.randint(0, 10, (s.train_tones,), generator=_gen(s.seed, 2))
    test_tone_labels = torch.randint(0, 10, (s.test_tones,), generator=_gen(s.seed, 3))
    tones = tone_features(tone_labels, _gen(s.seed, 4))
    test_tones = tone_features(test_tone_labels, _gen(s.seed, 5))
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


def _gen(seed: int, stream: int) -> torch.Generator:
    return sample_generator(seed, 1_000_000 + stream)


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


def _class_embeddings(model: ImageBindModel, prompts: torch.Tensor) -> torch.Tensor:
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
    images, labels = _load_digits()
    gen = _gen(s.seed, 6)
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
