"""`bindspace demo generate`: emergent audio -> image generation in the digits world, offline.

The generator (a tiny diffusion model) learns to draw digits from IMAGE embeddings of the
demo's embedding space only. It then draws from the embeddings of keypad TONES, which it never
saw: they land near the images of the same digit because stage 2 of `bindspace demo` bound audio
to images. A separate classifier, trained on real digit images, reads the generated digits.
This is the ImageBind paper's audio -> image generation with an image-conditioned generator,
as in Stable unCLIP, in miniature.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..modality import Modality
from ..train.digits_world import DemoRun
from .tiny_diffusion import TinyDiffusion, TinyDiffusionConfig, save_generator, to_uint8

GENERATOR_DIR = "generator"
CONTACT_SHEET = "contact_sheet.png"
CLASSIFIER_FILE = "digit_classifier.safetensors"


@dataclass
class GenerateDemoSettings(DemoRun):
    """Knobs of the generation demo (defaults: >= 80 % of generated digits recognised, well under 5 min)."""

    steps: int = 1500
    batch_size: int = 256
    lr: float = 1e-3
    views: int = 4  # jittered views embedded per training image
    cond_noise: float = 0.5  # the largest embedding noise of the augmentation (norm of the added noise)
    sample_steps: int = 25
    guidance: float = 5.0
    test_tones: int = 200


@dataclass
class GenerateDemoResult:
    """What the classifier read in the generated digits, and where things went."""

    tone_accuracy: float  # generated from tone embeddings (never seen by the generator)
    image_accuracy: float  # generated from held-out digit image embeddings
    classifier_accuracy: float  # the classifier on held-out real digits
    seconds: float
    cpu_seconds: float
    generator_dir: Path | None = None
    contact_sheet: Path | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def report(self) -> str:
        """Human-readable summary."""
        lines = [
            f"digit classifier on held-out real digits: {self.classifier_accuracy:6.1%}",
            f"digits generated from held-out digit IMAGE embeddings, recognised: {self.image_accuracy:6.1%}",
            f"digits generated from keypad TONE embeddings (EMERGENT, generator never saw audio), "
            f"recognised: {self.tone_accuracy:6.1%}   (chance 10%)",
            f"time: {self.seconds:.1f} s wall, {self.cpu_seconds:.1f} s CPU "
            f"({', '.join(f'{k} {v:.1f} s' for k, v in self.stage_seconds.items())})",
        ]
        if self.generator_dir is not None:
            lines.append(f"generator: {self.generator_dir}")
        if self.contact_sheet is not None:
            lines.append(f"contact sheet (tone -> generated digit): {self.contact_sheet}")
        return "\n".join(lines)


def run_generate_demo(out: str | Path, settings: GenerateDemoSettings | None = None,
                      log: Callable[[str], None] = print) -> GenerateDemoResult:
    """Train the demo space if `out` has none, then the generator and the classifier; evaluate; save."""
    s = settings or GenerateDemoSettings()
    from ..train.digits_world import torch_threads

    with torch_threads(s.threads):
        return _run(Path(out), s, log)


def _run(out: Path, s: GenerateDemoSettings, log: Callable[[str], None]) -> GenerateDemoResult:
    from ..model.checkpoint import is_model_dir
    from ..model.factory import create_model
    from ..train.demo import DemoSettings, run_demo
    from ..train.digits_world import digit_images, jitter_images, load_digits, tone_features

    wall, cpu = time.perf_counter(), time.process_time()
    stages: dict[str, float] = {}
    if not is_model_dir(out):
        log(f"{out}: no demo model yet; training the embedding space first (bindspace demo)")
        tick = time.perf_counter()
        result = run_demo(out, DemoSettings(**s.run_options()), log=log)
        stages["embedding space"] = time.perf_counter() - tick
        log(f"embedding space ready: emergent audio -> text {result.audio_to_text:.1%}")
    torch.manual_seed(s.seed)
    model = create_model(checkpoint=out, modalities=[Modality.VISION, Modality.AUDIO]).eval()

    tick = time.perf_counter()
    pictures, labels = digit_images(model.config.towers[Modality.VISION].input_size[-1])
    raw, _ = load_digits()
    ink = torch.from_numpy(np.clip(raw, 0, 16) / 8.0 - 1.0).float().flatten(1)  # (N, 64) in [-1, 1]
    split = torch.randperm(len(labels), generator=_gen(s.seed, 1))
    test_ids, train_ids = split[:400], split[400:]
    with torch.no_grad():
        views = [pictures[train_ids]] + [jitter_images(pictures[train_ids], _gen(s.seed, 10 + v))
                                         for v in range(s.views - 1)]
        cond = torch.cat([model.encode(Modality.VISION, v) for v in views])  # (views * N, D)
        test_cond = model.encode(Modality.VISION, pictures[test_ids])
        tone_labels = torch.randint(0, 10, (s.test_tones,), generator=_gen(s.seed, 2))
        tones = model.encode(Modality.AUDIO, tone_features(tone_labels, _gen(s.seed, 3)))
    targets = ink[train_ids].repeat(s.views, 1)
    stages["embeddings"] = time.perf_counter() - tick
    log(f"data: {len(cond)} image embeddings of {len(train_ids)} training digits ({s.views} views each); "
        f"the generator sees no audio")

    tick = time.perf_counter()
    config = TinyDiffusionConfig(embed_dim=model.embed_dim)
    generator = _train_generator(config, cond, targets, s)
    stages["generator"] = time.perf_counter() - tick

    tick = time.perf_counter()
    classifier = _train_classifier(ink[train_ids], labels[train_ids], s.seed)
    with torch.no_grad():
        classifier_accuracy = _accuracy(classifier(ink[test_ids]), labels[test_ids])
        drawn_images = generator.sample(test_cond, steps=s.sample_steps, guidance=s.guidance,
                                        generator=_gen(s.seed, 4))
        drawn_tones = generator.sample(tones, steps=s.sample_steps, guidance=s.guidance, generator=_gen(s.seed, 5))
        image_accuracy = _accuracy(classifier(drawn_images.flatten(1)), labels[test_ids])
        tone_reads = classifier(drawn_tones.flatten(1)).argmax(dim=1)
        tone_accuracy = float((tone_reads == tone_labels).float().mean())
    stages["evaluation"] = time.perf_counter() - tick
    log(f"generated digits recognised: from image embeddings {image_accuracy:.1%}, "
        f"from tone embeddings {tone_accuracy:.1%}")

    folder = save_generator(generator, out / GENERATOR_DIR, extra={
        "checkpoint": "..",  # the embedding space it was trained on: the demo model directory above it
        "defaults": {"steps": s.sample_steps, "guidance": s.guidance},
        "demo": {"seed": s.seed, "steps": s.steps, "tone_accuracy": tone_accuracy, "image_accuracy": image_accuracy},
    })
    _save_classifier(classifier, out / CLASSIFIER_FILE)
    sheet = _contact_sheet(drawn_tones, tone_labels, tone_reads, config.ink, out / CONTACT_SHEET)
    return GenerateDemoResult(tone_accuracy, image_accuracy, classifier_accuracy,
                              time.perf_counter() - wall, time.process_time() - cpu,
                              folder, sheet, stages)


def _gen(seed: int, stream: int) -> torch.Generator:
    from ..train.augment import sample_generator

    return sample_generator(seed, 2_000_000 + stream)


def _noisy(cond: torch.Tensor, largest: float, gen: torch.Generator) -> torch.Tensor:
    """Unit embeddings plus isotropic noise of a random norm in [0, largest], renormalised."""
    noise = F.normalize(torch.randn(cond.shape, generator=gen), dim=1)
    size = torch.rand(cond.shape[0], 1, generator=gen) * largest
    return F.normalize(cond + size * noise, dim=1)


def _train_generator(config: TinyDiffusionConfig, cond: torch.Tensor, targets: torch.Tensor,
                     s: GenerateDemoSettings) -> TinyDiffusion:
    from tqdm import tqdm

    torch.manual_seed(s.seed)
    model = TinyDiffusion(config)
    optim = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=s.lr, total_steps=s.steps, pct_start=0.05)
    gen = _gen(s.seed, 6)
    bar = tqdm(range(s.steps), desc="generator", unit="step", disable=not s.progress, leave=False)
    for _ in bar:
        pick = torch.randint(0, len(cond), (s.batch_size,), generator=gen)
        loss = model.loss(targets[pick], _noisy(cond[pick], s.cond_noise, gen), gen)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return model.eval()


def digit_classifier() -> nn.Module:
    """A small MLP reading an 8x8 digit (64 values in [-1, 1]) -> 10 logits."""
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))


def _train_classifier(x: torch.Tensor, y: torch.Tensor, seed: int, steps: int = 600) -> nn.Module:
    torch.manual_seed(seed)
    model = digit_classifier()
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    gen = _gen(seed, 7)
    for _ in range(steps):
        pick = torch.randint(0, len(x), (256,), generator=gen)
        noisy = x[pick] + 0.1 * torch.randn(x[pick].shape, generator=gen)  # tolerate slightly off pixels
        loss = F.cross_entropy(model(noisy), y[pick])
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
    return model.eval()


def load_classifier(path: str | Path) -> nn.Module:
    """The demo's digit classifier saved next to the generator."""
    from safetensors.torch import load_file

    model = digit_classifier()
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def _save_classifier(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    from ..fsio import atomic_path

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(dim=1) == labels).float().mean())


