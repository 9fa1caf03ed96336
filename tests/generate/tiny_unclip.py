"""A tiny Stable unCLIP image-variation pipeline built from component configs: nothing downloaded."""
from __future__ import annotations

import json
from pathlib import Path

import torch


def write_tokenizer_files(folder: Path) -> tuple[Path, Path]:
    """vocab.json + merges.txt of a small CLIP BPE: the special tokens, single letters and a few merges."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    tokens = ["<|startoftext|>", "<|endoftext|>"] + list(letters) + [f"{c}</w>" for c in letters]
    merges = ["d o", "do g</w>", "c a", "ca t</w>"]
    tokens += ["do", "dog</w>", "ca", "cat</w>"]
    vocab = {token: i for i, token in enumerate(tokens)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder / "vocab.json", folder / "merges.txt"


def build_tiny_unclip(out: Path, embed_dim: int, *, seed: int = 0, constant_encoder: bool = False) -> Path:
    """Save a StableUnCLIPImg2ImgPipeline with random tiny components to `out`.

    constant_encoder: the image encoder's final LayerNorm has zero weight, so every image gets the
    same `image_embeds` (visual_projection @ post_layernorm.bias): a norm the test can compute.
    """
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableUnCLIPImg2ImgPipeline,
        UNet2DConditionModel,
    )
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
    from transformers import (
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTokenizer,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    torch.manual_seed(seed)
    vocab, merges = write_tokenizer_files(out.parent / f"{out.name}-tokenizer-src")
    tokenizer = CLIPTokenizer(str(vocab), str(merges), model_max_length=77)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(json.loads(vocab.read_text())), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=32, bos_token_id=0, eos_token_id=1,
        pad_token_id=1))
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32,
        patch_size=8, projection_dim=embed_dim))
    if constant_encoder:
        with torch.no_grad():
            image_encoder.vision_model.post_layernorm.weight.zero_()
            image_encoder.vision_model.post_layernorm.bias.normal_()
    feature_extractor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=2, class_embed_type="projection",
        projection_class_embeddings_input_dim=2 * embed_dim)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), sample_size=16)
    pipe = StableUnCLIPImg2ImgPipeline(
        feature_extractor=feature_extractor, image_encoder=image_encoder,
        image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=embed_dim),
        image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
        tokenizer=tokenizer, text_encoder=text_encoder, unet=unet,
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                prediction_type="v_prediction", set_alpha_to_one=False, steps_offset=1),
        vae=vae)
    pipe.save_pretrained(out)  # type: ignore[attr-defined]  # ModelMixin methods are invisible to mypy here
    return out


def constant_encoder_norm(pipeline_dir: Path) -> float:
    """||visual_projection @ post_layernorm.bias||: the norm of every image embedding of a constant encoder."""
    from transformers import CLIPVisionModelWithProjection

    encoder = CLIPVisionModelWithProjection.from_pretrained(pipeline_dir / "image_encoder")
    bias = encoder.vision_model.post_layernorm.bias.detach().double()
    return float(torch.linalg.norm(encoder.visual_projection.weight.detach().double() @ bias))
