"""OpenAI-CLIP byte-level BPE tokenizer, written from the published description (SPEC.md, Text)."""
from __future__ import annotations

import functools
import gzip
import html
import logging
from collections.abc import Sequence
from pathlib import Path

import ftfy
import regex
import torch

from ..errors import InputError

MERGES_FILE = Path(__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
NUM_MERGES = 48894  # merges 1..48894 of the file (line 0 is a header)
CONTEXT_LENGTH = 77
LOG = logging.getLogger("bindspace.text")

# Contractions, letter runs, single digits, runs of other non-space characters.
# The literal special-token strings are deliberately NOT matched as specials: a user
# typing "<|endoftext|>" must not move the pooling position (argmax of the ids).
_SPLIT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+""", regex.IGNORECASE)
_WHITESPACE = regex.compile(r"\s+")


def byte_symbols() -> tuple[list[str], list[str]]:
    """Printable stand-ins for bytes: (symbol of byte b, symbols in vocabulary order)."""
    # Printable Latin-1 bytes stand for themselves; the rest are shifted past 255 so
    # every byte has a visible, non-whitespace symbol that BPE can merge. The vocabulary
    # lists the self-standing bytes first, then the shifted ones.
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in kept]
    by_byte = [""] * 256
    for b in kept:
        by_byte[b] = chr(b)
    for n, b in enumerate(others):
        by_byte[b] = chr(256 + n)
    return by_byte, [by_byte[b] for b in kept + others]


def clean(text: str) -> str:
    """CLIP text cleaning: ftfy, HTML-unescape twice, collapse whitespace, lowercase."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return _WHITESPACE.sub(" ", text).strip().lower()


def _merge_lines(path: str | Path) -> list[str]:
    """Lines 1..NUM_MERGES of the merges file; the rest (four fifths of it) is never decompressed."""
    text = ""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        while text.count("\n") <= NUM_MERGES and (chunk := handle.read(1 << 18)):
            text += chunk
    return text.split("\n", NUM_MERGES + 1)[1 : NUM_MERGES + 1]


class Tokenizer:
    """Byte-level BPE with the CLIP vocabulary; ids fit the ImageBind text encoder."""

    def __init__(self, merges_path: str | Path = MERGES_FILE) -> None:
        merges = [tuple(line.split()) for line in _merge_lines(merges_path)]
        self._byte_symbol, base = byte_symbols()
        vocab = base + [s + "</w>" for s in base]
        vocab += ["".join(pair) for pair in merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        self.encoder: dict[str, int] = dict(zip(vocab, range(len(vocab))))
        self.ranks: dict[tuple[str, str], int] = dict(zip(merges, range(len(merges))))  # type: ignore[arg-type]
        self.sot_token: int = self.encoder["<|startoftext|>"]
        self.eot_token: int = self.encoder["<|endoftext|>"]
        self.vocab_size: int = len(vocab)
        self._cache: dict[str, list[int]] = {}

    def _bpe(self, piece: str) -> list[int]:
        """Ids of one pre-split piece of cleaned text; cached per piece."""
        cached = self._cache.get(piece)
        if cached is not None:
            return cached
        word = "".join(self._byte_symbol[b] for b in piece.encode("utf-8"))
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            # Merge the lowest-ranked adjacent pair everywhere it occurs, left to right.
            best = min(zip(parts, parts[1:]), key=lambda p: self.ranks.get(p, NUM_MERGES))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids = [self.encoder[p] for p in parts]
        if len(self._cache) < 500_000:  # bound memory on adversarial corpora
            self._cache[piece] = ids
        return ids

    def encode(self, text: str, limit: int | None = None) -> list[int]:
        """BPE ids of one text, without start/end tokens; with `limit`, stops once it has more than `limit`."""
        if not isinstance(text, str):
            raise InputError(f"<{type(text).__name__}>", "text must be a str")
        ids: list[int] = []
        for piece in _SPLIT.finditer(clean(text)):
            ids.extend(self._bpe(piece.group()))
            if limit is not None and len(ids) > limit:  # a 100k-character text need not be encoded whole
                break
        return ids

    def __call__(self, texts: str | Sequence[str], context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
        """Token ids (N, context_length): start, BPE ids cut to fit, end, zero padding."""
        return self.tokenize_counting(texts, context_length)[0]

    def tokenize_counting(self, texts: str | Sequence[str],
                          context_length: int = CONTEXT_LENGTH) -> tuple[torch.Tensor, int]:
        """Token ids (N, context_length) and how many texts were cut to fit the context."""
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, Sequence) or isinstance(texts, (bytes, bytearray)):
            raise InputError(f"<{type(texts).__name__}>", "texts must be a str or a sequence of str")
        if context_length < 2:
            raise InputError("context_length", f"must be at least 2, got {context_length}")
        out = torch.zeros(len(texts), context_length, dtype=torch.long)
        room, cut = context_length - 2, 0
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"<text #{row}>", f"expected str, got {type(text).__name__}")
            body = self.encode(text, limit=room)
            cut += len(body) > room
            ids = [self.sot_token, *body[:room], self.eot_token]
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out, cut


@functools.lru_cache(maxsize=1)
def get_tokenizer() -> Tokenizer:
    """The process-wide tokenizer (the merges file is parsed once)."""
    return Tokenizer()


def tokenize(texts: str | Sequence[str], context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
    """Token ids (N, context_length) for one text or a list of texts; logs a warning if any was cut."""
    ids, cut = get_tokenizer().tokenize_counting(texts, context_length)
    report_truncated(cut, ids.shape[0], context_length)
    return ids


def report_truncated(cut: int, total: int, context_length: int = CONTEXT_LENGTH) -> None:
    """One warning line (logger "bindspace.text") saying how many texts were cut to the context length."""
    if cut:
        LOG.warning("%d of %d text%s longer than the %d-token context and cut to fit "
                    "(the model sees only the start of each)", cut, total, "s were" if total != 1 else " was",
                    context_length)
