"""A word-level tokenizer and a small causal LM from a transformers config: language models for small worlds.

Used by `bindspace demo llm` and the tests: no download, a vocabulary of the world's words,
random initialisation, saved as an ordinary transformers directory that
`AutoModelForCausalLM` / `AutoTokenizer` load like any other.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from .lm import LanguageModel, describe, transformers_module

SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")


def word_tokenizer(texts: Iterable[str]) -> Any:
    """A PreTrainedTokenizerFast whose vocabulary is every word and punctuation mark of `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    transformers = transformers_module()
    splitter = pre_tokenizers.Whitespace()
    words: dict[str, None] = {}
    for text in texts:
        for word, _ in splitter.pre_tokenize_str(text):
            words.setdefault(word)
    vocab = {token: i for i, token in enumerate([*SPECIALS, *sorted(words)])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = splitter
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with single spaces
    return transformers.PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                                unk_token="<unk>", pad_token="<pad>")


def small_causal_lm(tokenizer: Any, *, hidden: int = 64, layers: int = 2, heads: int = 4, context: int = 64,
                    seed: int = 0) -> LanguageModel:
    """A randomly initialised Llama-architecture LM sized for `tokenizer`'s vocabulary."""
    transformers = transformers_module()
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=context,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config)
    return LanguageModel(model, tokenizer, "", describe(model))


def save_language_model(lm: LanguageModel, out_dir: str | os.PathLike[str]) -> Path:
    """Write the model and tokenizer as a transformers directory; returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lm.model.save_pretrained(str(out))
    lm.tokenizer.save_pretrained(str(out))
    lm.path = str(out)
    return out
