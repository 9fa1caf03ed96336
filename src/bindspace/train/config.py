"""The training configuration: typed dataclasses read from TOML, YAML or JSON, validated with clear errors."""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from ..errors import ConfigError
from ..modality import Modality, as_modality

Precision = Literal["fp32", "bf16", "fp16"]
DataFormat = Literal["auto", "csv", "jsonl", "tar"]


@dataclass
class LoraConfig:
    """LoRA adapters (via peft) on the trained tower's transformer blocks; everything else stays frozen."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    # "in_proj" is the fused q/k/v weight (a raw parameter, adapted with peft's target_parameters);
    # the others are the nn.Linear layers of each block.
    targets: tuple[str, ...] = ("in_proj", "out_proj", "fc1", "fc2")


@dataclass
class TowerSpec:
    """One side of the pair: which modality, which architecture, which weights."""

    modality: str = ""
    # Preset name or model directory giving the architecture (default: the checkpoint's own config).
    # A model directory given as the anchor's model is also its weights, when no checkpoint is given.
    model: str | None = None
    checkpoint: str | None = None  # a .pth or a model directory
    init: Literal["auto", "checkpoint", "random"] = "auto"  # auto: checkpoint when one is given, else random
    overrides: dict[str, Any] = field(default_factory=dict)  # TowerConfig fields to change (random init only)
    freeze: bool | None = None  # default: True for the anchor, False for the target
    lora: LoraConfig | None = None  # target only; needs checkpoint weights


@dataclass
class DataConfig:
    """Where the pairs are and how they are read."""

    train: tuple[str, ...] = ()
    val: tuple[str, ...] = ()
    format: DataFormat = "auto"
    root: str | None = None  # base for relative paths inside manifests (default: the manifest's folder)
    anchor_field: str | None = None  # column / key / tar extension(s) of the anchor (default: its modality's names)
    target_field: str | None = None
    num_workers: int = 2
    shuffle_buffer: int = 1000  # tar shards only
    on_error: Literal["skip", "raise"] = "skip"  # a sample that fails to load is replaced by the next one
    max_val_items: int = 2000


@dataclass
class AugmentConfig:
    """Per-modality training augmentations (torch only); evaluation never augments."""

    enabled: bool = True
    crop_scale: tuple[float, float] = (0.5, 1.0)  # random resized crop: fraction of the area kept
    crop_ratio: tuple[float, float] = (0.75, 1.3333333333333333)
    hflip: bool = True
    clip_seconds: float = 2.0  # audio / video clip length; the start is random within the item
    freq_mask: int = 16  # audio: largest band of mel bins zeroed (SpecAugment-style); 0 disables
    time_mask: int = 32  # audio: largest run of frames zeroed; 0 disables
    imu_noise: float = 0.02  # IMU: gaussian noise std relative to each channel's std
    imu_scale: float = 0.1  # IMU: random per-channel gain in [1 - s, 1 + s]


@dataclass
class OptimConfig:
    """AdamW (weight decay on >= 2-D weights only) with linear warmup then cosine decay."""

    lr: float = 1e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-6
    warmup_steps: int = 0
    schedule: Literal["cosine", "constant"] = "cosine"
    min_lr: float = 0.0
    grad_clip: float | None = 1.0


@dataclass
class LossConfig:
    """InfoNCE temperature: "model" uses the towers' own logit scale (target's, else anchor's)."""

    temperature: float | Literal["model"] = "model"
    learnable: bool = False  # only for a numeric temperature
    max_logit_scale: float = 100.0


@dataclass
class RunConfig:
    """Loop length, batch, precision, intervals, output."""

    out_dir: str = "runs/bind"
    steps: int | None = None  # optimiser steps; exactly one of steps / epochs
    epochs: int | None = None
    batch_size: int = 32  # per process, per micro-batch
    grad_accum: int = 1
    precision: Precision = "fp32"
    grad_checkpointing: bool = False
    log_every: int = 10
    eval_every: int = 0  # 0: only at the end (when there is validation data)
    save_every: int = 500  # 0: only at the end
    keep_checkpoints: int = 2
    seed: int = 0
    device: str = "auto"
    resume: str = "auto"  # auto (continue out_dir if it has a checkpoint) | never | a checkpoint path
    tensorboard: bool = True
    progress: bool = True
    export: bool = True  # write out_dir/model (a model directory) at the end


