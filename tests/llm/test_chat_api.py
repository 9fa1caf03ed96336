"""POST /v1/chat/completions through the official `openai` client: media parts in, the bridge's answer out."""
from __future__ import annotations

import base64
from typing import Any

import openai
import pytest
import torch
from fastapi.testclient import TestClient

from bindspace.llm.bridge import Bridge
from bindspace.llm.bridge_dir import save_bridge
from bindspace.llm.lm import load_language_model
from bindspace.llm.projector import Projector, ProjectorConfig
from bindspace.llm.space import space_of
from bindspace.llm.template import PromptTemplate
from bindspace.model import create_model
from bindspace.serve import create_app
from bindspace.serve.chat import router

PROMPT = "<media> and <media> what is this ?"


@pytest.fixture(scope="module")
def served(llama_dir, encoder_dir):
    """An app serving the encoder with a bridge (random projector, 2 soft tokens) and a read key."""
    encoder = create_model(checkpoint=encoder_dir)
    torch.manual_seed(3)
    projector = Projector(ProjectorConfig("linear", tokens=2, in_dim=16, out_dim=32))
    projector.start_among(load_language_model(llama_dir).model.get_input_embeddings().weight)
    template = PromptTemplate(text="question : {prompt} answer :")
    bridge = Bridge(encoder, projector, load_language_model(llama_dir), template,
                    space_of(encoder_dir, "llm_test_encoder", 16))
    app = create_app(encoder, read_key="reader", routers=[router], extras={"bridge": bridge, "bridge_name": "tiny"})
    with TestClient(app) as http:
        yield bridge, http


def user(content: Any) -> Any:
    """A user message (typed loosely: the bindspace-only `input_media` part is not in openai's types)."""
    return {"role": "user", "content": content}


def client(http, key: str = "reader") -> openai.OpenAI:
    return openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=http, max_retries=0)


def b64(path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def parts(media, question: str = PROMPT) -> Any:
    return [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(media["image"])}},
        {"type": "input_audio", "input_audio": {"data": b64(media["audio"]), "format": "wav"}},
        {"type": "text", "text": question},
    ]


def test_answer_equals_the_bridge_answer(served, media):
    bridge, http = served
    expected = bridge.generate(PROMPT, [("image", media["image"]), ("audio", media["audio"])], max_new_tokens=6)
    reply = client(http).chat.completions.create(
        model="anything", max_tokens=6, messages=[{"role": "system", "content": "be brief"}, user(parts(media))])
    choice = reply.choices[0]
    assert expected  # a random LM still says something: the comparison below is not between empty strings
    assert choice.message.role == "assistant" and choice.message.content == expected
    assert choice.finish_reason in ("stop", "length") and reply.object == "chat.completion" and reply.model == "tiny"
    assert reply.usage is not None and reply.usage.prompt_tokens == len(bridge.encode(PROMPT, 2).ids)
    assert reply.usage.completion_tokens <= 6


def test_streaming_sends_the_same_answer_in_chunks(served, media):
    bridge, http = served
    expected = bridge.generate(PROMPT, [("image", media["image"]), ("audio", media["audio"])], max_new_tokens=6)
    stream = client(http).chat.completions.create(model="x", max_tokens=6, stream=True,
                                                  messages=[user(parts(media))])
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == expected
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_any_modality_part_and_a_missing_tower(served, media):
    _, http = served
    depth = {"type": "input_media", "input_media": {"modality": "depth", "data": b64(media["depth"])}}
    with pytest.raises(openai.BadRequestError, match="no depth tower"):
        client(http).chat.completions.create(model="x", messages=[
            user([depth, {"type": "text", "text": "what is this?"}])])


def test_undecodable_media_names_the_part(served, media):
    _, http = served
    broken = {"type": "input_audio", "input_audio": {"data": b64(media["broken"]), "format": "wav"}}
    with pytest.raises(openai.BadRequestError, match=r"messages\[0\]\.content\[0\]"):
        client(http).chat.completions.create(model="x", messages=[
            user([broken, {"type": "text", "text": "what is this?"}])])


def test_remote_urls_are_not_fetched_and_markers_must_match(served, media):
    _, http = served
    remote = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    with pytest.raises(openai.BadRequestError, match="not fetched"):
        client(http).chat.completions.create(model="x", messages=[
            user([remote, {"type": "text", "text": "what?"}])])
    with pytest.raises(openai.BadRequestError, match="3 <media> markers but 2"):
        client(http).chat.completions.create(model="x", messages=[
            user(parts(media, "<media> <media> <media> ?"))])


def test_the_read_key_is_required(served, media):
    _, http = served
    with pytest.raises(openai.AuthenticationError):
        client(http, key="wrong").chat.completions.create(model="x", messages=[user("hi")])


def test_serving_a_bridge_needs_the_served_model_to_be_its_space(served, tmp_path, other_encoder_dir):
    from bindspace.errors import CheckpointError
    from bindspace.index.fingerprint import model_fingerprint
    from bindspace.serve.chat import bridge_encoder, bridge_extras

    bridge, _ = served
    folder = save_bridge(bridge, tmp_path / "bridge")
    assert bridge_encoder(str(folder)) == bridge.space.checkpoint
    extras = bridge_extras(str(folder), bridge.encoder, bridge.space.fingerprint)
    assert extras["bridge"].encoder is bridge.encoder and extras["bridge_name"] == "llama"
    other = create_model(checkpoint=other_encoder_dir)
    with pytest.raises(CheckpointError, match="another embedding space"):
        bridge_extras(str(folder), other, model_fingerprint(None, other_encoder_dir))
