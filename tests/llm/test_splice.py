"""The media splice: projected soft tokens replace the placeholder positions of the prompt's token embeddings."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bindspace.errors import InputError
from bindspace.llm.bridge import Bridge
from bindspace.llm.lm import load_language_model
from bindspace.llm.projector import Projector, ProjectorConfig
from bindspace.llm.template import PromptTemplate, splice


@pytest.fixture(scope="module")
def lm(llama_dir):
    return load_language_model(llama_dir)


def _bridge(lm, tokens: int, kind: str = "linear") -> Bridge:
    torch.manual_seed(0)
    projector = Projector(ProjectorConfig(kind, tokens=tokens, in_dim=16, out_dim=32))  # type: ignore[arg-type]
    return Bridge(None, projector, lm, PromptTemplate(text="question : {prompt} answer :"))


def _embed(lm, words: list[str]) -> torch.Tensor:
    ids = torch.tensor(lm.tokenizer.convert_tokens_to_ids(words))
    return lm.embed_tokens(ids)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_two_media_at_markers_with_two_soft_tokens_each(lm, kind):
    bridge = _bridge(lm, tokens=2, kind=kind)
    media = F.normalize(torch.randn(2, 16), dim=-1)
    with torch.no_grad():
        got = bridge.prompt_embeds("<media> and <media> ?", media)[0]
        soft = bridge.projector(media)  # (2 items, 2 tokens, 32)
        expected = torch.cat([_embed(lm, ["<s>", "question", ":"]), soft[0], _embed(lm, ["and"]), soft[1],
                              _embed(lm, ["?", "answer", ":"])])
    assert got.shape == (11, 32)
    assert torch.equal(got, expected)


def test_media_without_markers_go_before_the_question(lm):
    bridge = _bridge(lm, tokens=1)
    media = F.normalize(torch.randn(1, 16), dim=-1)
    with torch.no_grad():
        got = bridge.prompt_embeds("what is this ?", media)[0]
        expected = torch.cat([_embed(lm, ["<s>", "question", ":"]), bridge.projector(media)[0],
                              _embed(lm, ["what", "is", "this", "?", "answer", ":"])])
    assert torch.equal(got, expected)


def test_prompt_without_media_is_plain_token_embeddings(lm):
    bridge = _bridge(lm, tokens=1)
    with torch.no_grad():
        got = bridge.prompt_embeds("what is this ?", torch.zeros(0, 16))[0]
    assert torch.equal(got, _embed(lm, ["<s>", "question", ":", "what", "is", "this", "?", "answer", ":"]))


def test_marker_count_must_match_the_media(lm):
    bridge = _bridge(lm, tokens=1)
    with pytest.raises(InputError, match="2 <media> markers but 1 media"):
        bridge.encode("<media> and <media>", 1)


def test_splice_in_a_batch_touches_only_the_slots():
    tokens = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 5, 3)
    soft = -torch.ones(2, 2, 3)  # two items of k=2
    soft[1] *= 2
    slots = torch.tensor([[0, 1], [1, 3]])  # item 0 at row 0 positions 1-2, item 1 at row 1 positions 3-4
    out = splice(tokens, soft, slots)
    expected = tokens.clone()
    expected[0, 1:3] = -1
    expected[1, 3:5] = -2
    assert torch.equal(out, expected)
    assert torch.equal(tokens, torch.arange(30, dtype=torch.float32).view(2, 5, 3))  # input left unchanged
