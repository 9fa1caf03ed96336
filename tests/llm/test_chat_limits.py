"""Chat prompts are checked before any work: size, the LM's context, media markers, `n`, media-only messages."""
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
from bindspace.model import create_model
from bindspace.serve import Limits, create_app
from bindspace.serve.chat import router

LONG = "what is this ? " * 30  # 120 word tokens: over the 64-position test LM by itself


@pytest.fixture(scope="module")
def bridge(llama_dir, encoder_dir) -> Bridge:
    torch.manual_seed(3)
    lm = load_language_model(llama_dir)
    projector = Projector(ProjectorConfig("linear", tokens=2, in_dim=16, out_dim=32))
    projector.start_among(lm.model.get_input_embeddings().weight)
    template = PromptTemplate(text="question : {prompt} answer :")
    return Bridge(create_model(checkpoint=encoder_dir), projector, lm, template,
                  space_of(encoder_dir, "llm_test_encoder", 16))


@pytest.fixture(scope="module")
def http(bridge):
    app = create_app(bridge.encoder, routers=[router], limits=Limits(max_text_chars=2000),
                     extras={"bridge": bridge, "bridge_name": "tiny"})
    with TestClient(app) as client:
        yield client


def client(http) -> openai.OpenAI:
    return openai.OpenAI(base_url="http://testserver/v1", api_key="none", http_client=http, max_retries=0)


def audio_part(media) -> Any:
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(media["audio"].read_bytes()).decode(),
                                                   "format": "wav"}}


def test_the_lm_reports_its_positions(bridge):
    assert bridge.lm.max_positions == 64


def test_a_prompt_over_the_context_is_an_openai_400(http):
    with pytest.raises(openai.BadRequestError) as caught:
        client(http).chat.completions.create(model="x", max_tokens=4, messages=[{"role": "user", "content": LONG}])
    body = caught.value.body
    assert isinstance(body, dict) and set(body) >= {"message", "type", "param", "code"}  # the client unwraps "error"
    assert body["code"] == "context_length_exceeded" and "64 positions" in body["message"]


def test_prompt_plus_max_tokens_over_the_context_is_refused_but_the_default_fits(http, bridge):
    question = "what is this ?"
    with pytest.raises(openai.BadRequestError, match="64 positions"):
        client(http).chat.completions.create(model="x", max_tokens=60, messages=[{"role": "user", "content": question}])
    reply = client(http).chat.completions.create(model="x", messages=[{"role": "user", "content": question}])
    assert reply.usage is not None and reply.usage.total_tokens <= 64


def test_the_question_is_capped_like_other_texts(http):
    with pytest.raises(openai.APIStatusError) as caught:
        client(http).chat.completions.create(model="x", messages=[{"role": "user", "content": "a" * 2001}])
    assert caught.value.status_code == 413 and "2001 characters" in str(caught.value)


def test_more_than_one_choice_is_refused_not_ignored(http):
    with pytest.raises(openai.BadRequestError, match="n=1") as caught:
        client(http).chat.completions.create(model="x", n=2, messages=[{"role": "user", "content": "what ?"}])
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "n"


def test_a_media_only_message_is_answered(http, bridge, media):
    expected = bridge.generate("", [("audio", media["audio"])], max_new_tokens=4)
    reply = client(http).chat.completions.create(model="x", max_tokens=4, messages=[
        {"role": "user", "content": [audio_part(media)]}])
    assert reply.choices[0].message.content == expected


def test_markers_are_checked_before_the_media_are_embedded(http, media, monkeypatch):
    pipeline = http.app.state.bindspace.pipeline
    calls: list[str] = []

    async def spy(kind, items, names=None, **options):
        calls.append(kind)
        raise AssertionError("media embedded before the prompt was checked")

    monkeypatch.setattr(pipeline, "embed_base64", spy)
    with pytest.raises(openai.BadRequestError, match="2 <media> markers but 1"):
        client(http).chat.completions.create(model="x", messages=[
            {"role": "user", "content": [audio_part(media), {"type": "text", "text": "<media> <media> ?"}]}])
    assert calls == []


@pytest.fixture(scope="module")
def bridge_dir(bridge, tmp_path_factory):
    return save_bridge(bridge, tmp_path_factory.mktemp("bridge") / "bridge")


def test_cli_refuses_a_question_over_the_context_with_one_line(bridge_dir, capsys):
    code = main(["chat", "--bridge", str(bridge_dir), "--max-new-tokens", "8", LONG])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert code == 2 and captured.out == ""
    assert len(err) == 1 and "64 positions" in err[0]


def test_cli_checks_markers_before_loading_anything(tmp_path, media, capsys):
    # The bridge directory does not exist: the marker mismatch must be found first.
    code = main(["chat", "--bridge", str(tmp_path / "missing"), "--audio", str(media["audio"]), "<media> <media> ?"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "2 <media> markers but 1" in err[0]
