"""Write deterministic imagebind_huge weights (the released layout) for benchmarks: a .pth and a model directory.

The released checkpoint cannot be downloaded everywhere; timings and memory do not depend on
the values, and `tests/detweights.py` makes the same tensors the parity fixtures use.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bindspace.model.checkpoint import save_model_dir  # noqa: E402
from bindspace.model.imagebind import ImageBindModel  # noqa: E402
from bindspace.model.presets import get_config  # noqa: E402
from detweights import deterministic_tensor  # noqa: E402


def ensure_weights(root: Path, name: str = "imagebind_huge") -> tuple[Path, Path]:
    """Create `root/NAME.pth` and `root/NAME/` once; return both paths."""
    pth, model_dir = root / f"{name}.pth", root / name
    if pth.exists() and (model_dir / "manifest.json").exists():
        return pth, model_dir
    root.mkdir(parents=True, exist_ok=True)
    config = get_config(name)
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in ImageBindModel(config).state_dict().items()}
    state = {k: deterministic_tensor(k, s) for k, s in shapes.items()}
    tmp = pth.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.rename(pth)
    save_model_dir(state, config, model_dir)
    return pth, model_dir


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default="/tmp/bindspace-bench", type=Path)
    args = parser.parse_args()
    print(*ensure_weights(args.root))
