"""Helpers several test folders share: a spawned `bindspace serve` process, free ports, the library's own
embedding of a file (what a served or indexed vector must equal), and a real index of fixture media.

`tests/conftest.py` puts this folder on sys.path, so tests import it as `testkit`.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_env(**extra: str) -> dict[str, str]:
    """This process's environment for a spawned server: unbuffered, without the API keys a developer may export."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    for key in ("BINDSPACE_API_KEY", "BINDSPACE_READ_KEY"):
        env.pop(key, None)
    return env


@dataclass
class ServeProcess:
    """A running `bindspace serve`; `output` (stdout and stderr) and `returncode` are set once it stopped."""

    base: str
    port: int
    process: subprocess.Popen
    log_path: Path
    output: str = ""
    returncode: int | None = None

    def log(self) -> str:
        """What the server wrote so far."""
        return self.log_path.read_text(errors="replace")


@contextmanager
def spawned_serve(args: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
                  ready_s: float | None = 120.0, command: Sequence[str] | None = None) -> Iterator[ServeProcess]:
    """`bindspace serve ARGS --port P` as a process; waits until /readyz answers 200 (unless `ready_s` is None).

    Output goes to a file, never a pipe (a full pipe would block the server). On exit the server
    gets SIGINT (a clean stop), and is killed if it does not stop within 30 s.
    """
    port = free_port()
    prefix = list(command) if command is not None else [sys.executable, "-m", "bindspace.cli"]
    with tempfile.TemporaryDirectory(prefix="bindspace-serve-") as folder:
        log_path = Path(folder) / "server.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen([*prefix, "serve", *args, "--port", str(port)], cwd=cwd,
                                       env=dict(env) if env is not None else serve_env(), stdout=log, stderr=log)
        server = ServeProcess(f"http://127.0.0.1:{port}", port, process, log_path)
        try:
            if ready_s is not None:
                _wait_ready(server, ready_s)
            yield server
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            server.returncode = process.returncode
            server.output = server.log()


def _wait_ready(server: ServeProcess, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(server.base + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if server.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"server did not become ready: {server.log()[-2000:]}")
        time.sleep(0.2)


def post_json(url: str, body: Any, *, headers: Mapping[str, str] | None = None, timeout: float = 60) -> Any:
    """POST `body` as JSON with urllib (no client library between the test and the wire); the decoded answer."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


# ---------------------------------------------------------------- expected vectors


def embedded(model: Any, kind: str, path: Path) -> np.ndarray:
    """The library's embedding of a file at the model's own geometry: loader + encode, no server or index."""
    from bindspace.embedding.loading import geometry, item_loader
    from bindspace.kinds import tower_of

    tower = tower_of(kind)
    x = item_loader(kind)(str(path), **geometry(kind, model.tower_config(tower)))
    with torch.inference_mode():
        return model.encode(tower, x[None])[0].numpy()


def embedded_text(model: Any, text: str) -> np.ndarray:
    """The library's embedding of one text."""
    from bindspace.preprocess.tokenizer import tokenize

    with torch.inference_mode():
        return model.encode("text", tokenize([text]))[0].numpy()


# ---------------------------------------------------------------- a real index


def lance_index_of(db: Path, files: Mapping[Path, str], vectors: Mapping[Path, np.ndarray], checkpoint: Path,
                   model: str = "imagebind_tiny_test", dim: int = 24) -> Any:
    """A LanceDB index at `db` of `files` (path -> kind) with the given vectors, bound to `checkpoint`'s weights."""
    import bindspace.index.store as store_mod
    from bindspace.index import open_store

    checksum = store_mod.model_fingerprint(checkpoint=checkpoint)
    store = open_store(db, create=True)
    store.bind_model(store_mod.ModelInfo(model, checksum, dim, checkpoint=str(checkpoint)))
    items = []
    for path, kind in files.items():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        items.append(store_mod.Item(
            id=store_mod.item_id(str(path), digest), uri=str(path), modality=kind, content_hash=digest,
            size=path.stat().st_size, mtime=os.path.getmtime(path), segment_start=None, segment_end=None,
            model=model, model_checksum=checksum, vector=np.asarray(vectors[path])))
    store.add(items)
    return store


def packed_towers(model: Any) -> set[str]:
    """The towers with at least one linear on packed GEMM weights (`layers.packed_linear`)."""
    from bindspace.layers.packed_linear import PackedLinear

    return {name.split(".")[1] for name, module in model.named_modules()
            if isinstance(module, PackedLinear) and name.startswith("modality_trunks.")}
