"""WikiANN English named entities (IOB2 PER / ORG / LOC): checked CoNLL-style loading, labels aligned to word pieces.

The files hold one ``token<TAB>tag`` per line and a blank line after each sentence; they load into the hub's schema
(``unimelb-nlp/wikiann``, config ``en``: ``tokens`` and ``ner_tags`` with the same tag order).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, DatasetInfo, Features, List, Value

from .data import DataError, text_lines
from .settings import _search_roots, display_path

TAG_NAMES = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]  # the hub's wikiann order
TAG_IDS = {t: i for i, t in enumerate(TAG_NAMES)}
FEATURES = Features({"tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=TAG_NAMES))})
FILES = {"train": "train.conll", "validation": "dev.conll", "test": "test.conll"}
IGNORE = -100  # the label the loss skips: special tokens and every word piece after a word's first
_SHARED_WIKIANN = Path("shared") / "data" / "ner" / "wikiann-en"

HOW_TO_GET = ("WikiANN English lives in ../shared/data/ner/wikiann-en next to the checkout (train.conll, dev.conll, "
              "test.conll: one token<TAB>tag per line, a blank line between sentences); pass another folder in that "
              "layout as load_wikiann('path/to/folder').")


def find_local_wikiann() -> Path | None:
    """The WikiANN folder at ../shared/data/ner/wikiann-en next to the checkout, if there is one."""
    for r in _search_roots():
        if (r / _SHARED_WIKIANN).is_dir():
            return r / _SHARED_WIKIANN
    return None


def read_conll(path: str | os.PathLike, split: str = "train") -> Dataset:
    """Read one token<TAB>tag file, checking every line (UTF-8, two columns, known IOB2 tags); DataError if not."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found. {HOW_TO_GET}")
    sentences: list[list[str]] = []
    tag_ids: list[list[int]] = []
    tokens: list[str] = []
    tags: list[int] = []
    blank_before = True  # at the start of the file, and after a sentence's blank line
    for lineno, line in text_lines(path):  # UTF-8 checked, a byte-order mark dropped
        where = f"{path}, line {lineno}"
        if not line.strip():
            if blank_before:
                raise DataError(f"{where}: blank line {'at the start' if lineno == 1 else 'after a blank line'}"
                                " (an empty sentence); remove it.")
            sentences.append(tokens)
            tag_ids.append(tags)
            tokens, tags, blank_before = [], [], True
            continue
        blank_before = False
        cols = line.split("\t")
        if len(cols) != 2:
            raise DataError(f"{where}: {len(cols)} tab-separated columns, expected 2 (token, tag); "
                            "a tab inside a token or a missing tag? Fix that line.")
        token, tag = cols
        if not token.strip():
            raise DataError(f"{where}: empty token; fix or remove that line.")
        if tag not in TAG_IDS:
            raise DataError(f"{where}: tag {tag!r} is not one of {', '.join(TAG_NAMES)}; fix that line.")
        if tag.startswith("I-") and (not tags or TAG_NAMES[tags[-1]][2:] != tag[2:]):
            after = TAG_NAMES[tags[-1]] if tags else "the sentence's start"
            raise DataError(f"{where}: {tag} after {after} is not IOB2 (an entity starts with B-{tag[2:]}); "
                            "fix that line.")
        tokens.append(token)
        tags.append(TAG_IDS[tag])
    if tokens:  # a last sentence without the final blank line
        sentences.append(tokens)
        tag_ids.append(tags)
    if not sentences:
        raise DataError(f"{path}: no sentences; the file is empty or truncated.")
    info = DatasetInfo(description=f"WikiANN en {split} split, {display_path(path)}", features=FEATURES)
    return Dataset.from_dict({"tokens": sentences, "ner_tags": tag_ids}, features=FEATURES, info=info)


def load_wikiann(source: str | os.PathLike | None = None) -> DatasetDict:
    """WikiANN English train / validation / test from a folder (default: ../shared/data/ner/wikiann-en)."""
    folder = Path(source).expanduser() if source is not None else find_local_wikiann()
    if folder is None:
        raise DataError(f"No WikiANN folder found. {HOW_TO_GET}")
    if not folder.is_dir():
        raise DataError(f"{folder}: WikiANN folder not found. {HOW_TO_GET}")
    missing = [f for f in FILES.values() if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{folder}: missing {', '.join(missing)}. {HOW_TO_GET}")
    return DatasetDict({split: read_conll(folder / f, split) for split, f in FILES.items()})


def align_labels(tokenizer, tokens: Sequence[Sequence[str]], tags: Sequence[Sequence[int]], max_length: int = 128):
    """Tokenize pre-split sentences and give each word's tag to its first word piece (-100 elsewhere) as 'labels'.

    Special tokens and the second and later pieces of a word get -100, which the loss skips, so each word is counted
    once; words cut off by max_length have no label.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("align_labels needs a fast tokenizer (word_ids() maps pieces to words); "
                         "load it with AutoTokenizer.from_pretrained(..., use_fast=True).")
    enc = tokenizer(list(map(list, tokens)), is_split_into_words=True, truncation=True, max_length=max_length)
    labels = []
    for i, word_tags in enumerate(tags):
        row, previous = [], None
        for word in enc.word_ids(i):
            row.append(IGNORE if word is None or word == previous else int(word_tags[word]))
            previous = word
        labels.append(row)
    enc["labels"] = labels
    return enc


def tokenize_ner(dsd: DatasetDict | Dataset, tokenizer, max_length: int = 128):
    """Add input_ids / attention_mask / labels (aligned with align_labels) to every split; no padding."""

    def enc(batch):
        return align_labels(tokenizer, batch["tokens"], batch["ner_tags"], max_length)

    return dsd.map(enc, batched=True, desc=None)


def word_predictions(word_ids: Sequence[int | None], piece_predictions: Sequence[int], n_words: int,
                     fill: int = TAG_IDS["O"]) -> list[int]:
    """One prediction per word, read from its first piece (the one trained); `fill` for words with no piece."""
    out = [None] * n_words
    for word, pred in zip(word_ids, piece_predictions, strict=True):
        if word is not None and out[word] is None:
            out[word] = int(pred)
    return [fill if p is None else p for p in out]


def tag_names(ids: Sequence[int]) -> list[str]:
    """The IOB2 tag names of tag ids (for entity_scores)."""
    return [TAG_NAMES[i] for i in ids]
