"""Training loss: next-token cross-entropy on the response (and its EOS) only, never on prompt or media positions."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from bindspace.llm.bridge import Bridge
from bindspace.llm.data import collate, make_example
from bindspace.llm.lm import load_language_model
from bindspace.llm.objective import BridgeObjective
from bindspace.llm.projector import Projector, ProjectorConfig
from bindspace.llm.template import IGNORE, PromptTemplate, encode_turn


def test_labels_cover_exactly_the_response_and_eos(llama_dir):
    tok = load_language_model(llama_dir).tokenizer
    turn = encode_turn(tok, PromptTemplate(text="question : {prompt} answer :"), "what is this ?", 1, 2,
                       response="the digit seven")
    ids = tok.convert_tokens_to_ids
    prompt = ids(["<s>", "question", ":"]) + [turn.ids[3]] * 2 + ids(["what", "is", "this", "?", "answer", ":"])
    answer = ids(["the", "digit", "seven", "</s>"])
    assert turn.ids == prompt + answer
    assert turn.labels == [IGNORE] * len(prompt) + answer
    assert turn.slots == [3]


def test_objective_loss_is_cross_entropy_over_response_positions_only(llama_dir):
    lm = load_language_model(llama_dir)
    torch.manual_seed(0)
    bridge = Bridge(None, Projector(ProjectorConfig(in_dim=16, out_dim=32)), lm,
                    PromptTemplate(text="question : {prompt} answer :"))
    table = F.normalize(torch.randn(2, 16), dim=-1)
    turns = [bridge.encode("what is this ?", 1, "the digit seven"), bridge.encode("<media> and <media>", 2, "a sound")]
    batch = collate([make_example(turns[0], [0]), make_example(turns[1], [1, 0])], table, pad_id=0)
    objective = BridgeObjective(bridge).eval()
    with torch.no_grad():
        loss = objective(batch).loss
        # By hand: each row's embeddings, the LM's logits, and CE at the positions before each response token.
        total, count = torch.tensor(0.0), 0
        for turn, media in zip(turns, ([0], [1, 0])):
            embeds = lm.embed_tokens(torch.tensor(turn.ids)).clone()
            for slot, m in zip(turn.slots, media):
                embeds[slot] = bridge.projector(table[m:m + 1])[0, 0]
            logits = lm.model(inputs_embeds=embeds[None]).logits[0]
            start = next(i for i, label in enumerate(turn.labels) if label != IGNORE)
            for pos in range(start, len(turn.ids)):
                total += F.cross_entropy(logits[pos - 1:pos], torch.tensor([turn.ids[pos]]), reduction="sum")
                count += 1
        everything = F.cross_entropy(lm.model(inputs_embeds=lm.embed_tokens(torch.tensor(turns[0].ids))[None])
                                     .logits[0, :-1], torch.tensor(turns[0].ids[1:]))
    assert count == 4 + 3  # "the digit seven </s>" and "a sound </s>"
    torch.testing.assert_close(loss, total / count, rtol=1e-5, atol=1e-6)
    assert not torch.isclose(loss, everything)


def test_only_projector_and_adapters_receive_gradients(llama_dir):
    from bindspace.llm.lm import LmLoraConfig, add_lora

    lm = load_language_model(llama_dir)
    lora = LmLoraConfig(rank=2, targets=("q_proj", "v_proj"))
    add_lora(lm.model, lora)
    bridge = Bridge(None, Projector(ProjectorConfig(in_dim=16, out_dim=32)), lm, lora=lora)
    objective = BridgeObjective(bridge).train()
    turn = bridge.encode("what is this ?", 1, "a sound")
    batch = collate([make_example(turn, [0])], F.normalize(torch.randn(1, 16), dim=-1), pad_id=0)
    objective(batch).loss.backward()
    trained = {n for n, p in objective.named_parameters() if p.grad is not None}
    assert trained == set(objective.trainable_state_dict())
    assert trained and all("projector" in n or "lora_" in n for n in trained)
