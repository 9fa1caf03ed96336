"""CLIP BPE tokenizer: exact parity with the original ids, cleaning, truncation, bad inputs."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bindspace.errors import InputError
from bindspace.preprocess.tokenizer import Tokenizer, clean, get_tokenizer, tokenize

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_matches_original_token_ids() -> None:
    texts = json.loads((FIXTURES / "media" / "texts.json").read_text(encoding="utf-8"))
    golden = load_file(str(FIXTURES / "goldens_tiny.safetensors"))["text.tokens"]
    ids = tokenize(texts)
    assert ids.dtype == torch.long
    assert torch.equal(ids, golden)


def test_special_ids_and_vocab_size() -> None:
    tok = get_tokenizer()
    assert (tok.sot_token, tok.eot_token, tok.vocab_size) == (49406, 49407, 49408)
    assert get_tokenizer() is tok  # parsed once per process


def test_layout_start_ids_end_then_zeros() -> None:
    row = tokenize("a dog")[0]
    body = get_tokenizer().encode("a dog")
    assert row[0] == 49406
    assert row[1 : 1 + len(body)].tolist() == body
    assert row[1 + len(body)] == 49407
    assert (row[2 + len(body) :] == 0).all()
    assert int(row.argmax()) == 1 + len(body)  # the pooling position is the end token


def test_truncation_keeps_end_token_in_last_slot() -> None:
    ids = tokenize(["word " * 200, "short"], context_length=16)
    assert ids.shape == (2, 16)
    assert ids[0, -1] == 49407 and (ids[0, 1:-1] != 0).all()
    assert ids[1, 3:].eq(0).all()


def test_single_string_gives_a_batch_of_one() -> None:
    assert tokenize("hello").shape == (1, 77)
    assert tokenize([]).shape == (0, 77)


def test_cleaning_rules() -> None:
    assert clean("  A\t\n  Dog  ") == "a dog"
    assert clean("&amp;amp; &lt;b&gt;") == "& <b>"  # unescaped twice
    assert torch.equal(tokenize("A   DOG!"), tokenize("a dog!"))
    assert torch.equal(tokenize("fish &amp; chips"), tokenize("fish & chips"))


def test_split_pattern_digits_and_contractions() -> None:
    tok = get_tokenizer()
    assert len(tok.encode("2024")) == 4  # single digits
    assert tok.encode("it's") == tok.encode("it") + tok.encode("'s")


def test_literal_special_token_text_is_not_a_special_id() -> None:
    ids = get_tokenizer().encode("hi <|endoftext|> there <|startoftext|>")
    assert 49406 not in ids and 49407 not in ids
    assert int(tokenize("x <|endoftext|> y")[0].argmax()) == len(get_tokenizer().encode("x <|endoftext|> y")) + 1


def test_any_unicode_is_encodable() -> None:
    ids = get_tokenizer().encode("日本語 \u0000 \U0001f436 e\u0301")
    assert ids and all(0 <= i < 49406 for i in ids)


def test_word_cache_makes_big_batches_cheap() -> None:
    tok = Tokenizer()
    texts = [f"a photo of a dog number {i % 10}" for i in range(2000)]
    out = tok(texts)
    assert out.shape == (2000, 77)
    assert len(tok._cache) < 20  # each distinct word was merged once
    assert torch.equal(out[0], out[10])


@pytest.mark.parametrize("bad", [None, 3, b"bytes", ["ok", 5], [None]])
def test_non_str_input_is_an_input_error(bad: object) -> None:
    with pytest.raises(InputError):
        tokenize(bad)  # type: ignore[arg-type]


def test_encode_rejects_non_str() -> None:
    with pytest.raises(InputError, match="must be a str"):
        get_tokenizer().encode(b"abc")  # type: ignore[arg-type]


def test_long_texts_are_cut_and_counted_in_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    exact = " ".join(["cat"] * 75)  # start + 75 + end = 77: fits exactly, not cut
    huge = "dog " * 25_000  # 100k characters
    with caplog.at_level(logging.WARNING, logger="bindspace.text"):
        ids = tokenize([huge, exact, "a cat", huge + "!"])
    assert [r.getMessage() for r in caplog.records] == [
        "2 of 4 texts were longer than the 77-token context and cut to fit (the model sees only the start of each)"]
    tok = get_tokenizer()
    assert ids[0].tolist() == [tok.sot_token, *tok.encode(huge)[:75], tok.eot_token]  # early stop changes nothing
    assert int(ids[1].argmax()) == 76
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bindspace.text"):
        tokenize([exact, "a cat"])
    assert caplog.records == []
