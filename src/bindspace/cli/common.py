"""Options and helpers shared by the commands: model choice, --device, --workers, output checks.

Nothing here imports torch at module level: `bindspace --help` must stay fast.
"""
from __future__ import annotations

import argparse
import errno
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BindspaceError

if TYPE_CHECKING:
    from ..config import ModelConfig
    from ..index.store import ModelInfo

DEFAULT_MODEL = "imagebind_huge"
DTYPES = ("float32", "bfloat16", "float16")
INT8 = "int8"  # --dtype int8: the int8 cache (bindspace.export.int8_cache), not a torch dtype


class UsageError(BindspaceError):
    """Bad arguments found after parsing (a device this machine lacks, no labels, ...): exit status 2."""


class Interrupted(Exception):
    """Ctrl-C, raised again by a command with what was kept and how to continue (exit status 130)."""


def _bounded(convert: Callable[[str], Any], test: Callable[[Any], bool], rule: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    return parse


positive_int = _bounded(int, lambda v: v >= 1, ">= 1")
non_negative_int = _bounded(int, lambda v: v >= 0, ">= 0")
positive_float = _bounded(float, lambda v: v > 0, "> 0")
non_negative_float = _bounded(float, lambda v: v >= 0, ">= 0")
port_number = _bounded(int, lambda v: 0 <= v <= 65535, "a port number (0-65535)")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """--model, --checkpoint, --device, --dtype."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", help="preset name (default: the checkpoint directory's own config, "
                       f"else {DEFAULT_MODEL})")
    group.add_argument("--checkpoint", help="a .pth file or a model directory; default: $BINDSPACE_CHECKPOINT, "
                       "the cache (~/.cache/bindspace), then a download")
    add_device_args(group)


def add_device_args(parser: argparse.ArgumentParser | argparse._ArgumentGroup, what: str = "") -> None:
    """--device and --dtype (default auto), the same for every command; `what` says which weights --dtype sets."""
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps (default: %(default)s)")
    parser.add_argument("--dtype", default="auto", choices=("auto", *DTYPES, INT8),
                        help=(f"{what}; " if what else "") + "default auto: bfloat16 where the hardware computes "
                        "it natively (AVX-512 BF16/AMX CPUs, Ampere+ GPUs), float16 on older GPUs and MPS, else "
                        "float32; $BINDSPACE_DTYPE overrides auto. int8: ONNX Runtime int8 towers quantized for "
                        "this CPU, built on first use and cached (needs bindspace[onnx]). An exported ONNX "
                        "directory runs at its own precision")


def resolve_dtype_arg(args: argparse.Namespace) -> None:
    """Replace --dtype auto with the concrete dtype name for --device; warn (one line) about emulated bfloat16."""
    import sys

    from ..precision import auto_dtype, emulation_warning

    if getattr(args, "dtype", None) not in ("auto", *DTYPES) or not hasattr(args, "device"):
        return  # int8 (or no --dtype) stays as given
    if args.dtype == "auto":
        args.dtype = auto_dtype(args.device)
    message = emulation_warning(args.dtype, args.device)
    if message:
        print(f"bindspace: warning: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------- --workers

def default_workers() -> int:
    """Decoding processes used when --workers is not given: min(4, CPUs - 1)."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def add_workers_arg(parser: argparse.ArgumentParser, extra_help: str = "") -> None:
    """--workers (alias --num-workers): the same default for every command."""
    parser.add_argument("--workers", "--num-workers", dest="workers", type=non_negative_int, default=None,
                        metavar="N", help="decoding processes (default: min(4, CPUs - 1); 0 decodes in the main "
                        "process)" + extra_help)


def workers(args: argparse.Namespace) -> int:
    """The --workers value, or the default."""
    value = getattr(args, "workers", None)
    return default_workers() if value is None else int(value)


# ---------------------------------------------------------------------------- --device

def available_devices() -> list[str]:
    """Devices torch can use on this machine, e.g. ["cpu", "cuda", "cuda:0", "cuda:1"]."""
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        found += ["cuda"] + [f"cuda:{i}" for i in range(count)]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


def check_device(text: str) -> str:
    """`text` if this machine has that device, else UsageError listing the ones it has."""
    if text == "cpu":
        return text  # every machine has it: no torch import (seconds) for commands that may load no model
    import torch

    available = available_devices()
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {text}: not a device name (available here: {', '.join(available)})") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"--device {text}: not supported (available here: {', '.join(available)})")
    if device.type == "cpu" or str(device) in available:
        return text
    why = "no such device on this machine"
    if device.type == "cuda" and not torch.cuda.is_available():
        why = "this torch has no CUDA support" if torch.version.cuda is None else "no CUDA device is visible"
    elif device.type == "mps":
        why = "MPS is not available here"
    raise UsageError(f"--device {text}: {why} (available here: {', '.join(available)})")


# ---------------------------------------------------------------------------- the model

def resolve_model(args: argparse.Namespace, recorded: ModelInfo | None = None,
                  db: str | None = None) -> tuple[str | None, str]:
    """(preset name or None, checkpoint path) for the model a command loads.

    Order: --checkpoint; else the checkpoint an index recorded (`recorded`), when it still
    exists and --model does not ask for another; else the released weights of --model, of the
    recorded preset, or of the default ($BINDSPACE_CHECKPOINT, the cache, a download). A name
    of None means the checkpoint is a model directory that names its own config.
    """
    from ..model.hub import resolve_pretrained
    from ..model.model_dir import is_model_dir

    def name_for(checkpoint: str) -> str | None:
        if args.model:
            return str(args.model)
        if is_model_dir(checkpoint):
            return None
        return recorded.name if recorded is not None else DEFAULT_MODEL

    if args.checkpoint:
        return name_for(args.checkpoint), str(args.checkpoint)
    if recorded is not None and recorded.checkpoint and (args.model is None or args.model == recorded.name):
        kept = str(recorded.checkpoint)
        if "://" in kept or os.path.exists(kept):
            return name_for(kept), kept
        if not _has_release(recorded.name):
            where = f"the index at {db}" if db else "the index"
            raise BindspaceError(
                f"{where} was built with model {recorded.name} loaded from {kept}, which no longer exists; "
                f"pass --checkpoint DIR (that model directory or .pth file, wherever it is now)")
    name = args.model or (recorded.name if recorded is not None else DEFAULT_MODEL)
    return str(name), str(resolve_pretrained(str(name)))


def _has_release(name: str) -> bool:
    from ..model.hub import ENV_CHECKPOINT, RELEASED

    return name in RELEASED or bool(os.environ.get(ENV_CHECKPOINT))


def model_label(name: str | None, checkpoint: str) -> str:
    """The model's name for messages: the preset, else the name a model directory records."""
    if name:
        return name
    from ..model.presets import manifest_config

    return manifest_config(checkpoint).name


def model_config(name: str | None, checkpoint: str) -> ModelConfig:
    """The model's config: the preset's, else the one a model directory records (nothing loaded)."""
    from ..model.presets import get_config, manifest_config

    return get_config(name) if name else manifest_config(checkpoint)


def tower_names(name: str | None, checkpoint: str) -> set[str]:
    """The towers the model has (read from its config, nothing loaded)."""
    return {str(m) for m in model_config(name, checkpoint).towers}


def load_model(args: argparse.Namespace, modalities: Iterable[str] | None, recorded: ModelInfo | None = None) -> Any:
    """Load real weights for the requested towers (never random ones); see `resolve_model` for which."""
    import sys
    import warnings

    from ..model import create_model
    from ..model.int8_recipe import KindWarning

    name, checkpoint = resolve_model(args, recorded)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", KindWarning)
        model = create_model(name, checkpoint=checkpoint, modalities=modalities, device=args.device,
                             dtype=model_dtype(args))
    for warning in caught:  # one line each, as the CLI words every warning
        if issubclass(warning.category, KindWarning):
            print(f"bindspace: warning: {warning.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return model


def model_dtype(args: argparse.Namespace) -> Any:
    """What create_model takes for --dtype: a torch dtype, or "int8" for the int8 cache."""
    import torch

    if args.dtype == INT8:
        from ..export import int8_cache  # noqa: F401 - registers the int8 builder create_model uses

        return INT8
    return getattr(torch, args.dtype)


def weights_fingerprint(args: argparse.Namespace, checkpoint: str) -> str:
    """The fingerprint of the vectors the command's model makes: its weights', or their int8 cache entry's."""
    from ..model.fingerprint import model_fingerprint

    if getattr(args, "dtype", None) == INT8:
        return int8_weights_fingerprint(checkpoint)
    return model_fingerprint(None, checkpoint)


def int8_weights_fingerprint(checkpoint: str) -> str:
    """The fingerprint of the int8 towers this CPU makes of `checkpoint` (its recipe follows the CPU kind)."""
    from ..export.int8_cache import int8_fingerprint
    from ..model.fingerprint import model_fingerprint
    from ..model.int8_recipe import quantization_recipe
    from ..precision import cpu_flags

    return int8_fingerprint(model_fingerprint(None, checkpoint), quantization_recipe(cpu_flags()))


# ---------------------------------------------------------------------------- inputs

def check_input_file(path: str, option: str) -> None:
    """Fail before any work unless `path` (given with `option`) is a readable, non-empty file."""
    from ..errors import InputError
    from ..preprocess.sources import check_path

    try:
        check_path(path)
    except InputError as exc:  # "no such file", "is a directory, not a file", ...: say which option gave it
        raise InputError(path, f"{exc.problem} ({option})") from None


# ---------------------------------------------------------------------------- outputs

def check_writable_file(path: str | os.PathLike[str], what: str = "output") -> None:
    """Fail before any work if a file cannot be created at `path` (a folder, read-only, missing parent...).

    The folder it goes in must exist: a typo in it must not create a tree of folders somewhere.
    """
    target = Path(path).expanduser()
    if target.is_dir():
        raise BindspaceError(f"{target}: is a directory (the {what} must be a file name)")
    parent = target.parent.absolute()
    if not parent.exists():
        raise BindspaceError(f"{parent}: no such directory (the folder of the {what} {target} must exist)")
    check_writable_dir(parent, what)


def check_output_dir(path: str | os.PathLike[str], what: str = "output") -> None:
    """Fail before any work unless `path` is a directory bindspace can write in, or can be created as one.

    Only the last level is created: its parent must exist.
    """
    target = Path(path).expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise BindspaceError(f"{target}: not a directory (the {what} is a directory)")
    if not target.exists() and not target.parent.exists():
        raise BindspaceError(f"{target.parent}: no such directory (only the last folder of the {what} {target} "
                             "is created)")
    check_writable_dir(target if target.exists() else target.parent, what)


def check_writable_dir(folder: str | os.PathLike[str], what: str = "output") -> None:
    """Fail unless a file can be created in `folder` (tried for real: permissions, read-only mounts, quotas)."""
    where = Path(folder)
    if not where.is_dir():
        raise BindspaceError(f"{where}: not a directory (cannot write the {what} there)")
    try:
        fd, probe = tempfile.mkstemp(dir=where, prefix=".bindspace-probe-")
    except OSError as exc:
        raise BindspaceError(f"{where}: cannot write the {what} there ({_write_reason(exc)})") from exc
    os.close(fd)
    os.unlink(probe)


def _write_reason(exc: OSError) -> str:
    """Why a file could not be created in an existing folder, in words a user can act on."""
    if exc.errno in (errno.ENOENT, errno.ENOTSUP, errno.EOPNOTSUPP):
        # /proc, /sys and the like exist but do not let anyone create files (they answer ENOENT)
        return "this file system does not allow creating files"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return _reason(exc)


def _reason(exc: OSError) -> str:
    return exc.strerror or errno.errorcode.get(exc.errno or 0, "") or str(exc)


def write_failed(path: str | os.PathLike[str], exc: OSError) -> BindspaceError:
    """The one-line error for an output that could not be written."""
    return BindspaceError(f"{os.fspath(path)}: cannot write ({_reason(exc)}); nothing was written there")


def add_storage_option_arg(parser: argparse.ArgumentParser) -> None:
    """--storage-option KEY=VALUE (repeatable): how an s3:// (gs://, az://) --db is reached."""
    parser.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                        help="object-store setting for an s3:// (gs://, az://) --db, repeatable: endpoint=URL, "
                        "region=R, allow_http=true, aws_access_key_id=..., ...; unset ones come from AWS_* "
                        "variables (AWS_ENDPOINT, AWS_REGION, AWS_ACCESS_KEY_ID, ...)")


def storage_options(args: argparse.Namespace) -> dict[str, str]:
    """The --storage-option pairs as a dict (a pair without '=' is a usage error)."""
    from ..index.object_store import parse_storage_options

    try:
        return parse_storage_options(getattr(args, "storage_option", None))
    except BindspaceError as exc:
        raise UsageError(str(exc)) from None


# ---------------------------------------------------------------------------- the demo commands

def add_demo_args(parser: argparse.ArgumentParser, *, threads: int | None = 1, threads_help: str | None = None,
                  minimum: str = "--min-accuracy", minimum_help: str = "the accuracy", debug: bool = True) -> None:
    """The options every `bindspace demo ...` shares: --seed, --threads, a --min-... exit check, --json, --quiet.

    `debug`: add the hidden --debug that main gives each command but not the sub-commands of `demo`.
    `threads=None`: the command picks the count itself; `threads_help` then says how.
    """
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--threads", type=positive_int, default=threads,
                        help=threads_help or "CPU threads (default: %(default)s; tiny models gain little)")
    parser.add_argument(minimum, type=float, metavar="F",
                        help=f"exit with status 1 if {minimum_help} is below F (e.g. 0.8)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or stage messages")
    if debug:
        parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def demo_progress(args: argparse.Namespace) -> bool:
    """Whether a demo draws progress bars: not with --quiet or --json."""
    return not (args.quiet or args.json)


def demo_log(args: argparse.Namespace) -> Callable[[str], None]:
    """A demo's stage messages: to stderr, silent with --quiet or --json."""
    import sys

    def log(message: str) -> None:
        if demo_progress(args):
            print(message, file=sys.stderr, flush=True)

    return log


def demo_status(value: float, minimum: float | None, what: str, option: str = "--min-accuracy",
                form: str = ".1%") -> int:
    """A demo's exit status: 1 (with a line on stderr) when `value` is below the --min-... `minimum`, else 0."""
    import sys

    if minimum is not None and value < minimum:
        print(f"{what} {value:{form}} is below {option} {minimum:{form}}", file=sys.stderr)
        return 1
    return 0


def step_counts(text: str, option_form: str, one_sets_both: bool = False) -> tuple[int, int]:
    """A demo's --steps A,B (or one number for both when `one_sets_both`) -> two positive step counts."""
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        raise UsageError(f"--steps {text!r}: expected {option_form}") from None
    if len(parts) != 2 and not (one_sets_both and len(parts) == 1):
        raise UsageError(f"--steps {text!r}: expected {option_form}")
    if min(parts) < 1:
        raise UsageError(f"--steps {text!r}: steps must be >= 1")
    return parts[0], parts[-1]
