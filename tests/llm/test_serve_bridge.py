"""`bindspace serve --bridge DIR`: the chat endpoint on the served model (uvicorn replaced by a test client)."""
from __future__ import annotations

import base64
from typing import Any

import openai
import pytest
import torch
from fastapi.testclient import TestClient

from bindspace.cli import main
from bindspace.llm.bridge import Bridge
from bindspace.llm.bridge_dir import save_bridge
from bindspace.llm.lm import load_language_model
from bindspace.llm.projector import Projector, ProjectorConfig
from bindspace.llm.space import space_of
from bindspace.llm.template import PromptTemplate


@pytest.fixture()
def bridge_dir(tmp_path, llama_dir, encoder_dir):
    torch.manual_seed(5)
    lm = load_language_model(llama_dir)
    projector = Projector(ProjectorConfig("linear", tokens=1, in_dim=16, out_dim=32))
    projector.start_among(lm.model.get_input_embeddings().weight)
    bridge = Bridge(None, projector, lm, PromptTemplate(text="question : {prompt} answer :"),
                    space_of(encoder_dir, "llm_test_encoder", 16))
    return save_bridge(bridge, tmp_path / "bridge")


@pytest.fixture()
def captured(monkeypatch):
    """The app `bindspace serve` would run, instead of running it."""
    apps: list[Any] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: apps.append(app))
    return apps


def test_serve_bridge_answers_like_chat(bridge_dir, media, captured, capsys):
    # No --checkpoint: the server loads the encoder the bridge names.
    assert main(["serve", "--bridge", str(bridge_dir), "--dtype", "float32"]) == 0
    assert main(["chat", "--bridge", str(bridge_dir), "--audio", str(media["audio"]), "--max-new-tokens", "5",
                 "what is this ?"]) == 0
    expected = capsys.readouterr().out.strip()
    with TestClient(captured[0]) as http:
        client = openai.OpenAI(base_url="http://testserver/v1", api_key="none", http_client=http, max_retries=0)
        audio = base64.b64encode(media["audio"].read_bytes()).decode()
        content: Any = [{"type": "input_audio", "input_audio": {"data": audio, "format": "wav"}},
                        {"type": "text", "text": "what is this ?"}]
        reply = client.chat.completions.create(model="x", max_tokens=5, messages=[{"role": "user", "content": content}])
    assert reply.choices[0].message.content == expected


def test_serve_refuses_a_bridge_from_another_space(bridge_dir, other_encoder_dir, captured, capsys):
    capsys.readouterr()
    code = main(["serve", "--bridge", str(bridge_dir), "--checkpoint", str(other_encoder_dir), "--dtype", "float32"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and captured == []
    assert len(err) == 1 and "another embedding space" in err[0]
