"""`kind = "llm"` recipes of `bindspace train`: fit a bridge's projector (and LoRA) with the shared Trainer.

    kind = "llm"
    [llm]
    model = "/models/vicuna-7b-v0"                 # a local transformers directory
    encoder = "~/.cache/bindspace/imagebind_huge"   # the frozen bindspace encoder
    [llm.projector]
    kind = "linear"                                  # or "mlp"; tokens = k soft tokens per item
    [llm.lora]                                       # optional
    rank = 32
    [data]
    train = ["instructions.jsonl"]                   # rows {media: [{modality, path}], prompt, response}
    [run]
    steps = 2000
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch

from ..errors import ConfigError, InputError
from ..quiet import quiet_hf
from ..train.api import TrainOutput
from ..train.config import TrainConfig, TrainKind, build_section, register_kind, validate_run
from .bridge import Bridge
from .bridge_dir import save_bridge
from .data import Example, ExampleSource, Row, embed_all, make_example, read_rows
from .lm import LanguageModel, LmLoraConfig, add_lora, load_language_model
from .objective import BridgeObjective
from .projector import Projector, ProjectorConfig
from .space import SpaceInfo, space_of
from .template import CHAT, PromptTemplate, chat_template, filler_id

log = logging.getLogger("bindspace.llm")
BRIDGE_SUBDIR = "bridge"


@dataclass
class LlmRecipe:
    """The `[llm]` section."""

    model: str = ""  # the language model: a local transformers directory, a .gguf file, or a known name (smollm2)
    encoder: str = ""  # the bindspace encoder: a model directory or .pth
    encoder_model: str | None = None  # preset of a .pth encoder (model directories name their own)
    template: str = PromptTemplate.text  # or "chat": the language model's own chat template
    response_prefix: str = PromptTemplate.response_prefix
    noise: float = 0.0  # expected norm of Gaussian noise on training embeddings (robustness to other modalities)
    max_length: int = 1024  # longer rows are skipped
    embed_batch_size: int = 32
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    lora: LmLoraConfig | None = None
    bridge_dir: str | None = None  # default: run.out_dir/bridge


def recipe_of(config: TrainConfig, source: str = "config") -> LlmRecipe:
    """The parsed, typed `[llm]` section."""
    recipe = build_section(LlmRecipe, config.llm, source, "llm")
    return cast(LlmRecipe, recipe)


def validate_recipe(config: TrainConfig, source: str = "config") -> None:
    """What an llm recipe must have; ConfigError naming the setting otherwise."""
    def fail(where: str, problem: str) -> None:
        raise ConfigError(f"{source}: {where}: {problem}")

    recipe = recipe_of(config, source)
    if not recipe.model:
        fail("llm.model", "is required: a causal language model (a transformers directory or a .gguf file)")
    if not recipe.encoder:
        fail("llm.encoder", "is required: the bindspace encoder checkpoint (model directory or .pth)")
    try:
        recipe.projector.check()
    except ConfigError as exc:
        fail("llm", str(exc))
    if "{prompt}" not in recipe.template and recipe.template != CHAT:
        fail("llm.template", f"must contain {{prompt}} (or be {CHAT!r}: the language model's chat template)")
    if recipe.noise < 0:
        fail("llm.noise", f"must be >= 0, got {recipe.noise}")
    if recipe.max_length < 2:
        fail("llm.max_length", f"must be >= 2, got {recipe.max_length}")
    if recipe.lora is not None and recipe.lora.rank < 1:
        fail("llm.lora.rank", f"must be >= 1, got {recipe.lora.rank}")
    if not config.data.train:
        fail("data.train", "give at least one JSONL file of {media, prompt, response} rows")
    validate_run(config, source)

def template_of(recipe: LlmRecipe, tokenizer: Any = None) -> PromptTemplate:
    """The prompt template a recipe describes (`"chat"`: the tokenizer's own chat template)."""
    if recipe.template == CHAT:
        return chat_template(tokenizer)
    return PromptTemplate(text=recipe.template, response_prefix=recipe.response_prefix)


def build_bridge(recipe: LlmRecipe, lm: LanguageModel, space: SpaceInfo) -> Bridge:
    """A fresh bridge (no encoder: training reads cached embeddings) with LoRA when the recipe asks."""
    projector_config = ProjectorConfig(recipe.projector.kind, recipe.projector.tokens, recipe.projector.hidden,
                                       in_dim=space.embed_dim, out_dim=lm.hidden_size)
    projector = Projector(projector_config).to(next(lm.model.parameters()).device)
    projector.start_among(lm.model.get_input_embeddings().weight)
    if recipe.lora is not None:
        add_lora(lm.model, recipe.lora)
    return Bridge(None, projector, lm, template_of(recipe, lm.tokenizer), space, recipe.lora)


def _encoder_space(recipe: LlmRecipe) -> tuple[str | None, SpaceInfo]:
    from ..model.factory import encoder_config

    name, path, config = encoder_config(recipe.encoder, recipe.encoder_model, "llm.encoder")
    return name, space_of(path, config.name, config.embed_dim)


def examples_for(bridge: Bridge, rows: Sequence[Row], table_keys: dict[tuple[str, str], int],
                 max_length: int) -> list[Example]:
    """Tokenised examples; rows with a media item that failed to embed, or too long, are left out (logged)."""
    out, failed, long = [], 0, 0
    for row in rows:
        if any(m not in table_keys for m in row.media):
            failed += 1
            continue
        turn = bridge.encode(row.prompt, len(row.media), row.response)
        if len(turn.ids) > max_length:
            long += 1
            continue
        out.append(make_example(turn, [table_keys[m] for m in row.media]))
    if failed or long:
        log.warning("left out %d rows whose media could not be decoded and %d rows longer than llm.max_length=%d",
                    failed, long, max_length)
    return out


class BridgeOutput(TrainOutput):
    """A bridge run's result: `model_dir` is the bridge directory."""

    accuracy_name = "response-token accuracy"
    output_line = "bridge directory: {dir}  (use bindspace chat --bridge {dir})"


def train_bridge(config: TrainConfig, *, evaluate: Callable[[Any], dict[str, float]] | None = None,
                 max_steps: int | None = None) -> Any:
    """Embed the data once, train the projector (+ LoRA) with the shared Trainer, export the bridge directory."""
    from ..model import create_model
    from ..train.api import seed_everything
    from ..train.distributed import init_distributed, shutdown_distributed
    from ..train.loop import train_run

    recipe = recipe_of(config)
    quiet_hf()  # transformers' loading bars and notices would interleave with the training log
    rows = [r for path in config.data.train for r in read_rows(path, config.data.root)]
    val_rows = [r for path in config.data.val for r in read_rows(path, config.data.root)]
    encoder_name, space = _encoder_space(recipe)
    dist = init_distributed(config.run.device)
    try:
        seed_everything(config.run.seed)
        out_dir = Path(config.run.out_dir)
        keys = [m for row in (*rows, *val_rows) for m in row.media]
        vectors: dict[tuple[str, str], torch.Tensor] = {}
        if keys:
            from ..kinds import tower_of

            towers = list(dict.fromkeys(tower_of(kind) for kind, _ in keys))
            encoder = create_model(encoder_name, checkpoint=os.path.expanduser(recipe.encoder), modalities=towers,
                                   device=dist.device)
            vectors = embed_all(encoder, keys, fingerprint=space.fingerprint,
                                cache_dir=out_dir if dist.is_main else None, batch_size=recipe.embed_batch_size,
                                num_workers=config.data.num_workers, on_error=config.data.on_error)
            del encoder
        index = {key: i for i, key in enumerate(vectors)}
        table = torch.stack(list(vectors.values())) if vectors else torch.zeros(0, space.embed_dim)
        lm = load_language_model(os.path.expanduser(recipe.model), device=dist.device)
        bridge = build_bridge(recipe, lm, space)
        if config.run.grad_checkpointing:  # recompute the LM's activations in backward: long prompts, big LMs
            lm.model.gradient_checkpointing_enable()
        examples = examples_for(bridge, rows, index, recipe.max_length)
        if not examples:
            raise InputError(str(config.data.train[0]), "no usable training rows")
        pad = filler_id(lm.tokenizer)
        source = ExampleSource(examples, table, pad, batch_size=config.run.batch_size, rank=dist.rank,
                               world=dist.world_size, seed=config.run.seed)
        objective = BridgeObjective(bridge, recipe.noise)
        if evaluate is None and val_rows:
            val = ExampleSource(examples_for(bridge, val_rows, index, recipe.max_length), table, pad,
                                batch_size=config.run.batch_size, shuffle=False)
            evaluate = _val_loss(val)
        result = train_run(cast(Any, objective), cast(Any, source), config, dist, evaluate, max_steps)
        bridge_dir = None
        if dist.is_main and not result.stopped_early:
            bridge_dir = save_bridge(bridge, _bridge_dir(config, recipe), extra={"steps": result.steps,
                                                                          "rows": len(examples)})
            log.info("bridge directory: %s  (bindspace chat --bridge %s ...)", bridge_dir, bridge_dir)
        return BridgeOutput(result, bridge_dir, None)
    finally:
        shutdown_distributed()


def _bridge_dir(config: TrainConfig, recipe: LlmRecipe) -> Path:
    return Path(recipe.bridge_dir) if recipe.bridge_dir else Path(config.run.out_dir) / BRIDGE_SUBDIR


def _val_loss(source: ExampleSource) -> Callable[[Any], dict[str, float]]:
    def evaluate(objective: Any) -> dict[str, float]:
        device = next(objective.parameters()).device
        losses, accs = [], []
        for batch in source.batches(0, 0):
            out = objective(batch.to(device))
            losses.append(float(out.loss))
            accs.append(float(out.accuracy))
        return {"val_loss": sum(losses) / max(len(losses), 1), "val_token_acc": sum(accs) / max(len(accs), 1)}

    return evaluate


def export_bridge_checkpoint(config: TrainConfig, checkpoint: str | os.PathLike[str] | None = None,
                             out_dir: str | os.PathLike[str] | None = None) -> Path:
    """Rebuild the bridge of `config`, load a training checkpoint (default: the latest) and export it."""
    from ..train.loop import checkpoint_to_export, load_trained_weights

    recipe = recipe_of(config)
    path = checkpoint_to_export(config.run, checkpoint)
    _, space = _encoder_space(recipe)
    bridge = build_bridge(recipe, load_language_model(os.path.expanduser(recipe.model)), space)
    steps = load_trained_weights(cast(Any, BridgeObjective(bridge)), path)
    return save_bridge(bridge, Path(out_dir) if out_dir else _bridge_dir(config, recipe),
                       extra={"steps": steps, "checkpoint": str(path)})


register_kind("llm", TrainKind(validate_recipe, train_bridge, export_bridge_checkpoint))
