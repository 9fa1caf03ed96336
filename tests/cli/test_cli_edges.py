"""What a new user hits at the command line's edges (issue 21): each through the real command."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bindspace.cli import main

TINY = "imagebind_tiny_test"
SRC = Path(__file__).resolve().parents[2] / "src"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


# ---------------------------------------------------------------------------- 1. a folder as a media file

@pytest.mark.parametrize("command", [
    ["search", "--db", "nowhere"],
    ["generate", "--pipeline", "nowhere", "-o", "x.png"],
    ["chat", "what is this?", "--bridge", "nowhere"],
])
def test_a_folder_given_as_a_media_file_says_so(command, tmp_path, capsys, no_model_load):
    folder = tmp_path / "adir"
    folder.mkdir()
    assert main([*command, "--audio", str(folder)]) == 1
    assert one_error_line(capsys).endswith(f"{folder}: is a directory, not a file (--audio)")
    assert no_model_load == []


# ---------------------------------------------------------------------------- 2. serve on a taken port

def test_serve_on_a_taken_port_fails_before_loading(tmp_path, capsys, no_model_load, tiny_pth):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", "--model", TINY, "--checkpoint", str(tiny_pth), "--port", str(port)])
    assert code == 1
    line = one_error_line(capsys)
    assert f"127.0.0.1:{port}/: port {port} is already in use" in line and "--port" in line
    assert no_model_load == []


# ---------------------------------------------------------------------------- 3. | head

def run_with_closed_stdout(*args: str) -> subprocess.CompletedProcess:
    """The command with a stdout whose reader is gone (what `| head` leaves once it has its lines)."""
    read, write = os.pipe()
    os.close(read)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    try:
        return subprocess.run([sys.executable, "-m", "bindspace.cli", *args], stdout=write, stderr=subprocess.PIPE,
                              text=True, env=env, timeout=600)
    finally:
        os.close(write)


def test_output_closed_early_is_a_quiet_exit():
    done = run_with_closed_stdout("train", "--recipe", "audioset")
    assert done.stderr == ""  # no BrokenPipeError traceback, no "Exception ignored" at exit
    assert done.returncode == 141  # 128 + SIGPIPE, as a Unix tool killed by it


@pytest.mark.slow
def test_search_and_index_json_into_a_closed_pipe(tmp_path, media_dir, tiny_pth):
    media = tmp_path / "media"
    media.mkdir()
    for name in ("image_1.jpg", "image_2.png", "audio_1.wav"):
        shutil.copy(media_dir / name, media / name)
    db = tmp_path / "db"
    index = ["index", str(media), "--db", str(db), "--model", TINY, "--checkpoint", str(tiny_pth), "--workers", "0",
             "--json"]
    for args in (index, ["search", "--db", str(db), "a dog", "--json"]):
        done = run_with_closed_stdout(*args)
        assert (done.returncode, done.stderr) == (141, "")


# ---------------------------------------------------------------------------- 4, 5. outputs

def embed_text(output: str) -> list[str]:
    return ["embed", "--modality", "text", "a dog", "-o", output, "--model", TINY]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_an_output_on_a_file_system_without_files_says_why(capsys, no_model_load):
    assert main(embed_text("/proc/x.npy")) == 1
    line = one_error_line(capsys)
    assert "/proc: cannot write the output there (this file system does not allow creating files)" in line
    assert "No such file" not in line


def test_a_missing_folder_of_an_output_file_is_an_error(tmp_path, capsys, no_model_load):
    missing = tmp_path / "nonexistent" / "dir"
    assert main(embed_text(str(missing / "x.npy"))) == 1
    assert f"{missing}: no such directory" in one_error_line(capsys)
    assert main(["generate", "--pipeline", "nowhere", "a dog", "-o", str(missing / "x.png")]) == 1
    assert f"{missing}: no such directory" in one_error_line(capsys)
    assert not (tmp_path / "nonexistent").exists()  # nothing created on the way


def test_an_output_folder_option_creates_one_level_only(tmp_path, capsys, no_model_load, media_dir):
    deep = tmp_path / "a" / "b" / "db"
    assert main(["index", str(media_dir), "--db", str(deep), "--model", TINY]) == 1
    assert f"{tmp_path / 'a' / 'b'}: no such directory (only the last folder of the index" in one_error_line(capsys)
    assert not (tmp_path / "a").exists()
    assert main(["demo", "llm", "--out", str(tmp_path / "x" / "demo")]) == 1
    assert f"{tmp_path / 'x'}: no such directory" in one_error_line(capsys)


# ---------------------------------------------------------------------------- 8. FFmpeg's errno

def test_a_bad_audio_file_is_one_plain_sentence(tmp_path, capsys, tiny_pth):
    bad = tmp_path / "noise.wav"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    code = main(["embed", "--modality", "audio", str(bad), "-o", str(tmp_path / "a.npy"), "--model", TINY,
                 "--checkpoint", str(tiny_pth), "--workers", "0"])
    assert code == 1
    line = one_error_line(capsys)
    assert f"{bad}: not a readable audio file (Invalid data found when processing input)" in line
    assert "Errno" not in line and "'" not in line


# ---------------------------------------------------------------------------- 10, 11. index

@pytest.fixture()
def media_with_own_index(tmp_path, media_dir) -> tuple[Path, Path]:
    pytest.importorskip("lancedb")
    media = tmp_path / "photos"
    media.mkdir()
    for name in ("image_1.jpg", "image_2.png", "image_3.png", "depth_1.png", "thermal_1.png"):
        shutil.copy(media_dir / name, media / name)
    return media, media / "index.db"


def index_json(capsys, media: Path, db: Path, tiny_pth: Path, *extra: str) -> dict:
    capsys.readouterr()
    assert main(["index", str(media), "--db", str(db), "--model", TINY, "--checkpoint", str(tiny_pth),
                 "--workers", "0", "--batch-size", "1", "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_ctrl_c_says_what_was_kept_and_rerunning_continues(media_with_own_index, capsys, monkeypatch, tiny_pth):
    from bindspace.index import indexer

    media, db = media_with_own_index
    real = indexer.LocalRunner.outcomes

    def interrupted_after_two(self, tasks, seconds):
        for done, outcome in enumerate(real(self, tasks, seconds)):
            if done == 2:
                raise KeyboardInterrupt
            yield outcome

    monkeypatch.setattr(indexer.LocalRunner, "outcomes", interrupted_after_two)
    code = main(["index", str(media), "--db", str(db), "--model", TINY, "--checkpoint", str(tiny_pth),
                 "--workers", "0", "--batch-size", "1", "--no-progress"])
    assert code == 130
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == (f"bindspace index: interrupted; {db} keeps 2 items (+2 in this run: every batch committed "
                    "before the interrupt); run the same command again to continue where it stopped")
    monkeypatch.undo()
    again = index_json(capsys, media, db, tiny_pth)
    assert (again["added"], again["unchanged"], again["items"]) == (3, 2, 5)


def test_an_index_inside_the_folder_is_not_indexed(media_with_own_index, capsys, tiny_pth):
    media, db = media_with_own_index
    first = index_json(capsys, media, db, tiny_pth)
    assert first["added"] == 5
    again = index_json(capsys, media, db, tiny_pth)
    assert (again["unchanged"], again["not_media"], again["skipped"]) == (5, [], [])


def test_an_unchanged_reindex_loads_no_model(media_with_own_index, capsys, tiny_pth, monkeypatch):
    media, db = media_with_own_index
    index_json(capsys, media, db, tiny_pth)
    import bindspace.model

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded with nothing to embed")

    monkeypatch.setattr(bindspace.model, "create_model", refuse)
    assert index_json(capsys, media, db, tiny_pth)["unchanged"] == 5


def test_an_array_that_is_no_map_says_why_it_was_not_taken(media_with_own_index, capsys, tiny_pth):
    media, db = media_with_own_index
    np.save(media / "embeddings.npy", np.ones((1, 64), np.float32))  # what `bindspace embed -o x.npy` writes
    np.save(media / "depth_map.npy", np.ones((48, 64), np.float32))
    out = index_json(capsys, media, db, tiny_pth)
    assert out["added"] == 6  # the 48 x 64 map is depth
    assert out["skipped"] == [{"path": str(media / "embeddings.npy"), "reason":
                               "a (1, 64) array is neither a depth map (H x W, both sides >= 8, at most 4:1) nor "
                               "IMU (6 x T); put it in a folder named depth/, thermal/ or imu/ to index it as one "
                               "(embeddings and other arrays are not media)"}]


# ---------------------------------------------------------------------------- 12. the README's demo output

def test_the_demo_model_folder_is_ignored_by_git():
    root = Path(__file__).resolve().parents[2]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    done = subprocess.run(["git", "-C", str(root), "check-ignore", "-q", "demo-model/model.safetensors"])
    assert done.returncode == 0, "demo-model/ (README: bindspace demo --out demo-model) is not ignored"


# ---------------------------------------------------------------------------- 13. --help

def help_text(capsys, *command: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines: compare words


def test_help_texts(capsys):
    from bindspace.llm.demo import LlmDemoSettings
    from bindspace.train.recipes import RECIPES

    serve = help_text(capsys, "serve")
    assert "--log-level {critical,error,warning,info,debug} uvicorn's log level" in serve
    assert "(default: info)" in serve
    assert "torch threads for the model (default: torch's own choice" in serve
    assert "exit status: 0 stopped cleanly" in serve
    defaults = LlmDemoSettings()
    assert f"(default: {defaults.lm_steps},{defaults.bridge_steps})" in help_text(capsys, "demo", "llm")
    assert "preset the checkpoint belongs to (default: imagebind_huge)" in help_text(capsys, "convert")
    recipes = help_text(capsys, "train")
    assert "llm" in RECIPES and f"print a recipe's config ({', '.join(RECIPES)})" in recipes
    assert "real ImageBind weights" not in help_text(capsys, "embed")
    assert "--dtype {auto,float32,bfloat16,float16,int8} the weights of the encoder, projector and LM; default auto" \
        in help_text(capsys, "chat")


def test_the_llm_recipe_is_a_valid_config(capsys, tmp_path):
    assert main(["train", "--recipe", "llm"]) == 0
    recipe = tmp_path / "bridge.toml"
    recipe.write_text(capsys.readouterr().out)
    assert 'kind = "llm"' in recipe.read_text()
    code = main(["train", str(recipe), "--check"])
    out = capsys.readouterr()
    assert code == 0, out.err
    config = json.loads(out.out)
    assert config["kind"] == "llm" and config["llm"]["projector"]["kind"] == "linear"


def test_chat_dtype_defaults_to_auto_like_every_command(tmp_path, monkeypatch):
    from bindspace.cli import build_parser

    args = build_parser().parse_args(["chat", "q", "--bridge", str(tmp_path)])
    assert args.dtype == "auto"
    embed = build_parser().parse_args(["embed", "--modality", "text", "-o", "x.npy"])
    assert embed.dtype == args.dtype
