"""Start-up cost of the commands that have little to do: `search` on a small index, an unchanged re-index.

    python benchmarks/startup.py                 # 3 runs each, median wall time
    python benchmarks/startup.py --runs 5 --imports 15

Targets (issue 21, item 9): `bindspace search` on a small (10-item) index <= 3 s wall and a re-index
of an unchanged folder <= 3 s wall, on a 2-core machine. Every run is a fresh `python -m bindspace.cli`
process, as a user's command is; the model is the tiny preset saved as a model directory (random
weights: the cost measured is start-up, imports and index I/O, not the model). `--help` is timed
too (it must not import torch). With --imports N the slowest N top-level imports of one `search`
run (python -X importtime, cumulative) are listed, to see what to make lazy next. The last column
says which of the heavy packages each command imported (one extra -X importtime run each): an
unchanged re-index should import neither torch nor lancedb, a text search no lancedb, no
torch._dynamo and no media decoder (PIL, av, soundfile).

The CPU flags, core count and load average are printed with the table: on a shared machine the
load changes the wall figures far more than the code does. The CPU seconds (user + system of the
command) are what an idle machine's wall time comes close to (start-up is single-threaded), and
they move much less with the load. With PYTHONDONTWRITEBYTECODE set (as in the development
containers) bindspace's own modules are compiled on every run, about 0.05-0.1 s that an installed
package does not pay; the header says whether it was set.

Where a search's time goes (2026-12-03, AMD EPYC AVX2, 2 cores, load 1.5-2, CPU seconds): importing
torch about 1.0 s (its op registrations and decompositions; nothing a CPU inference can skip
without patching torch), pylance with pyarrow about 0.1 s, and pandas about 0.13 s: pandas is no
dependency of bindspace[index], but where it is installed (ray[data] brings it) pyarrow.dataset
imports it when it loads (its module init builds a scalar, and pyarrow then asks whether pandas is
importable; an environment without pandas ran the search in about 0.2 s less CPU). Fixed in issue 21
item 9, from 2.8-2.9 s to 2.0-2.1 s of CPU (5 runs each at load 2.0-2.4: main 2.65 s wall median,
2.78 s CPU; after 1.95 s wall, 2.07 s CPU; an unchanged re-index 0.69 -> 0.67 s): full garbage collections
over the ~210,000 objects of torch, pylance and pandas while they were imported (about 0.3 s) and again at exit (about
0.5 s), now skipped (cli/startup.py); Pillow, PyAV and soundfile imported though a text query
decodes nothing (about 0.15 s); the tokenizer decompressing its whole merges file for the fifth it
uses (0.04 s). A thread importing pylance while torch loads gained nothing (both need the GIL).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

MEDIA = ROOT / "tests" / "fixtures" / "media"
# What the last column reports.
HEAVY = ("torch", "torch._dynamo", "lancedb", "lance", "pandas", "PIL", "av", "soundfile")
FLAGS = ("sse4_2", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "asimd", "sve")


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "bindspace.cli", *args]


def environment() -> dict[str, str]:
    env = dict(os.environ, BINDSPACE_DTYPE="float32")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one command (it must succeed)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def heavy_imports(args: list[str], env: dict[str, str]) -> str:
    """Which of HEAVY one run of the command imports."""
    done = subprocess.run([args[0], "-X", "importtime", *args[1:]], env=env, capture_output=True, text=True)
    loaded = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    return ", ".join(name for name in HEAVY if name in loaded) or "none of them"


def slowest_imports(args: list[str], env: dict[str, str], count: int) -> list[tuple[float, str]]:
    """The `count` slowest top-level imports (cumulative seconds) of one run."""
    done = subprocess.run([args[0], "-X", "importtime", *args[1:]], env=env, capture_output=True, text=True)
    found = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        if cumulative.strip().isdigit() and not name.startswith("  "):  # top level: nothing nested
            found.append((int(cumulative) / 1e6, name.strip()))
    return sorted(found, reverse=True)[:count]


def setup(work: Path) -> tuple[Path, Path, Path]:
    """(model directory, media folder, index) with the fixture media indexed once."""
    from bindspace import create_model
    from bindspace.model.checkpoint import save_model_dir
    from bindspace.model.presets import get_config

    name = "imagebind_tiny_test"
    model = create_model(name)
    model_dir = save_model_dir(model.state_dict(), get_config(name), work / "model")
    media = work / "media"
    shutil.copytree(MEDIA, media)
    (media / "texts.json").unlink()
    db = work / "db"
    timed(command("index", str(media), "--db", str(db), "--checkpoint", str(model_dir), "--workers", "0",
                  "--no-progress"), environment())
    return model_dir, media, db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per command (median reported)")
    parser.add_argument("--imports", type=int, default=0, metavar="N", help="list the N slowest imports of search")
    args = parser.parse_args()

    from bindspace.precision import cpu_flags

    have = cpu_flags()
    env = environment()
    with tempfile.TemporaryDirectory(prefix="bindspace-startup-") as tmp:
        _, media, db = setup(Path(tmp))
        items = len([p for p in media.iterdir() if p.is_file()])
        cases = {
            "bindspace --help": command("--help"),
            f"search, {items}-item index, -k 3": command("search", "--db", str(db), "a dog", "-k", "3"),
            f"index, {items} unchanged files": command("index", str(media), "--db", str(db), "--workers", "0",
                                                       "--no-progress"),
        }
        load_before = os.getloadavg()
        rows = []
        for label, args_ in cases.items():
            runs = [timed(args_, env) for _ in range(args.runs)]
            walls = [wall for wall, _ in runs]
            rows.append((label, statistics.median(walls), min(walls), max(walls),
                         statistics.median(cpu for _, cpu in runs), heavy_imports(args_, env)))
        load_after = os.getloadavg()
        imports = slowest_imports(cases[f"search, {items}-item index, -k 3"], env, args.imports) if args.imports else []

    print(f"CPU flags: {' '.join(f for f in FLAGS if f in have) or '(none of the listed)'}; "
          f"{os.cpu_count()} cores; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    bytecode = "not cached (PYTHONDONTWRITEBYTECODE)" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "cached"
    print(f"Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d %H:%M')}, {args.runs} runs each, "
          f"bindspace bytecode {bytecode}\n")
    print("| command | wall s, median | min | max | CPU s (user+sys), median | imports |\n|---|---|---|---|---|---|")
    for label, median, low, high, cpu, heavy in rows:
        print(f"| {label} | {median:.2f} | {low:.2f} | {high:.2f} | {cpu:.2f} | {heavy} |")
    if imports:
        print("\nslowest top-level imports of one search run (cumulative):")
        for seconds, name in imports:
            print(f"  {seconds:6.2f} s  {name}")


if __name__ == "__main__":
    main()
