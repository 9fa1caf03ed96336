"""kill -9 a real `bindspace index` mid-run, rerun: every committed file once, the rest resumed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bindspace.index import open_store
from bindspace.index.indexer import ENV_COMMIT_PAUSE
from bindspace.integrity import sha256_file

TINY = "imagebind_tiny_test"
GOOD = 12


def index_cmd(root: Path, db: Path, ckpt: Path) -> list[str]:
    return [sys.executable, "-m", "bindspace.cli", "index", str(root), "--db", str(db), "--model", TINY,
            "--checkpoint", str(ckpt), "--batch-size", "2", "--workers", "0", "--no-progress", "--ann", "no"]


def start(cmd: list[str], pause: float) -> subprocess.Popen:
    env = {**os.environ, ENV_COMMIT_PAUSE: str(pause)}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def rows(db: Path) -> int:
    try:
        return open_store(db).count()
    except Exception:  # noqa: BLE001 - the table may not exist yet
        return 0


def kill_when(proc: subprocess.Popen, db: Path, condition, timeout: float = 120.0) -> None:
    """SIGKILL the process as soon as condition(rows) holds; it must still be running then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"indexer finished before it could be killed: {proc.communicate()[1]!r}"
        if condition(rows(db)):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            assert proc.returncode == -signal.SIGKILL
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the indexer made no progress")


def check_exactly_once(db: Path, root: Path, expected: int) -> None:
    store = open_store(db)
    by_uri = store.items_by_uri()
    assert store.count() == expected == len(by_uri)
    for uri, items in by_uri.items():
        assert len(items) == 1, uri
        assert items[0].content_hash == sha256_file(uri)  # the current content, not a stale version
    assert store.dedupe() == 0


@pytest.mark.slow
def test_kill_9_mid_run_then_rerun(tmp_path, media, tiny_pth):
    for i in range(GOOD):
        media.image(f"img{i:02d}.png", seed=i)
    media.raw("corrupt.jpg", b"\xff\xd8\xff\xe0 not really a jpeg")
    media.raw("empty.wav", b"")
    db = tmp_path / "db"
    cmd = index_cmd(media.root, db, tiny_pth)

    # 1. killed in the middle of the first run, after some batches were committed
    proc = start(cmd, pause=0.4)
    kill_when(proc, db, lambda n: 2 <= n < GOOD)
    committed = rows(db)
    assert 2 <= committed < GOOD

    # 2. the rerun keeps what was committed and embeds only the rest
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"added {GOOD - committed}, updated 0, removed 0, unchanged {committed}, skipped 2" in done.stderr
    check_exactly_once(db, media.root, GOOD)

    # 3. change files, kill while a batch's new rows are committed but the old ones not yet deleted
    for i in range(0, GOOD, 2):
        media.image(f"img{i:02d}.png", seed=100 + i)
    proc = start(cmd, pause=5.0)
    kill_when(proc, db, lambda n: n > GOOD)
    assert rows(db) > GOOD  # both versions of some files are in the table now

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    check_exactly_once(db, media.root, GOOD)
