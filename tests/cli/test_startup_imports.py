"""What a command with little to do imports (issue 21 item 9; the timings are in benchmarks/startup.py).

An unchanged re-index must load neither torch nor LanceDB (seconds each at start-up); a search
loads torch for its text tower but not LanceDB, no torch._dynamo (nothing is compiled), and for a
text query none of the media decoders (Pillow, PyAV, soundfile). Each command runs in a fresh
interpreter, as a user's does; the `bindspace` process itself (`python -m bindspace.cli`) exits
without collecting what it imported, and must still print everything.
"""
from __future__ import annotations

import gc
import json
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("lancedb")

from bindspace.cli import main  # noqa: E402

WATCHED = ("torch", "torch._dynamo", "sympy", "lancedb", "lance", "PIL", "av", "soundfile")
RUN = ("import json, sys\nfrom bindspace.cli import main\ncode = main(sys.argv[1:])\n"
       f"print(json.dumps({{'code': code, 'loaded': [m for m in {WATCHED!r} if m in sys.modules]}}))")


def _run(*args: str) -> tuple[dict, str, str]:
    """(exit code and watched modules loaded, the command's stdout, stderr) of one fresh `bindspace` process."""
    done = subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, text=True, timeout=300)
    *printed, last = done.stdout.strip().splitlines()
    return json.loads(last), "\n".join(printed), done.stderr


@pytest.mark.slow
def test_unchanged_reindex_and_search_load_only_what_they_need(tmp_path, media_dir, tiny_model_dir, capsys):
    folder = tmp_path / "media"
    folder.mkdir()
    for name in ("image_1.jpg", "image_3.png", "audio_1.wav", "imu_1.npy"):
        shutil.copy(media_dir / name, folder / name)
    db = str(tmp_path / "db")
    assert main(["index", str(folder), "--db", db, "--checkpoint", str(tiny_model_dir), "--workers", "0",
                 "--no-progress"]) == 0
    assert main(["search", "--db", db, "a dog", "-k", "3", "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    # A caller of main() gets its process back as it was: nothing left frozen out of the collector.
    assert gc.isenabled() and gc.get_freeze_count() == 0

    status, _, err = _run("index", str(folder), "--db", db, "--workers", "0", "--no-progress")
    assert status["code"] == 0 and "unchanged 4" in err, err
    assert status["loaded"] == ["lance"]  # the index is read with pylance; no model, no torch

    status, printed, err = _run("search", "--db", db, "a dog", "-k", "3", "--json")
    assert status["code"] == 0, err
    assert status["loaded"] == ["torch", "lance"]  # no media decoder for a text query
    assert json.loads(printed) == expected  # the same hits and scores as in this (fully loaded) process

    # The command as a user runs it: its own process, which skips tearing down torch at exit.
    done = subprocess.run([sys.executable, "-m", "bindspace.cli", "search", "--db", db, "a dog", "-k", "3", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert json.loads(done.stdout) == expected