@dataclass
class TrainConfig:
    """Everything `bindspace train` needs."""

    # llm: train an LLM bridge (bindspace.llm; its settings in `llm`); detect: an open-vocabulary detector
    # (bindspace.detect; its settings in `detect`)
    kind: Literal["bind", "llm", "detect"] = "bind"
    llm: dict[str, Any] = field(default_factory=dict)
    detect: dict[str, Any] = field(default_factory=dict)
    anchor: TowerSpec = field(default_factory=TowerSpec)
    target: TowerSpec = field(default_factory=TowerSpec)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @property
    def anchor_modality(self) -> Modality:
        """The frozen side's modality."""
        return as_modality(self.anchor.modality)

    @property
    def target_modality(self) -> Modality:
        """The trained side's modality."""
        return as_modality(self.target.modality)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (stored in checkpoints and the run folder)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> TrainConfig:
        """Parse and validate a mapping (as read from a config file)."""
        config = build_section(cls, data, source, "")
        validate(config, source)
        return config


# ----------------------------------------------------------------------------- loading


def load_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a TOML, YAML or JSON config file, apply `key.path=value` overrides, validate."""
    path = Path(path)
    data = read_config_file(path)
    for item in overrides:
        apply_override(data, item, str(path))
    return TrainConfig.from_dict(data, str(path))


def read_config_file(path: Path) -> dict[str, Any]:
    """The raw mapping in a .toml / .yaml / .yml / .json file."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise ConfigError(f"{path}: reading YAML needs PyYAML (pip install 'bindspace[train]')") from None
            data = yaml.safe_load(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"{path}: unknown config format {suffix!r} (use .toml, .yaml or .json)")
    except ConfigError:
        raise
    except Exception as exc:  # each parser raises its own error type; all mean "bad syntax"
        raise ConfigError(f"{path}: cannot parse: {' '.join(str(exc).split())}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a table of sections, not {type(data).__name__}")
    return data


