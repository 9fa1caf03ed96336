"""Image generators conditioned on an embedding, loaded from a local directory.

Two kinds of directory are understood:
- a diffusers Stable unCLIP image-variation pipeline (`StableUnCLIPImg2ImgPipeline`, e.g.
  stabilityai/stable-diffusion-2-1-unclip saved with `save_pretrained`): conditioned through its
  `image_embeds` argument, after the transform of `scaling.py`;
- a bindspace tiny diffusion generator (`generator.json`), as `bindspace demo generate` writes.
Nothing is ever downloaded: a directory that is not there or not complete is an error.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..errors import BindspaceError, first_line
from ..quiet import quiet
from .scaling import EmbedNorm, resolve_embed_norm, to_image_embeds

UNCLIP_CLASS = "StableUnCLIPImg2ImgPipeline"


@dataclass
class GenerateOptions:
    """Sampling settings; None means the generator's own default."""

    seed: int = 0
    steps: int | None = None
    guidance: float | None = None
    noise_level: int = 0
    prompt: str | None = None
    negative_prompt: str | None = None
    num_images: int = 1
    height: int | None = None
    width: int | None = None
    progress: bool = False


class ImagePipeline(Protocol):
    """What `generate` needs from a generator."""

    path: Path
    embed_dim: int
    checkpoint: str | None  # the embedding model it belongs with, if it records one

    def generate(self, query: np.ndarray, options: GenerateOptions) -> list[Any]:
        """PIL images drawn from one unit query vector (D,)."""
        ...

    def load(self) -> None:
        """Load the weights now rather than on the first `generate` (a server does this at start-up)."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts: kind, width, defaults, the embedding transform."""
        ...


def open_pipeline(path: str | Path, *, device: str = "cpu", dtype: str | None = None,
                  embed_norm: float | None = None) -> ImagePipeline:
    """Open a generator directory (unCLIP or tiny diffusion); one clear error line when it is neither."""
    from .tiny_diffusion import CONFIG_FILE, is_tiny_generator

    folder = Path(path)
    if not folder.is_dir():
        raise BindspaceError(f"{folder}: no such pipeline directory")
    if is_tiny_generator(folder):
        return TinyPipeline(folder, device=device)
    index = folder / "model_index.json"
    if not index.is_file():
        raise BindspaceError(f"{folder}: not a generator directory (no model_index.json of a diffusers pipeline, "
                             f"no {CONFIG_FILE} of a bindspace generator)")
    try:
        name = json.loads(index.read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError) as exc:
        raise BindspaceError(f"{index}: unreadable ({exc})") from None
    if name != UNCLIP_CLASS:
        raise BindspaceError(f"{folder}: a {name} pipeline, not Stable unCLIP: need a {UNCLIP_CLASS} directory "
                             "(e.g. stabilityai/stable-diffusion-2-1-unclip saved with save_pretrained)")
    return UnCLIPPipeline(folder, device=device, dtype=dtype, embed_norm=embed_norm)


def check_width(pipeline: ImagePipeline, embed_dim: int, model_name: str) -> None:
    """Refuse an embedding space whose width is not the pipeline's conditioning width."""
    if int(embed_dim) != int(pipeline.embed_dim):
        raise BindspaceError(f"{pipeline.path}: the pipeline is conditioned on {pipeline.embed_dim}-d image "
                             f"embeddings but the embedding model ({model_name}) gives {embed_dim}-d vectors")


