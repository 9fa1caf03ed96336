"""Write deterministic imagebind_huge weights (the released layout) for benchmarks: a .pth and a model directory.

The released checkpoint cannot be downloaded everywhere; timings and memory do not depend on
the values, and `tests/detweights.py` makes the same tensors the parity fixtures use. With
`device="cuda"` the tensors are drawn on the GPU (seconds instead of minutes for 1.2 B
values): deterministic too, but not the CPU's values.

    python benchmarks/weights.py --root /tmp/bindspace-bench [--device cuda] [--no-pth]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from bindspace.fsio import atomic_path  # noqa: E402
from bindspace.model.checkpoint import MANIFEST, save_model_dir  # noqa: E402
from bindspace.model.imagebind import ImageBindModel  # noqa: E402
from bindspace.model.presets import get_config  # noqa: E402
from detweights import deterministic_tensor  # noqa: E402


def ensure_weights(root: Path, name: str = "imagebind_huge", *, device: str = "cpu",
                   pth: bool = True) -> tuple[Path, Path]:
    """Create `root/NAME/` (and `root/NAME.pth` when `pth`) once; return both paths."""
    pth_path, model_dir = root / f"{name}.pth", root / name
    if (pth_path.exists() or not pth) and (model_dir / MANIFEST).exists():
        return pth_path, model_dir
    root.mkdir(parents=True, exist_ok=True)
    config = get_config(name)
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in ImageBindModel(config).state_dict().items()}
    # Drawn on `device`, kept on the host: the writers below serialise from CPU memory.
    state = {k: deterministic_tensor(k, s, device=device).cpu() for k, s in shapes.items()}
    if pth:
        with atomic_path(pth_path) as tmp:
            torch.save(state, tmp)
    save_model_dir(state, config, model_dir)
    return pth_path, model_dir


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="/tmp/bindspace-bench", type=Path)
    parser.add_argument("--model", default="imagebind_huge")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pth", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    print(*ensure_weights(args.root, args.model, device=args.device, pth=args.pth))
