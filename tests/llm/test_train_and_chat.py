"""`bindspace train` with a kind = "llm" recipe, then `bindspace chat`; bad input is one line and exit 1."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bindspace.cli import main


def write_recipe(folder: Path, rows: Path, lm: Path, encoder: Path, *, steps: int = 4, lora: bool = False) -> Path:
    lora_section = '[llm.lora]\nrank = 2\ntargets = ["c_attn"]\n' if lora else ""
    text = f"""kind = "llm"
[llm]
model = {json.dumps(str(lm))}
encoder = {json.dumps(str(encoder))}
template = "question : {{prompt}} answer :"
[llm.projector]
kind = "linear"
tokens = 2
{lora_section}
[data]
train = [{json.dumps(str(rows))}]
num_workers = 0
on_error = "raise"
[run]
out_dir = {json.dumps(str(folder / "run"))}
steps = {steps}
batch_size = 2
save_every = 2
device = "cpu"
tensorboard = false
progress = false
[optim]
lr = 0.01
"""
    path = folder / "recipe.toml"
    path.write_text(text)
    return path


@pytest.fixture()
def trained(tmp_path, rows_file, gpt2_dir, encoder_dir) -> Path:
    """A bridge trained for 4 steps on a GPT-2 with LoRA (another architecture than the Llama elsewhere)."""
    recipe = write_recipe(tmp_path, rows_file, gpt2_dir, encoder_dir, lora=True)
    assert main(["train", str(recipe), "--quiet"]) == 0
    return tmp_path / "run" / "bridge"


def test_train_writes_a_bridge_and_metrics_and_caches_embeddings(trained, tmp_path, media, capsys):
    run = tmp_path / "run"
    assert sorted(p.name for p in trained.iterdir()) == ["adapter", "bridge.json", "projector.safetensors"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r][-1] == 4
    assert all("logit_scale" not in r for r in records)
    index = json.loads((run / "media_embeddings.json").read_text())
    assert sorted(kind for kind, _ in index["keys"]) == ["audio", "image"]  # each distinct file once


def test_a_second_run_reads_the_embedding_cache(tmp_path, rows_file, llama_dir, encoder_dir, media, monkeypatch):
    recipe = write_recipe(tmp_path, rows_file, llama_dir, encoder_dir, steps=2)
    assert main(["train", str(recipe), "--quiet"]) == 0
    calls = []
    import bindspace.embedding

    original = bindspace.embedding.Embedder.embed

    def counting(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(bindspace.embedding.Embedder, "embed", counting)
    assert main(["train", str(recipe), "--quiet", "--set", "run.resume=\"never\"", "--steps", "3"]) == 0
    assert calls == []  # every embedding came from the cache
    assert (tmp_path / "run" / "bridge" / "bridge.json").is_file()


def test_chat_streams_an_answer(trained, media, capsys):
    capsys.readouterr()
    code = main(["chat", "--bridge", str(trained), "--image", str(media["image"]), "--audio", str(media["audio"]),
                 "--max-new-tokens", "5", "<media> and <media> ?"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert out.out.endswith("\n") and len(out.out.splitlines()) == 1


@pytest.mark.parametrize("case, needle", [
    ("missing tower", "has no depth tower"),
    ("missing llm", "language model directory not found"),
    ("other space", "another embedding space"),
    ("undecodable", "broken.wav"),
    ("missing file", "nothere.png: no such file (--image)"),
    ("not a bridge", "not a bridge directory"),
])
def test_bad_input_is_one_line_and_exit_1(case, needle, trained, media, other_encoder_dir, tmp_path, capsys):
    args = {
        "missing tower": ["--depth", str(media["depth"])],
        "missing llm": ["--llm", str(tmp_path / "no-such-llm"), "--image", str(media["image"])],
        "other space": ["--checkpoint", str(other_encoder_dir), "--image", str(media["image"])],
        "undecodable": ["--audio", str(media["broken"])],
        "missing file": ["--image", str(tmp_path / "nothere.png")],
        "not a bridge": ["--image", str(media["image"])],
    }[case]
    bridge = str(tmp_path) if case == "not a bridge" else str(trained)
    capsys.readouterr()
    code = main(["chat", "--bridge", bridge, *args, "what is this?"])
    out = capsys.readouterr()
    assert code == 1
    assert out.out == ""
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("bindspace chat: error:"), out.err


def test_training_on_an_undecodable_file_writes_no_bridge(tmp_path, llama_dir, encoder_dir, media, capsys):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"media": [{"modality": "audio", "path": str(media["broken"])}], "prompt": "what?",
                                "response": "a sound"}) + "\n")
    recipe = write_recipe(tmp_path, rows, llama_dir, encoder_dir)
    capsys.readouterr()
    assert main(["train", str(recipe), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.wav" in err[0]
    assert not (tmp_path / "run" / "bridge").exists()


def test_recipe_errors_name_the_setting(tmp_path, rows_file, llama_dir, encoder_dir, capsys):
    recipe = write_recipe(tmp_path, rows_file, llama_dir, encoder_dir)
    recipe.write_text(recipe.read_text().replace('kind = "linear"', 'kind = "transformer"'))
    capsys.readouterr()
    assert main(["train", str(recipe), "--check"]) == 1
    err = capsys.readouterr().err
    assert "llm.projector.kind" in err and "'linear', 'mlp'" in err


@pytest.mark.parametrize("override, setting", [("optim.betas=[0.9, 1.5]", "optim.betas"),
                                               ("run.eval_every=-1", "run.eval_every"),
                                               ("run.batch_size=0", "run.batch_size")])
def test_llm_recipes_get_the_same_run_and_optim_checks_as_bind_recipes(
        tmp_path, rows_file, llama_dir, encoder_dir, capsys, override, setting):
    recipe = write_recipe(tmp_path, rows_file, llama_dir, encoder_dir)
    capsys.readouterr()
    assert main(["train", str(recipe), "--check", "--set", override]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{setting}:" in err[0]


def test_an_interrupted_run_resumes_to_the_same_bridge(tmp_path, rows_file, llama_dir, encoder_dir):
    from safetensors.torch import load_file

    import bindspace.llm.recipe  # noqa: F401  registers kind = "llm" with bindspace.train
    from bindspace.train import load_config, train

    def config(folder: Path):
        folder.mkdir(exist_ok=True)
        recipe = write_recipe(folder, rows_file, llama_dir, encoder_dir, steps=4)
        return load_config(recipe, ["llm.noise=0.3", "run.save_every=1"])

    whole = train(config(tmp_path / "a"))
    stopped = train(config(tmp_path / "b"), max_steps=2)
    assert stopped.result.stopped_early and stopped.model_dir is None
    assert not (tmp_path / "b" / "run" / "bridge").exists()  # nothing exported from a stopped run
    resumed = train(config(tmp_path / "b"))
    assert resumed.result.steps == 4 and resumed.model_dir is not None
    a = load_file(str(whole.model_dir / "projector.safetensors"))
    b = load_file(str(resumed.model_dir / "projector.safetensors"))
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)


def test_validation_rows_and_export_only(tmp_path, rows_file, llama_dir, encoder_dir, capsys):
    from safetensors.torch import load_file

    recipe = write_recipe(tmp_path, rows_file, llama_dir, encoder_dir, steps=2)
    val = f"num_workers = 0\nval = [{json.dumps(str(rows_file))}]"
    recipe.write_text(recipe.read_text().replace("num_workers = 0", val))
    capsys.readouterr()
    assert main(["train", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "eval: val_loss" in out and "response-token accuracy" in out and "bindspace chat --bridge" in out
    bridge = tmp_path / "run" / "bridge"
    trained = load_file(str(bridge / "projector.safetensors"))
    elsewhere = f"llm.bridge_dir={json.dumps(str(tmp_path / 'again'))}"
    assert main(["train", str(recipe), "--export-only", "--set", elsewhere]) == 0
    again = load_file(str(tmp_path / "again" / "projector.safetensors"))
    assert all(bool((trained[k] == again[k]).all()) for k in trained)
