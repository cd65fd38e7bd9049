"""Caption tokenisation and vocabulary of the CUB caption domain (wyner-model.md §5.3).

The reference (MMVAE's `CUBSentences`, reused by the Wyner code) tokenises with NLTK's
`sent_tokenize` + `word_tokenize`. `word_tokenize` is `sent_tokenize` (the `punkt` model, a
run-time download) followed by `NLTKWordTokenizer` on each sentence (regular expressions, no
download). Here (`tokenize`) the words come from that same `NLTKWordTokenizer` (Penn
Treebank conventions: sentence-final periods, commas, ?!, brackets and quotes become tokens,
"bird's" → "bird 's", "doesn't" → "does n't", "cannot" → "can not"), and a line holding
several sentences is split after . ! ? followed by white space, as punkt does on these
captions, so inner sentence periods become tokens too.

Captions are **lines** of the text files: the reference runs punkt over the whole file, which
gives the same sentences when every line is one caption ending in a period (as in MMVAE's
cleaned files) and silently shifts the caption ↔ image pairing otherwise; lines keep the
pairing caption i ↔ image ⌊i/10⌋ exact.

Vocabulary (`build_vocabulary`): special tokens `<exc>` = 0 (any word not in the vocabulary),
`<pad>` = 1, `<eos>` = 2, then every training word seen more than `min_count` times (count > 3
in the reference), in order of first occurrence (the reference's `OrderedCounter`).
Encoding (`encode`): the first L − 1 tokens, `<eos>`, then `<pad>` up to L = 32.
"""

from __future__ import annotations

import collections
import re
from typing import Iterable, Sequence

import numpy as np
from nltk.tokenize import NLTKWordTokenizer

EXC, PAD, EOS = "<exc>", "<pad>", "<eos>"
SPECIAL_TOKENS = (EXC, PAD, EOS)
EXC_ID, PAD_ID, EOS_ID = 0, 1, 2
MAX_LENGTH = 32
MIN_COUNT = 3

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORDS = NLTKWordTokenizer()  # word_tokenize's own per-sentence tokenizer


def tokenize(line: str) -> list[str]:
    """Word tokens of one caption line (Penn Treebank conventions; see the module docstring).

    >>> tokenize("this bird's beak is short, and pointed.")
    ['this', 'bird', "'s", 'beak', 'is', 'short', ',', 'and', 'pointed', '.']
    """
    return [w for sentence in _SENTENCE_END.split(line.strip()) for w in _WORDS.tokenize(sentence)]


def build_vocabulary(
    tokenized: Iterable[Sequence[str]], min_count: int = MIN_COUNT
) -> tuple[tuple[str, ...], dict[str, int]]:
    """(id → word, word counts) from tokenised training captions.

    Ids 0, 1, 2 are `<exc>`, `<pad>`, `<eos>`; then every word with count > `min_count`, in
    order of first occurrence. Words spelled like a special token are not added twice.
    """
    counts: collections.Counter = collections.Counter()
    first_seen: dict[str, None] = {}
    for words in tokenized:
        counts.update(words)
        for w in words:
            first_seen.setdefault(w, None)
    words = [w for w in first_seen if counts[w] > min_count and w not in SPECIAL_TOKENS]
    return SPECIAL_TOKENS + tuple(words), dict(counts)


def encode(
    tokenized: Sequence[Sequence[str]], vocab: Sequence[str], max_length: int = MAX_LENGTH
) -> np.ndarray:
    """Token ids [N, max_length] int32: the first max_length − 1 words (unknown → `<exc>`),
    `<eos>`, then `<pad>`."""
    if max_length < 2:
        raise ValueError(f"config.data.max_length must be at least 2, got {max_length}.")
    index = {w: i for i, w in enumerate(vocab)}
    out = np.full((len(tokenized), max_length), PAD_ID, np.int32)
    for row, words in enumerate(tokenized):
        ids = [index.get(w, EXC_ID) for w in words[: max_length - 1]] + [EOS_ID]
        out[row, : len(ids)] = ids
    return out


def caption_lengths(tokens: np.ndarray) -> np.ndarray:
    """Number of tokens up to and including the first `<eos>` (all of them when none)."""
    tokens = np.asarray(tokens)
    is_eos = tokens == EOS_ID
    first = np.where(is_eos.any(1), is_eos.argmax(1) + 1, tokens.shape[1])
    return first.astype(np.int64)


def decode(tokens: Sequence[int], vocab: Sequence[str]) -> str:
    """Readable text of one token-id row: words up to the first `<eos>`, `<pad>` dropped."""
    words = []
    for t in np.asarray(tokens).tolist():
        if t == EOS_ID:
            break
        if t != PAD_ID:
            words.append(vocab[t] if 0 <= t < len(vocab) else EXC)
    return " ".join(words)