def apply_override(data: dict[str, Any], item: str, source: str = "config") -> None:
    """Set `a.b.c=value` in a raw config mapping; the value is read as TOML/JSON when it parses, else a string."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected KEY.PATH=VALUE")
    key, raw = item.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {item!r}: empty key")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = _parse_value(raw.strip())


def _parse_value(raw: str) -> Any:
    import tomllib

    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    if raw.lower() in ("none", "null"):
        return None
    return raw


# ----------------------------------------------------------------------------- recipe kinds


@dataclass(frozen=True)
class TrainKind:
    """How recipes of a `kind` other than "bind" are checked, trained and exported."""

    validate: Callable[[TrainConfig, str], None]
    train: Callable[..., Any]  # (config, *, evaluate=None, max_steps=None) -> a TrainOutput
    export_checkpoint: Callable[[TrainConfig, str | os.PathLike[str] | None, str | os.PathLike[str] | None], Path]


# train/ sits below the packages that define other kinds (llm/, detect/), so they register here when imported.
_KINDS: dict[str, TrainKind] = {}


def register_kind(name: str, kind: TrainKind) -> None:
    """Make `kind = name` recipes trainable (bindspace.llm.recipe registers "llm", bindspace.detect.recipe "detect")."""
    _KINDS[name] = kind


def train_kind(name: str, source: str = "config") -> TrainKind:
    """The registered trainer of recipe kind `name`; a one-line ConfigError when its package is not loaded."""
    if name not in _KINDS:
        raise ConfigError(f"{source}: kind = {name!r}: no trainer registered "
                          "(import its package's recipe module first, e.g. bindspace.llm.recipe; `bindspace train` "
                          "does)")
    return _KINDS[name]


# ----------------------------------------------------------------------------- validation


def validate(config: TrainConfig, source: str = "config") -> None:
    """Cross-field checks that single-field types cannot express; raises ConfigError."""

    def fail(where: str, problem: str) -> None:
        raise ConfigError(f"{source}: {where}: {problem}")

    for section in ("llm", "detect"):
        if getattr(config, section) and config.kind != section:
            fail(section, f"applies to kind = \"{section}\" recipes only")
    if config.kind != "bind":  # a registered kind (the LLM bridge, the detector) checks its own sections
        train_kind(config.kind, source).validate(config, source)
        return
    adopt_model_dir(config.anchor)
    for side in ("anchor", "target"):
        spec: TowerSpec = getattr(config, side)
        if spec.model and not is_model_dir(spec.model) and spec.model not in _preset_names():
            fail(f"{side}.model", f"{spec.model!r} is neither a preset ({', '.join(_preset_names())}) "
                                  "nor a model directory (a folder with manifest.json)")
        if not spec.modality:
            fail(f"{side}.modality", "is required (vision, text, audio, depth, thermal or imu)")
        try:
            as_modality(spec.modality)
        except ValueError as exc:
            fail(f"{side}.modality", str(exc))
        if spec.init == "checkpoint" and not spec.checkpoint:
            fail(f"{side}.init", "is 'checkpoint' but no checkpoint is given")
        if spec.overrides and _init(spec) == "checkpoint":
            fail(f"{side}.overrides", "can only change the architecture of a randomly initialised tower")
        if spec.overrides:
            known = {f.name for f in dataclasses.fields(_tower_config_cls())}
            for key in spec.overrides:
                if key not in known:
                    fail(f"{side}.overrides.{key}", f"unknown tower field{_suggest(key, known)}")
        if _init(spec) == "random" and not spec.model and not spec.checkpoint:
            fail(f"{side}.model", "a randomly initialised tower needs a preset or model directory to take its "
                                  "architecture from (e.g. model = \"imagebind_huge\")")
    if config.anchor_modality == config.target_modality:
        fail("target.modality", f"must differ from the anchor's ({config.anchor_modality})")
    if config.anchor.lora is not None:
        fail("anchor.lora", "LoRA applies to the trained (target) tower only")
    if config.target.lora is not None and _init(config.target) != "checkpoint":
        fail("target.lora", "LoRA adapts existing weights: give target.checkpoint")
    if config.target.freeze:
        fail("target.freeze", "the target tower is the one being trained; it cannot be frozen")
    if _init(config.anchor) == "random" and config.anchor.freeze is not False:
        fail("anchor.checkpoint", "a frozen anchor needs trained weights (set anchor.checkpoint)")
    if not config.data.train:
        fail("data.train", "give at least one manifest (.csv/.jsonl) or tar shard")
    validate_run(config, source)
    if config.data.format == "tar" or any(str(p).endswith(".tar") for p in config.data.train):
        if config.run.steps is None:
            fail("run.steps", "tar shards are streamed without a fixed length: set steps instead of epochs")
    if config.data.num_workers < 0:
        fail("data.num_workers", f"must be >= 0, got {config.data.num_workers}")
    loss = config.loss
    if loss.temperature == "model" and loss.learnable:
        fail("loss.learnable", "applies to a numeric temperature; with 'model' the towers' own scale is used")
    if isinstance(loss.temperature, float) and not 0 < loss.temperature:
        fail("loss.temperature", f"must be > 0, got {loss.temperature}")
    if isinstance(loss.temperature, float) and 1 / loss.temperature > loss.max_logit_scale:
        fail("loss.temperature", f"1/{loss.temperature} exceeds max_logit_scale {loss.max_logit_scale}")
    aug = config.augment
    lo, hi = aug.crop_scale
    if not 0 < lo <= hi <= 1:
        fail("augment.crop_scale", f"need 0 < min <= max <= 1, got {list(aug.crop_scale)}")
    if not 0 < aug.crop_ratio[0] <= aug.crop_ratio[1]:
        fail("augment.crop_ratio", f"need 0 < min <= max, got {list(aug.crop_ratio)}")
    if not aug.clip_seconds > 0:
        fail("augment.clip_seconds", f"must be > 0, got {aug.clip_seconds}")
    lora = config.target.lora
    if lora is not None:
        _positive(fail, "target.lora.rank", lora.rank)
        allowed = {"in_proj", "out_proj", "fc1", "fc2"}
        for name in lora.targets:
            if name not in allowed:
                fail("target.lora.targets", f"unknown target {name!r}{_suggest(name, allowed)} "
                                            f"(choose from {', '.join(sorted(allowed))})")
        if not lora.targets:
            fail("target.lora.targets", "is empty")


def validate_run(config: TrainConfig, source: str = "config") -> None:
    """Checks of the [run] and [optim] sections, shared by every recipe kind (they drive the same Trainer)."""

    def fail(where: str, problem: str) -> None:
        raise ConfigError(f"{source}: {where}: {problem}")

    run = config.run
    if (run.steps is None) == (run.epochs is None):
        fail("run", "set exactly one of steps and epochs")
    for name in ("steps", "epochs"):
        value = getattr(run, name)
        if value is not None and value < 1:
            fail(f"run.{name}", f"must be >= 1, got {value}")
    _positive(fail, "run.batch_size", run.batch_size)
    _positive(fail, "run.grad_accum", run.grad_accum)
    _positive(fail, "run.log_every", run.log_every)
    for name in ("eval_every", "save_every", "keep_checkpoints"):
        if getattr(run, name) < 0:
            fail(f"run.{name}", f"must be >= 0, got {getattr(run, name)}")
    if run.resume not in ("auto", "never") and not Path(run.resume).exists():
        fail("run.resume", f"{run.resume!r} is neither 'auto', 'never' nor an existing checkpoint")
    opt = config.optim
    if not opt.lr > 0:
        fail("optim.lr", f"must be > 0, got {opt.lr}")
    if opt.weight_decay < 0:
        fail("optim.weight_decay", f"must be >= 0, got {opt.weight_decay}")
    if not all(0 <= b < 1 for b in opt.betas):
        fail("optim.betas", f"each must be in [0, 1), got {list(opt.betas)}")
    if opt.warmup_steps < 0:
        fail("optim.warmup_steps", f"must be >= 0, got {opt.warmup_steps}")
    if not 0 <= opt.min_lr <= opt.lr:
        fail("optim.min_lr", f"must be in [0, lr={opt.lr}], got {opt.min_lr}")
    if opt.grad_clip is not None and not opt.grad_clip > 0:
        fail("optim.grad_clip", f"must be > 0 (or omitted), got {opt.grad_clip}")


def _positive(fail: Any, where: str, value: int) -> None:
    if value < 1:
        fail(where, f"must be >= 1, got {value}")


def _init(spec: TowerSpec) -> str:
    if spec.init != "auto":
        return spec.init
    return "checkpoint" if spec.checkpoint else "random"


def resolved_init(spec: TowerSpec) -> Literal["checkpoint", "random"]:
    """'checkpoint' or 'random' for a tower spec ('auto' resolved)."""
    return _init(spec)  # type: ignore[return-value]


def is_model_dir(value: str | None) -> bool:
    """Whether a config value names a model directory (a folder holding manifest.json)."""
    from ..model.model_dir import is_model_dir as holds_manifest

    return bool(value) and holds_manifest(str(value))


def adopt_model_dir(spec: TowerSpec) -> None:
    """An anchor given as `model = "DIR"` (a model directory) and no checkpoint takes its weights from DIR."""
    if spec.checkpoint is None and spec.model and is_model_dir(spec.model):
        spec.checkpoint = spec.model


def _preset_names() -> list[str]:
    from ..model.presets import list_models

    return list(list_models())


def _tower_config_cls() -> type:
    from ..config import TowerConfig

    return TowerConfig


# ----------------------------------------------------------------------------- generic typed parsing


def _suggest(name: str, choices: Any) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def build_section(cls: type, data: Any, source: str, where: str) -> Any:
    """Instantiate dataclass `cls` from a mapping, checking keys and value types."""
    label = where or "top level"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: {label}: expected a table/section, got {_kind(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ConfigError(f"{source}: {path}: unknown setting{_suggest(str(key), fields)}")
        kwargs[key] = _coerce(hints[key], value, source, path)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, source: str, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build_section(tp, value, source, path)
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{source}: {path}: may not be empty")
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: X's own message, with its full path
            return _coerce(options[0], value, source, path)
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, source, path)
            except ConfigError as exc:
                errors.append(str(exc).split(": ", 2)[-1])
        wants = [e.split(", got ")[0] for e in dict.fromkeys(errors)]
        wants = wants[:1] + [w.removeprefix("expected ") for w in wants[1:]]
        raise ConfigError(f"{source}: {path}: {' or '.join(wants)}, got {_kind(value)}")
    if origin is Literal:
        if value in args:
            return value
        choices = ", ".join(repr(a) for a in args)
        raise ConfigError(f"{source}: {path}: expected one of {choices}, got {value!r}")
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {path}: expected true or false, got {_kind(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {path}: expected an integer, got {_kind(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{source}: {path}: expected a number, got {_kind(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        raise ConfigError(f"{source}: {path}: expected a string, got {_kind(value)}")
    if origin is tuple:
        if isinstance(value, (str, os.PathLike)) and args and args[-1] is Ellipsis:
            value = [value]  # a single path where a list is expected
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {path}: expected a list, got {_kind(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, source, f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{source}: {path}: expected a list of {len(args)} values, got {len(value)}")
        return tuple(_coerce(a, v, source, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: {path}: expected a table, got {_kind(value)}")
        return dict(value)
    raise TypeError(f"unsupported config type {tp!r}")  # a programming error, not a user one


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if value is None:
        return "nothing"
    return f"a {type(value).__name__}"


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
