"""SST-2 loading: the real files, and every kind of malformed input."""

from __future__ import annotations

import pytest

from llm_transfer.data import DataError, load_glue_folder, load_sst2, read_glue_tsv, subsample

GOOD = {
    "train.tsv": "sentence\tlabel\nhide new secretions \t0\na \"quoted\" gem \t1\n",
    "dev.tsv": "sentence\tlabel\nit 's charming . \t1\n",
    "test.tsv": "index\tsentence\n0\tuneasy mishmash .\n1\ta second one\n",
}


def make_folder(tmp_path, **override):
    for name, text in {**GOOD, **override}.items():
        if text is not None:
            (tmp_path / name).write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return tmp_path


def test_real_sst2_sizes_and_schema(sst2):
    assert {k: len(v) for k, v in sst2.items()} == {"train": 67349, "validation": 872, "test": 1821}
    assert sst2["train"].features["label"].names == ["negative", "positive"]
    assert set(sst2["test"]["label"]) == {-1}
    assert sum(sst2["validation"]["label"]) == 444
    assert sst2["test"][0] == {"sentence": "uneasy mishmash of styles and genres .", "label": -1, "idx": 0}


def test_stray_quotes_are_kept(tmp_path):
    dsd = load_glue_folder(make_folder(tmp_path))
    assert dsd["train"][1]["sentence"] == 'a "quoted" gem '
    assert dsd["test"]["idx"][:] == [0, 1]


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    """GLUE's MRPC files and spreadsheet exports start with a BOM (bug: "header is '\\ufeffsentence\\tlabel'")."""
    for sub in ("plain", "bom", "bad"):
        (tmp_path / sub).mkdir()
    plain = load_glue_folder(make_folder(tmp_path / "plain"))
    bom = load_glue_folder(make_folder(tmp_path / "bom", **{k: "\ufeff" + v for k, v in GOOD.items()}))
    assert (tmp_path / "bom" / "dev.tsv").read_bytes().startswith(b"\xef\xbb\xbf")
    for split in plain:
        assert bom[split].to_dict() == plain[split].to_dict()
    assert "\ufeff" not in bom["train"][0]["sentence"]
    with pytest.raises(DataError, match="line 2: bytes that are not UTF-8"):  # still checked after the mark
        read_glue_tsv(make_folder(tmp_path / "bad", **{"dev.tsv": b"\xef\xbb\xbfsentence\tlabel\ncaf\xe9\t1\n"})
                      / "dev.tsv", "validation")


@pytest.mark.parametrize(
    "name, text, needle",
    [
        ("train.tsv", "sentence\tlabel\ngood film\t2\n", "line 2: label '2'"),
        ("train.tsv", "sentence\tlabel\ngood film\tpositive\n", "is not 0 (negative) or 1 (positive)"),
        ("train.tsv", "sentence\tlabel\n \t1\n", "line 2: empty sentence"),
        ("train.tsv", "sentence\tlabel\ngood\tfilm\t1\n", "line 2: 3 tab-separated columns, expected 2"),
        ("train.tsv", "sentence\tlabel\nno label here\n", "line 2: 1 tab-separated columns"),
        ("train.tsv", "text\tlabel\ngood\t1\n", "line 1: header"),
        ("train.tsv", "sentence\tlabel\nok\t1\n\nalso ok\t0\n", "line 3: empty line"),
        ("dev.tsv", b"sentence\tlabel\ncaf\xe9\t1\n", "line 2: bytes that are not UTF-8"),
        ("test.tsv", "index\tsentence\nzero\tsome text\n", "line 2: index 'zero' is not an integer"),
        ("test.tsv", "sentence\tlabel\ngood\t1\n", "expected 'index\\tsentence'"),
        ("dev.tsv", "sentence\tlabel\n", "no rows after the header"),
    ],
)
def test_malformed_input_names_file_line_and_fix(tmp_path, name, text, needle):
    folder = make_folder(tmp_path, **{name: text})
    with pytest.raises(DataError) as err:
        load_glue_folder(folder)
    msg = str(err.value)
    assert str(folder / name) in msg and needle in msg, msg


def test_missing_folder_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="SST-2 folder not found.*hub"):
        load_sst2(tmp_path / "nowhere")
    folder = make_folder(tmp_path, **{"test.tsv": None})
    with pytest.raises(DataError, match="missing test.tsv"):
        load_glue_folder(folder)
    with pytest.raises(DataError, match="file not found"):
        read_glue_tsv(tmp_path / "absent.tsv", "train")


def test_unreachable_hub_explains_both_ways(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no internet")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as err:
        load_sst2("hub")
    msg = str(err.value)
    assert "no internet" in msg and "local folder" in msg and "nyu-mll/glue" in msg


def test_subsample_is_reproducible(sst2):
    a, b = subsample(sst2["train"], 50, seed=3), subsample(sst2["train"], 50, seed=3)
    assert a["idx"][:] == b["idx"][:] and len(set(a["idx"][:])) == 50
    assert subsample(sst2["train"], 50, seed=4)["idx"][:] != a["idx"][:]
    assert len(subsample(sst2["validation"], None)) == 872
