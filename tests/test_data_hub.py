"""The hub path of load_sst2, offline: a DatasetDict shaped like load_dataset("nyu-mll/glue", "sst2")."""

from __future__ import annotations

import datasets
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from llm_transfer.data import DataError, load_glue_folder, load_sst2

HUB_FEATURES = Features({"sentence": Value("string"), "label": ClassLabel(names=["negative", "positive"]),
                         "idx": Value("int32")})
ROWS = {
    "train": {"sentence": ["hide new secretions ", 'a "quoted" gem '], "label": [0, 1], "idx": [0, 1]},
    "validation": {"sentence": ["it 's charming . "], "label": [1], "idx": [0]},
    "test": {"sentence": ["uneasy mishmash .", "a second one"], "label": [-1, -1], "idx": [0, 1]},
}
TSV = {  # the same rows as a local GLUE folder
    "train.tsv": "sentence\tlabel\nhide new secretions \t0\na \"quoted\" gem \t1\n",
    "dev.tsv": "sentence\tlabel\nit 's charming . \t1\n",
    "test.tsv": "index\tsentence\n0\tuneasy mishmash .\n1\ta second one\n",
}


def hub_dict(rows=ROWS, features=HUB_FEATURES) -> DatasetDict:
    """What datasets.load_dataset('nyu-mll/glue', 'sst2') returns, with the given rows."""
    return DatasetDict({split: Dataset.from_dict(r, features=features) for split, r in rows.items()})


def serve(monkeypatch, dsd) -> list:
    """Make datasets.load_dataset return dsd (no network); return the list of calls it received."""
    calls = []

    def fake_load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        return dsd

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    return calls


def with_row(split: str, **values) -> dict:
    """ROWS with the first row of `split` changed."""
    rows = {k: {c: list(v) for c, v in r.items()} for k, r in ROWS.items()}
    for col, value in values.items():
        rows[split][col][0] = value
    return rows


def test_hub_path_gives_the_local_folders_dataset(monkeypatch, tmp_path):
    calls = serve(monkeypatch, hub_dict())
    hub = load_sst2("hub")
    assert calls and calls[0][0][:2] == ("nyu-mll/glue", "sst2")
    for name, text in TSV.items():
        (tmp_path / name).write_text(text)
    local = load_glue_folder(tmp_path)
    assert list(hub) == list(local) == ["train", "validation", "test"]
    for split in local:
        assert hub[split].features == local[split].features, split
        assert hub[split].to_dict() == local[split].to_dict(), split


def test_hub_columns_are_matched_by_name_not_order(monkeypatch):
    rows = {k: {"idx": r["idx"], "extra": [0] * len(r["idx"]), "label": r["label"], "sentence": r["sentence"]}
            for k, r in ROWS.items()}
    feats = Features({"idx": Value("int32"), "extra": Value("int32"), "label": HUB_FEATURES["label"],
                      "sentence": Value("string")})
    serve(monkeypatch, hub_dict(rows, feats))
    with pytest.raises(DataError, match="columns"):  # an extra column is a different data set: refused
        load_sst2("hub")
    rows = {k: {"idx": r["idx"], "label": r["label"], "sentence": r["sentence"]} for k, r in ROWS.items()}
    feats = Features({"idx": Value("int32"), "label": HUB_FEATURES["label"], "sentence": Value("string")})
    serve(monkeypatch, hub_dict(rows, feats))
    assert load_sst2("hub")["train"].column_names == ["sentence", "label", "idx"]


PLAIN_INT = Features({"sentence": Value("string"), "label": Value("int64"), "idx": Value("int32")})


@pytest.mark.parametrize(
    "dsd, needle",
    [
        (hub_dict(with_row("train", label=2), PLAIN_INT),
         "train split, row 0: label 2 is not 0 (negative) or 1 (positive); fix or remove that row."),
        (hub_dict(with_row("validation", label=-1), PLAIN_INT),
         "validation split, row 0: label -1 is not 0 (negative) or 1 (positive)"),
        (hub_dict(with_row("train", sentence="  ")), "train split, row 0: empty sentence; fix or remove that row."),
        (hub_dict(with_row("test", label=1), PLAIN_INT), "test split, row 0: label 1 in the test split, expected -1"),
        (hub_dict({k: {c: v for c, v in r.items() if c != "label"} for k, r in ROWS.items()},
                  Features({"sentence": Value("string"), "idx": Value("int32")})),
         "columns ['sentence', 'idx'], expected"),
        (DatasetDict({k: v for k, v in hub_dict().items() if k != "test"}), "no test split"),
        (hub_dict(features=Features({**HUB_FEATURES, "label": ClassLabel(names=["positive", "negative"])})),
         "label names ['positive', 'negative']"),
        (hub_dict({**ROWS, "validation": {"sentence": [], "label": [], "idx": []}}), "validation split: no rows"),
    ],
)
def test_malformed_hub_data_is_refused_like_the_tsv_path(monkeypatch, dsd, needle):
    serve(monkeypatch, dsd)
    with pytest.raises(DataError) as err:
        load_sst2("hub")
    msg = str(err.value)
    assert msg.startswith("nyu-mll/glue/sst2") and needle in msg, msg


def test_hub_and_tsv_use_the_same_words_for_the_same_fault(monkeypatch, tmp_path):
    for name, text in {**TSV, "train.tsv": "sentence\tlabel\ngood film\t2\n \t1\n"}.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(DataError) as tsv_err:
        load_glue_folder(tmp_path)
    serve(monkeypatch, hub_dict(with_row("train", label=2), PLAIN_INT))
    with pytest.raises(DataError) as hub_err:
        load_sst2("hub")
    tail = ": label '2' is not 0 (negative) or 1 (positive); fix or remove that"
    assert tail in str(tsv_err.value)
    assert tail.replace("'2'", "2") in str(hub_err.value)
