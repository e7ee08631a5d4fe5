"""WikiANN loading (the real files, malformed input) and tags aligned to word pieces."""

from __future__ import annotations

import pytest

from llm_transfer.data import DataError
from llm_transfer.models import sha256_file
from llm_transfer.ner import (
    FEATURES,
    IGNORE,
    TAG_IDS,
    align_labels,
    find_local_wikiann,
    load_wikiann,
    read_conll,
    tag_names,
    tokenize_ner,
    word_predictions,
)

GOOD = "Sioux\tB-ORG\nFalls\tI-ORG\nArena\tI-ORG\n\nGeorge\tB-PER\nHearst\tI-PER\n\n"
# One real dev sentence (WikiANN en, validation row 7) and its tags.
WORDS = ["He", "formerly", "played", "for", "Almere", "City", "and", "Chiangrai", "United", "."]
TAGS = ["O", "O", "O", "O", "B-ORG", "I-ORG", "O", "B-ORG", "I-ORG", "O"]


@pytest.fixture(scope="module")
def wikiann():
    """The real WikiANN English splits."""
    if find_local_wikiann() is None:
        pytest.skip("no local WikiANN folder (../shared/data/ner/wikiann-en)")
    return load_wikiann()


def test_real_files_sizes_tags_and_schema(wikiann):
    assert {k: len(v) for k, v in wikiann.items()} == {"train": 20000, "validation": 10000, "test": 10000}
    assert wikiann["train"].features == FEATURES
    first = wikiann["validation"][0]
    assert first["tokens"] == ["Sioux", "Falls", "Arena", "(", "Sioux", "Falls", ",", "South", "Dakota", ")"]
    assert tag_names(first["ner_tags"]) == ["B-ORG", "I-ORG", "I-ORG", "O", "B-LOC", "I-LOC", "I-LOC", "I-LOC",
                                            "I-LOC", "O"]
    assert wikiann["validation"][7]["tokens"] == WORDS and tag_names(wikiann["validation"][7]["ner_tags"]) == TAGS
    counts = {t: 0 for t in TAG_IDS}
    for tags in wikiann["validation"]["ner_tags"]:
        for t in tags:
            counts[tag_names([t])[0]] += 1
    assert counts == {"O": 40875, "B-PER": 4635, "I-PER": 7520, "B-ORG": 4677, "I-ORG": 11638, "B-LOC": 4834,
                      "I-LOC": 6357}  # B- counts are the number of entities of each type


def test_real_files_are_the_ones_their_sha256sums_list(wikiann):
    folder = find_local_wikiann()
    sums = dict(line.split()[::-1] for line in (folder / "SHA256SUMS").read_text().splitlines() if line.strip())
    assert sorted(sums) == ["dev.conll", "test.conll", "train.conll"]
    for name, digest in sums.items():
        assert sha256_file(folder / name) == digest, name


def test_sentences_split_at_blank_lines_with_or_without_a_final_one(tmp_path):
    for name, text in (("a.conll", GOOD), ("b.conll", GOOD.rstrip("\n"))):
        (tmp_path / name).write_text(text, encoding="utf-8")
        ds = read_conll(tmp_path / name)
        assert ds["tokens"] == [["Sioux", "Falls", "Arena"], ["George", "Hearst"]]
        assert [tag_names(t) for t in ds["ner_tags"]] == [["B-ORG", "I-ORG", "I-ORG"], ["B-PER", "I-PER"]]


@pytest.mark.parametrize(
    "text, needle",
    [
        ("Sioux\tB-ORG\tx\n", "line 1: 3 tab-separated columns, expected 2 (token, tag)"),
        ("Sioux B-ORG\n", "line 1: 1 tab-separated columns, expected 2"),
        ("Sioux\tB-ORG\nFalls\tB-MISC\n", "line 2: tag 'B-MISC' is not one of O, B-PER, I-PER"),
        ("the\tO\nFalls\tI-ORG\n", "line 2: I-ORG after O is not IOB2 (an entity starts with B-ORG)"),
        ("Sioux\tB-PER\nFalls\tI-LOC\n", "line 2: I-LOC after B-PER is not IOB2"),
        ("a\tO\n\nFalls\tI-LOC\n", "line 3: I-LOC after the sentence's start is not IOB2"),
        (" \tO\n", "line 1: empty token; fix or remove that line."),
        (b"caf\xe9\tO\n", "line 1: bytes that are not UTF-8"),
        ("a\tO\n\n\nb\tO\n", "line 3: blank line after a blank line (an empty sentence); remove it."),
        ("\na\tO\n", "line 1: blank line at the start"),
        ("", "no sentences; the file is empty or truncated"),
    ],
)
def test_malformed_lines_name_file_line_and_fix(tmp_path, text, needle):
    path = tmp_path / "dev.conll"
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    with pytest.raises(DataError) as err:
        read_conll(path, "validation")
    msg = str(err.value)
    assert str(path) in msg and needle in msg and "\n" not in msg, msg


def test_a_folder_without_every_split_is_refused(tmp_path):
    (tmp_path / "train.conll").write_text(GOOD)
    with pytest.raises(DataError, match="missing dev.conll, test.conll"):
        load_wikiann(tmp_path)


def test_first_word_piece_carries_the_tag_and_the_rest_are_ignored(tokenizer):
    enc = align_labels(tokenizer, [WORDS], [[TAG_IDS[t] for t in TAGS]])
    pieces = tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
    assert pieces == ["[CLS]", "he", "formerly", "played", "for", "al", "##mere", "city", "and", "chiang", "##rai",
                      "united", ".", "[SEP]"]
    o, b_org, i_org = TAG_IDS["O"], TAG_IDS["B-ORG"], TAG_IDS["I-ORG"]
    assert enc["labels"][0] == [IGNORE, o, o, o, o, b_org, IGNORE, i_org, o, b_org, IGNORE, i_org, o, IGNORE]
    # reading each word's first piece back gives the words' tags
    assert word_predictions(enc.word_ids(0), enc["labels"][0], len(WORDS)) == [TAG_IDS[t] for t in TAGS]


def test_truncated_words_get_no_label_and_are_filled_with_o(tokenizer):
    enc = align_labels(tokenizer, [WORDS], [[TAG_IDS[t] for t in TAGS]], max_length=8)
    assert len(enc["labels"][0]) == 8 and enc["labels"][0][-1] == IGNORE  # [SEP] after "al ##mere"
    preds = word_predictions(enc.word_ids(0), [TAG_IDS["B-PER"]] * 8, len(WORDS))
    assert preds == [TAG_IDS["B-PER"]] * 5 + [TAG_IDS["O"]] * 5  # words 5.. were cut off


def test_tokenize_ner_adds_aligned_labels_to_every_split(tmp_path, tokenizer):
    for f in ("train.conll", "dev.conll", "test.conll"):
        (tmp_path / f).write_text(GOOD)
    enc = tokenize_ner(load_wikiann(tmp_path), tokenizer)
    assert list(enc) == ["train", "validation", "test"]
    row = enc["validation"][1]
    assert len(row["labels"]) == len(row["input_ids"])
    assert row["labels"] == [IGNORE, TAG_IDS["B-PER"], TAG_IDS["I-PER"], IGNORE]


def test_a_slow_tokenizer_is_refused():
    class Slow:
        is_fast = False

    with pytest.raises(ValueError, match="needs a fast tokenizer"):
        align_labels(Slow(), [["a"]], [[0]])