def _contact_sheet(images: torch.Tensor, labels: torch.Tensor, reads: torch.Tensor, ink: str, path: Path,
                   per_digit: int = 8, cell: int = 48) -> Path:
    """A grid: one row per keypad tone 0-9, then digits drawn from different tones of that key.

    Under each drawing: what the separate digit classifier read (red when it is not the key's digit).
    """
    from PIL import Image, ImageDraw

    from ..fsio import atomic_path
    from ..train.digits_world import DTMF_HIGH, DTMF_LOW

    pixels = to_uint8(images, ink)[..., 0].numpy()  # (B, 8, 8)
    label_width, pad, caption, top_margin = 150, 6, 12, 24
    row = cell + caption + pad
    sheet = Image.new("RGB", (label_width + per_digit * (cell + pad), top_margin + 10 * row), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 4), "keypad tone -> digits drawn from its embedding (generator trained on images only); "
              "below: what a digit classifier reads", fill="black")
    for d in range(10):
        top = top_margin + d * row
        draw.text((4, top + cell // 2 - 6), f"tone {d} ({DTMF_LOW[d]}+{DTMF_HIGH[d]} Hz)", fill="black")
        for j, index in enumerate(np.flatnonzero(labels.numpy() == d)[:per_digit]):
            tile = Image.fromarray(pixels[index]).resize((cell, cell), Image.Resampling.NEAREST)
            left = label_width + j * (cell + pad)
            sheet.paste(tile.convert("RGB"), (left, top))
            read = int(reads[index])
            draw.text((left + cell // 2 - 3, top + cell), str(read), fill="black" if read == d else "red")
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path
