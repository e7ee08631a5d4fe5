"""WordPiece as notebook 01 shows it: which pieces each word became, and the greedy longest-match rule itself."""

from __future__ import annotations

from collections.abc import Container


def word_pieces(tokenizer, sentence: str) -> list[tuple[str, list[str]]]:
    """(word, its pieces) for every word of the tokenizer's pre-tokenization, read from the encoding's offsets.

    The tokenizer's words are not `sentence.split()`: BERT's pre-tokenizer also splits off punctuation, so
    "n't" is the three words "n", "'", "t"; the characters each word came from are the only reliable link.
    """
    enc = tokenizer(sentence, add_special_tokens=False)
    out: list[tuple[str, list[str]]] = []
    last = None
    for tok, w in zip(enc.tokens(), enc.word_ids(), strict=True):
        if w is None:
            continue
        if w != last:
            span = enc.word_to_chars(w)
            out.append((sentence[span.start:span.end], []))
            last = w
        out[-1][1].append(tok)
    return out


def greedy_wordpiece(word: str, vocab: Container[str], unk: str = "[UNK]", prefix: str = "##",
                     max_chars: int = 100) -> list[str]:
    """Split one (normalised) word into the longest vocabulary pieces from the left; [UNK] if some part has none."""
    if len(word) > max_chars:
        return [unk]
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start:
            piece = (prefix if start else "") + word[start:end]
            if piece in vocab:
                break
            end -= 1
        if end == start:  # no piece of the vocabulary starts here
            return [unk]
        pieces.append(piece)
        start = end
    return pieces
