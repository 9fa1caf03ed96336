"""The shared prompt head from the LM's key/value cache: same loss, same gradients and same answers as running it."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bindspace.llm.answers import answer_each
from bindspace.llm.bridge import Bridge
from bindspace.llm.data import collate, make_example
from bindspace.llm.lm import LmLoraConfig, add_lora, load_language_model
from bindspace.llm.objective import BridgeObjective
from bindspace.llm.prefix import shared_head
from bindspace.llm.projector import Projector, ProjectorConfig
from bindspace.llm.template import IGNORE, PromptTemplate

# A chat-like head: several tokens every row shares before the media item.
TEMPLATE = PromptTemplate(text="the answer is this : question : {prompt} answer :")


def test_shared_head_stops_at_the_first_difference_media_slot_or_scored_token():
    ids = torch.tensor([[1, 2, 3, 4, 5, 6], [1, 2, 3, 9, 5, 6]])
    none = torch.zeros(0, 2, dtype=torch.long)
    assert shared_head(ids, None, none) == 3
    assert shared_head(ids, None, torch.tensor([[0, 2], [1, 4]])) == 2
    labels = torch.full_like(ids, IGNORE)
    labels[1, 2] = 3  # predicted at position 1: the head must end before it
    assert shared_head(ids, labels, none) == 1
    same = torch.tensor([[1, 2, 3], [1, 2, 3]])
    assert shared_head(same, None, none) == 2  # at least one position is left to run


def bridge_on(lm_dir, lora=False, template=TEMPLATE):
    lm = load_language_model(lm_dir)
    torch.manual_seed(0)
    projector = Projector(ProjectorConfig(in_dim=16, out_dim=lm.hidden_size))
    config = LmLoraConfig(rank=2, targets=("q_proj", "v_proj")) if lora else None
    if config is not None:
        add_lora(lm.model, config)
    return Bridge(None, projector, lm, template, lora=config)


def two_row_batch(bridge):
    table = F.normalize(torch.randn(2, 16, generator=torch.Generator().manual_seed(1)), dim=-1)
    turns = [bridge.encode("what is this ?", 1, "the digit seven"), bridge.encode("<media> and <media>", 2, "a sound")]
    return collate([make_example(turns[0], [0]), make_example(turns[1], [1, 0])], table, pad_id=0)


@pytest.mark.parametrize("lm_fixture", ["llama_dir", "gpt2_dir"])
def test_the_cached_head_gives_the_loss_and_gradients_of_the_full_forward(lm_fixture, request):
    bridge = bridge_on(request.getfixturevalue(lm_fixture))
    batch = two_row_batch(bridge)
    assert shared_head(batch.ids, batch.labels, batch.slots) == 8  # <s> and the 7 words before {prompt}
    cached = BridgeObjective(bridge)
    assert cached.prefix is not None
    full = BridgeObjective(bridge)
    full.prefix, full.keep_logits = None, False  # every position through the LM and its output head
    results = []
    for objective in (cached, full, cached):  # the third: the head now comes from the cache
        bridge.projector.zero_grad()
        out = objective.train()(batch)
        out.loss.backward()
        results.append((out.loss.detach(), out.accuracy, bridge.projector.net.weight.grad.clone()))
    for loss, accuracy, grad in results[::2]:
        torch.testing.assert_close(loss, results[1][0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(accuracy, results[1][1])
        torch.testing.assert_close(grad, results[1][2], rtol=1e-4, atol=1e-7)
    assert results[1][2].abs().sum() > 0


def test_with_lora_the_head_runs_every_step(llama_dir):
    # LoRA changes the head's keys and values as it trains: nothing may be cached.
    assert BridgeObjective(bridge_on(llama_dir, lora=True)).prefix is None


@pytest.mark.parametrize("lm_fixture", ["llama_dir", "gpt2_dir"])
def test_batched_answers_are_the_answers_generate_gives_one_by_one(lm_fixture, request):
    # The media item last, right before the answer: a random LM's answers then depend on it.
    bridge = bridge_on(request.getfixturevalue(lm_fixture), template=PromptTemplate(text="question : {prompt}"))
    embeddings = F.normalize(torch.randn(8, 16, generator=torch.Generator().manual_seed(2)), dim=-1)
    prompt = "what is this ? <media>"
    batched = answer_each(bridge, prompt, embeddings, max_new_tokens=4, batch_size=3)
    one_by_one = [bridge.generate(prompt, embeddings=e[None], max_new_tokens=4) for e in embeddings]
    assert batched == one_by_one
    assert len(set(batched)) > 1  # the media item changes the answer: the soft token is read
