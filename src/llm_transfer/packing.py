"""Pretraining text as a language model eats it: a WordPiece vocabulary learnt on the corpus, fixed-length blocks.

The tokenizer is 🤗 tokenizers' WordPiece trainer with BERT's uncased normaliser and pre-tokenizer (SST-2 is lower
case), so every word is covered by pieces and nothing falls back to [UNK] for lack of rows; a vocabulary of a few
thousand pieces keeps TinyGPT's output layer, the slowest part of a CPU step, small. Documents become
`[CLS] paragraph [SEP]` units laid end to end and cut into blocks of `block_size` tokens: no padding at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(texts: Iterable[str], vocab_size: int = 8192, min_frequency: int = 2):
    """A BERT-style uncased WordPiece tokenizer learnt on the texts, as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True, clean_text=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIALS,
                                        show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    # The trainer numbers its pieces in hash-map order, so two runs on the same text give the same pieces under
    # other ids (huggingface/tokenizers#1794): number them in a fixed order instead, the special tokens first.
    vocab = tok.get_vocab()
    order = SPECIALS + sorted(t for t in vocab if t not in SPECIALS)
    tok.model = models.WordPiece({t: i for i, t in enumerate(order)}, unk_token="[UNK]",
                                 continuing_subword_prefix=tok.model.continuing_subword_prefix,
                                 max_input_chars_per_word=tok.model.max_input_chars_per_word)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)


def load_wordpiece(folder: str | Path):
    """A tokenizer that train_wordpiece made and save_pretrained wrote."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(folder))


def paragraphs(docs: Iterable[str]) -> Iterator[str]:
    """The non-empty lines (paragraphs) of each document."""
    for doc in docs:
        yield from (p for p in doc.split("\n") if p.strip())


def token_stream(texts: Iterable[str], tokenizer, batch: int = 1000) -> np.ndarray:
    """Every text as [CLS] ... [SEP], laid end to end into one array of ids (uint16 when the vocabulary fits)."""
    dtype = np.uint16 if len(tokenizer) < 2**16 else np.int32
    chunks, buf = [], []
    for text in texts:
        buf.append(text)
        if len(buf) == batch:
            chunks.extend(np.asarray(ids, dtype) for ids in tokenizer(buf)["input_ids"])
            buf = []
    if buf:
        chunks.extend(np.asarray(ids, dtype) for ids in tokenizer(buf)["input_ids"])
    return np.concatenate(chunks) if chunks else np.empty(0, dtype)


def take_tokens(texts: Iterable[str], tokenizer, max_tokens: int, batch: int = 1000) -> tuple[list[str], np.ndarray]:
    """The first texts whose [CLS] ... [SEP] ids reach max_tokens, and their ids end to end (tokenizing no more)."""
    used, chunks, n, buf = [], [], 0, []
    dtype = np.uint16 if len(tokenizer) < 2**16 else np.int32

    def flush() -> None:
        nonlocal n
        for text, ids in zip(buf, tokenizer(buf)["input_ids"], strict=True):
            if n >= max_tokens:
                break
            used.append(text)
            chunks.append(np.asarray(ids, dtype))
            n += len(ids)
        buf.clear()

    for text in texts:
        buf.append(text)
        if len(buf) == batch:
            flush()
            if n >= max_tokens:
                break
    if buf and n < max_tokens:
        flush()
    return used, np.concatenate(chunks) if chunks else np.empty(0, dtype)


def pack_blocks(stream: np.ndarray, block_size: int = 128, max_tokens: int | None = None) -> torch.Tensor:
    """Cut the stream into (n, block_size) non-overlapping blocks (the ragged tail dropped); at most max_tokens."""
    n = len(stream) if max_tokens is None else min(len(stream), max_tokens)
    n_blocks = n // block_size
    return torch.from_numpy(stream[: n_blocks * block_size].astype(np.int64)).view(n_blocks, block_size)


def sentence_ids(sentences: Sequence[str], tokenizer, max_length: int = 128) -> list[list[int]]:
    """Held-out sentences as [CLS] ... [SEP] id lists, the unit log P(x) is scored on."""
    return tokenizer(list(sentences), truncation=True, max_length=max_length)["input_ids"]