class UnCLIPPipeline:
    """A diffusers Stable unCLIP image-variation pipeline driven by precomputed `image_embeds`."""

    def __init__(self, path: Path, *, device: str = "cpu", dtype: str | None = None,
                 embed_norm: float | None = None) -> None:
        self.path = path
        self.embed_dim = self._read_width(path)
        settings_checkpoint = _settings(path).get("checkpoint")
        self.checkpoint = str(settings_checkpoint) if settings_checkpoint else None
        self.device = device
        # fp16 is what the real pipeline is run in on GPUs; CPUs lack fast fp16 kernels.
        self.dtype = getattr(torch, dtype) if dtype else (torch.float16 if device.startswith("cuda") else torch.float32)
        self._given_norm = embed_norm
        self._pipe: Any = None
        self.norm: EmbedNorm | None = None

    @staticmethod
    def _read_width(path: Path) -> int:
        config = path / "image_normalizer" / "config.json"
        try:
            return int(json.loads(config.read_text())["embedding_dim"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BindspaceError(f"{config}: cannot read the pipeline's embedding width ({exc})") from None

    def load(self) -> None:
        """Load the diffusers pipeline and settle the embedding norm."""
        _ = self.pipe

    @property
    def pipe(self) -> Any:
        """The loaded diffusers pipeline (loaded on first use)."""
        if self._pipe is None:
            self._pipe = self._load()
            self.norm = resolve_embed_norm(self.path, self._pipe, self._given_norm)
        return self._pipe

    def _load(self) -> Any:
        try:
            with quiet(hf=True, ignore=FutureWarning):  # torch_dtype -> dtype rename in newer diffusers
                from diffusers import StableUnCLIPImg2ImgPipeline
        except ImportError:
            raise BindspaceError("generation with unCLIP needs diffusers and transformers: "
                                 "pip install 'bindspace[generate]'") from None
        try:
            with quiet(hf=True, ignore=FutureWarning):  # torch_dtype -> dtype rename in newer diffusers
                # safetensors only: a pickled .bin could run code on load.
                pipe = StableUnCLIPImg2ImgPipeline.from_pretrained(str(self.path), torch_dtype=self.dtype,
                                                                   local_files_only=True, use_safetensors=True)
        except (OSError, ValueError, TypeError, KeyError, RuntimeError) as exc:
            raise BindspaceError(f"{self.path}: cannot load the unCLIP pipeline ({first_line(exc)})") from None
        return pipe.to(self.device)

    def generate(self, query: np.ndarray, options: GenerateOptions) -> list[Any]:
        """PIL images from one unit query (D,): scaled to the encoder's norm, passed as `image_embeds`."""
        pipe = self.pipe
        assert self.norm is not None
        pipe.set_progress_bar_config(disable=not options.progress, desc="denoising", leave=False)
        embeds = to_image_embeds(torch.from_numpy(np.asarray(query, np.float32))[None], self.norm.value)
        generator = torch.Generator("cpu").manual_seed(int(options.seed))  # CPU noise: same images on any device
        kwargs: dict[str, Any] = {}
        if options.steps is not None:
            kwargs["num_inference_steps"] = int(options.steps)
        if options.guidance is not None:
            kwargs["guidance_scale"] = float(options.guidance)
        try:
            out = pipe(prompt=options.prompt or "", negative_prompt=options.negative_prompt,
                       image_embeds=embeds.to(self.device, self.dtype), noise_level=int(options.noise_level),
                       num_images_per_prompt=int(options.num_images), generator=generator,
                       height=options.height, width=options.width, output_type="pil", **kwargs)
        except ValueError as exc:  # the pipeline's own argument checks (sizes not multiples of 8, ...)
            raise BindspaceError(f"{self.path}: {first_line(exc)}") from None
        return list(out.images)

    def describe(self) -> dict[str, Any]:
        """Kind, width and the embedding transform (after loading)."""
        from .scaling import embed_norm_report

        info: dict[str, Any] = {"kind": "stable-unclip", "path": str(self.path), "embed_dim": self.embed_dim}
        if self.norm is not None:
            info["embedding"] = embed_norm_report(self.norm)
        return info


class TinyPipeline:
    """The demo's tiny diffusion generator (plain torch): unit embeddings in, small images out."""

    def __init__(self, path: Path, *, device: str = "cpu") -> None:
        from .tiny_diffusion import load_generator

        self.path = path
        self.model, self.meta = load_generator(path)
        self.model.to(device)
        self.device = device
        self.embed_dim = self.model.config.embed_dim
        checkpoint = self.meta.get("checkpoint")
        self.checkpoint = str((path / str(checkpoint)).resolve()) if checkpoint else None
        defaults = self.meta.get("defaults")
        self.defaults: dict[str, Any] = dict(defaults) if isinstance(defaults, dict) else {}

    def load(self) -> None:
        """Nothing to do: the weights are loaded when the directory is opened."""

    def generate(self, query: np.ndarray, options: GenerateOptions) -> list[Any]:
        """PIL images (grey, nearest-neighbour enlarged to `height` x `width`, default 8x)."""
        from PIL import Image
        from tqdm import tqdm

        from .tiny_diffusion import to_uint8

        if options.prompt or options.negative_prompt:
            raise BindspaceError(f"{self.path}: this generator has no text encoder; give the text as a query part "
                                 "instead of a prompt")
        config = self.model.config
        steps = int(options.steps if options.steps is not None else self.defaults.get("steps", 25))
        guidance = float(options.guidance if options.guidance is not None else self.defaults.get("guidance", 3.0))
        gen = torch.Generator().manual_seed(int(options.seed))
        cond = torch.from_numpy(np.asarray(query, np.float32))[None].repeat(int(options.num_images), 1)  # (N, D)
        if options.noise_level:
            # unCLIP-style noise augmentation of the conditioning: noise_level / 1000 of its length.
            noise = torch.nn.functional.normalize(torch.randn(cond.shape, generator=gen), dim=1)
            cond = torch.nn.functional.normalize(cond + noise * (options.noise_level / 1000), dim=1)
        bar = tqdm(total=steps, desc="denoising", unit="step", disable=not options.progress, leave=False)
        try:
            images = self.model.sample(cond.to(self.device), steps=steps, guidance=guidance, generator=gen,
                                       callback=lambda _: bar.update())
        finally:
            bar.close()
        pixels = to_uint8(images.cpu(), config.ink).numpy()  # (N, H, W, C)
        size = (options.width or config.width * 8, options.height or config.height * 8)
        out = []
        for array in pixels:
            picture = Image.fromarray(array[..., 0] if config.channels == 1 else array)
            out.append(picture.resize(size, Image.Resampling.NEAREST))
        return out

    def describe(self) -> dict[str, Any]:
        """Kind, width, defaults."""
        return {"kind": "bindspace-tiny-diffusion", "path": str(self.path), "embed_dim": self.embed_dim,
                "defaults": self.defaults, "embedding": {"transform": "unit query as is (trained on unit vectors)"}}


def _settings(path: Path) -> dict[str, Any]:
    from .scaling import read_settings

    return read_settings(path)


