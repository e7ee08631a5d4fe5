"""The GLUE task table: the real files and their quirks, malformed input, the hub path (mocked), pairs, the heads."""

from __future__ import annotations

import datasets
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from llm_transfer.data import DataError
from llm_transfer.glue import (
    TASKS,
    encode_task,
    get_task,
    head_config,
    load_task,
    load_task_classifier,
    load_task_folder,
)
from llm_transfer.models import sha256_file
from llm_transfer.settings import ENV_DATA, find_local_sst2

# Row counts of ../shared/README.md (QNLI: dev and test only here; its counts are the hub's).
README_ROWS = {
    "cola": {"train": 8551, "validation": 1043, "test": 1063},
    "sst2": {"train": 67349, "validation": 872, "test": 1821},
    "mrpc": {"train": 3668, "validation": 408, "test": 1725},
    "rte": {"train": 2490, "validation": 277, "test": 3000},
    "stsb": {"train": 5749, "validation": 1500, "test": 1379},
    "wnli": {"train": 635, "validation": 71, "test": 146},
    "qnli": {"validation": 5463, "test": 5463},
}
BOM = "\ufeff"
MRPC_HEAD = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
STSB_HEAD = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"
GOOD = {  # small, well-formed folders in each task's real layout
    "cola": {"train.tsv": "gj04\t1\t\tThe book fell.\ngj04\t0\t*\tBook the fell.\n",
             "dev.tsv": "gj04\t1\t\tIt rained.",  # the real dev file has no final newline either
             "test.tsv": "index\tsentence\n0\tIt snowed.\n"},
    "mrpc": {"train.tsv": BOM + MRPC_HEAD + "1\t11\t12\tA cat sat .\tThe cat sat .\n"
                          "0\t13\t14\tIt rains .\tIt is dry .\n",
             "dev.tsv": BOM + MRPC_HEAD + "1\t15\t16\tHe left .\tHe went away .\n",
             "test.tsv": "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t17\t18\tShe won .\tShe lost .\n"},
    "stsb": {"train.tsv": STSB_HEAD + "\tscore\n0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane.\t"
                          "An air plane.\t5.000\n1\tmain-news\tnews\t2013\t0002\tnone\tnone\tA dog.\tA cat.\t0.6\n",
             "dev.tsv": STSB_HEAD + "\tscore\n0\tmain-captions\tMSRvid\t2012test\t0000\tnone\tnone\tA man.\t"
                        "A man.\t0\n",
             "test.tsv": STSB_HEAD + "\n0\tmain-captions\tMSRvid\t2012test\t0024\tnone\tnone\tA girl.\tA boy.\n"},
    "rte": {"train.tsv": "index\tsentence1\tsentence2\tlabel\n0\tNo rain fell.\tRain fell.\tnot_entailment\n"
                         "1\tA pope died.\tA pope is dead.\tentailment\n",
            "dev.tsv": "index\tsentence1\tsentence2\tlabel\n0\tIt is hot.\tIt is warm.\tentailment\n",
            "test.tsv": "index\tsentence1\tsentence2\n0\tIt is cold.\tIt is freezing.\n"},
}


def write_task(tmp_path, task: str, **override):
    """A folder with GOOD[task]'s files, some replaced (str or bytes) or removed (None)."""
    folder = tmp_path / get_task(task).folder
    folder.mkdir(exist_ok=True)
    for name, text in {**GOOD[task], **override}.items():
        if text is not None:
            (folder / name).write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return folder


@pytest.fixture(scope="module")
def glue_dir():
    """The real GLUE folder (../shared/data/glue)."""
    sst2 = find_local_sst2()
    if sst2 is None:
        pytest.skip("no local GLUE folder (../shared/data/glue)")
    return sst2.parent


@pytest.mark.parametrize("task", list(README_ROWS))
def test_real_files_have_the_readmes_row_counts_and_the_hubs_schema(glue_dir, task):
    dsd = load_task(task, glue_dir)
    assert {k: len(v) for k, v in dsd.items()} == README_ROWS[task]
    t = TASKS[task]
    for split, ds in dsd.items():
        assert ds.features == t.features, split
        assert ds["idx"][:3] == [0, 1, 2]
        if split == "test":
            assert set(ds["label"]) == {-1}
    labels = dsd["validation"]["label"]
    if t.is_regression:
        assert 0.0 == min(labels) and max(labels) == 5.0
    else:
        assert set(labels) == set(range(t.num_labels))  # every class occurs, no other value


@pytest.mark.parametrize("task", [t for t in README_ROWS if t != "sst2"])
def test_real_files_are_the_ones_their_sha256sums_list(glue_dir, task):
    folder = glue_dir / TASKS[task].folder
    sums = dict(line.split()[::-1] for line in (folder / "SHA256SUMS").read_text().splitlines() if line.strip())
    assert {s.file for s in TASKS[task].files.values()} <= set(sums)
    for name, digest in sums.items():
        assert sha256_file(folder / name) == digest, name


def test_mrpc_reads_the_real_byte_order_marked_files(glue_dir):
    raw = (glue_dir / "MRPC" / "train.tsv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfQuality\t#1 ID")  # the quirk this test is about
    dsd = load_task("mrpc", glue_dir / "MRPC")
    first = dsd["train"][0]
    assert first["sentence1"].startswith("Amrozi accused his brother")
    assert first["sentence2"].startswith("Referring to him as only")
    assert first["label"] == 1 and dsd["train"].features["label"].int2str(1) == "equivalent"
    assert sum(dsd["train"]["label"]) == 2474 and sum(dsd["validation"]["label"]) == 279


def test_quirks_cola_headerless_stsb_scores_rte_words(glue_dir):
    cola = load_task("cola", glue_dir)
    assert cola["train"][0] == {"sentence": "Our friends won't buy this analysis, let alone the next one we propose.",
                                "label": 1, "idx": 0}  # line 1 is data, not a header
    assert sum(cola["train"]["label"]) == 6023
    stsb = load_task("stsb", glue_dir)
    assert stsb["train"][0]["label"] == 5.0 and stsb["train"][1]["label"] == pytest.approx(3.8)
    assert 0.0 <= min(stsb["train"]["label"]) and max(stsb["train"]["label"]) <= 5.0
    rte = load_task("rte", glue_dir)
    assert [rte["train"].features["label"].int2str(y) for y in rte["train"]["label"][:2]] == \
        ["not_entailment", "entailment"]
    qnli = load_task("qnli", glue_dir)
    assert list(qnli) == ["validation", "test"] and qnli["validation"].column_names == ["question", "sentence",
                                                                                        "label", "idx"]


def test_a_task_is_found_by_its_folder_its_parent_or_the_data_setting(tmp_path, monkeypatch):
    folder = write_task(tmp_path, "rte")
    (tmp_path / "SST-2").mkdir()
    by_folder, by_parent = load_task("RTE", folder), load_task("rte", tmp_path)
    monkeypatch.setenv(ENV_DATA, str(tmp_path / "SST-2"))
    by_setting = load_task("rte")  # next to the SST-2 folder the data setting names
    assert by_folder["train"].to_dict() == by_parent["train"].to_dict() == by_setting["train"].to_dict()
    assert by_folder["train"]["label"] == [1, 0]
    with pytest.raises(ValueError, match="unknown GLUE task 'mnli'.*online only"):
        get_task("mnli")


@pytest.mark.parametrize(
    "task, name, text, needle",
    [
        ("rte", "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tneutral\n",
         "line 2: label 'neutral' is not 'entailment' or 'not_entailment'; fix or remove that line."),
        ("cola", "train.tsv", "gj04\t2\t\tThe book fell.\n",
         "line 1: label '2' is not '0' (unacceptable) or '1' (acceptable)"),
        ("rte", "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\textra\n",
         "line 2: 5 tab-separated columns, expected 4 (index, sentence1, sentence2, label)"),
        ("mrpc", "dev.tsv", BOM + MRPC_HEAD + "1\t15\t16\tHe left .\n", "line 2: 4 tab-separated columns, expected 5"),
        ("cola", "dev.tsv", "gj04\t1\tIt rained.\n", "line 1: 3 tab-separated columns, expected 4"),
        ("stsb", "train.tsv", STSB_HEAD + "\tscore\n0\tg\tf\ty\t1\tn\tn\ta\tb\t5.2\n",
         "line 2: score '5.2' is outside 0–5; fix or remove that line."),
        ("stsb", "train.tsv", STSB_HEAD + "\tscore\n0\tg\tf\ty\t1\tn\tn\ta\tb\t-0.1\n", "score '-0.1' is outside 0–5"),
        ("stsb", "dev.tsv", STSB_HEAD + "\tscore\n0\tg\tf\ty\t1\tn\tn\ta\tb\tnan\n", "score 'nan' is outside 0–5"),
        ("stsb", "dev.tsv", STSB_HEAD + "\tscore\n0\tg\tf\ty\t1\tn\tn\ta\tb\thigh\n", "score 'high' is not a number"),
        ("rte", "train.tsv", b"index\tsentence1\tsentence2\tlabel\n0\tcaf\xe9\tb\tentailment\n",
         "line 2: bytes that are not UTF-8"),
        ("rte", "test.tsv", "index\tsentence1\tsentence2\n",
         "no rows after the header; the file is empty or truncated"),
        ("cola", "train.tsv", "", "no rows; the file is empty or truncated"),
        ("rte", "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\t \tentailment\n",
         "line 2: empty sentence2; fix or remove that line."),
        ("rte", "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n\n", "line 3: empty line"),
        ("rte", "train.tsv", "index\tpremise\thypothesis\tlabel\n", "line 1: header is 'index\\tpremise"),
        ("mrpc", "train.tsv", BOM + "Label\t#1 ID\t#2 ID\t#1 String\t#2 String\n", "expected 'Quality\\t#1 ID"),
        ("rte", "test.tsv", "index\tsentence1\tsentence2\nzero\ta\tb\n", "line 2: index 'zero' is not an integer"),
    ],
)
def test_malformed_input_names_file_line_and_fix(tmp_path, task, name, text, needle):
    folder = write_task(tmp_path, task, **{name: text})
    with pytest.raises(DataError) as err:
        load_task_folder(task, folder)
    msg = str(err.value)
    assert str(folder / name) in msg and needle in msg and "\n" not in msg, msg


def test_a_missing_file_or_folder_says_how_to_get_the_task(tmp_path):
    with pytest.raises(DataError, match=r"missing dev.tsv .*load_task\('mrpc', 'hub'\)"):
        load_task_folder("mrpc", write_task(tmp_path, "mrpc", **{"dev.tsv": None}))
    with pytest.raises(DataError, match="QNLI folder not found.*train split is online only"):
        load_task("qnli", tmp_path / "nowhere")


def test_mrpc_without_the_byte_order_mark_reads_the_same(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with_bom = load_task_folder("mrpc", write_task(tmp_path / "a", "mrpc"))
    plain = {k: v.removeprefix(BOM) for k, v in GOOD["mrpc"].items()}
    without = load_task_folder("mrpc", write_task(tmp_path / "b", "mrpc", **plain))
    assert with_bom["train"].to_dict() == without["train"].to_dict()
    assert with_bom["train"][0] == {"sentence1": "A cat sat .", "sentence2": "The cat sat .", "label": 1, "idx": 0}


# --- the hub path, offline: what load_dataset("nyu-mll/glue", <task>) returns -------------------------------------

def hub_like(task: str, local: DatasetDict, features: Features | None = None, **changes) -> DatasetDict:
    """The local rows as the hub serves them (plain label values), optionally with one split's rows changed."""
    out = {}
    for split, ds in local.items():
        rows = ds.to_dict()
        rows.update(changes.get(split, {}))
        out[split] = Dataset.from_dict(rows, features=features or ds.features)
    return DatasetDict(out)


def serve(monkeypatch, dsd) -> list:
    """Make datasets.load_dataset return dsd (no network); return the calls it received."""
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(a) or dsd)
    return calls


@pytest.mark.parametrize("task", ["mrpc", "stsb", "cola", "rte"])
def test_hub_path_gives_the_local_folders_dataset(tmp_path, monkeypatch, task):
    local = load_task_folder(task, write_task(tmp_path, task))
    calls = serve(monkeypatch, hub_like(task, local))
    hub = load_task(task, "hub")
    assert calls == [("nyu-mll/glue", task)]
    assert list(hub) == list(local)
    for split in local:
        assert hub[split].features == local[split].features, split
        assert hub[split].to_dict() == local[split].to_dict(), split


def test_hub_mrpc_test_labels_are_allowed_but_bad_hub_rows_are_refused(tmp_path, monkeypatch):
    mrpc = load_task_folder("mrpc", write_task(tmp_path, "mrpc"))
    serve(monkeypatch, hub_like("mrpc", mrpc, test={"label": [1]}))  # the hub's MRPC test split has real labels
    assert load_task("mrpc", "hub")["test"]["label"] == [1]
    flipped = Features({**mrpc["train"].features, "label": ClassLabel(names=["equivalent", "not_equivalent"])})
    serve(monkeypatch, hub_like("mrpc", mrpc, flipped))
    with pytest.raises(DataError, match=r"^nyu-mll/glue/mrpc train split: label names \['equivalent'"):
        load_task("mrpc", "hub")
    stsb = load_task_folder("stsb", write_task(tmp_path, "stsb"))
    serve(monkeypatch, hub_like("stsb", stsb, validation={"label": [7.5]}))
    with pytest.raises(DataError, match=r"stsb validation split, row 0: score 7.5 is outside 0–5"):
        load_task("stsb", "hub")
    plain = Features({**mrpc["train"].features, "label": Value("int64")})
    serve(monkeypatch, hub_like("mrpc", mrpc, plain, train={"label": [2, 0]}))
    with pytest.raises(DataError, match=r"train split, row 0: label 2 is not one of 0 \(not_equivalent\), 1"):
        load_task("mrpc", "hub")
    serve(monkeypatch, DatasetDict({"train": mrpc["train"], "validation": mrpc["validation"]}))
    with pytest.raises(DataError, match="no test split"):
        load_task("mrpc", "hub")
    serve(monkeypatch, DatasetDict({k: v.rename_column("sentence1", "premise") for k, v in mrpc.items()}))
    with pytest.raises(DataError, match=r"columns \['premise', 'sentence2', 'label', 'idx'\], expected"):
        load_task("mrpc", "hub")


# --- encoding and heads ------------------------------------------------------------------------------------------

def test_a_pair_is_cls_a_sep_b_sep_with_segment_ids(tokenizer, tmp_path):
    stsb = load_task_folder("stsb", write_task(tmp_path, "stsb"))
    enc = encode_task(stsb, tokenizer, "stsb")["train"][0]
    assert tokenizer.convert_ids_to_tokens(enc["input_ids"]) == \
        ["[CLS]", "a", "plane", ".", "[SEP]", "an", "air", "plane", ".", "[SEP]"]
    assert enc["token_type_ids"] == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    assert enc["attention_mask"] == [1] * 10
    single = encode_task(load_task_folder("cola", write_task(tmp_path, "cola")), tokenizer, "cola")["train"][0]
    assert tokenizer.convert_ids_to_tokens(single["input_ids"]) == ["[CLS]", "the", "book", "fell", ".", "[SEP]"]
    assert set(single["token_type_ids"]) == {0}
    with pytest.raises(DataError, match=r"MRPC rows need the columns \['sentence1', 'sentence2'\]"):
        encode_task(stsb["train"].remove_columns("sentence1"), tokenizer, "mrpc")


def test_every_task_gets_the_head_its_labels_need(tmp_path):
    assert head_config("stsb") == {"num_labels": 1, "problem_type": "regression", "id2label": {0: "score"},
                                   "label2id": {"score": 0}}
    assert head_config("cola")["id2label"] == {0: "unacceptable", 1: "acceptable"}
    assert {t.name: t.num_labels for t in TASKS.values() if t.is_regression} == {"stsb": 1}
    torch.manual_seed(0)
    model = load_task_classifier("stsb", "bundled").eval()
    assert model.classifier.out_features == 1 and model.config.problem_type == "regression"
    from llm_transfer.models import load_tokenizer

    tok = load_tokenizer("bundled")
    batch = tok(["A plane is taking off."], ["An air plane is taking off."], return_tensors="pt")
    label = torch.tensor([3.8])
    with torch.no_grad():
        out = model(**batch, labels=label)
    assert out.logits.shape == (1, 1)
    assert out.loss.item() == pytest.approx(((out.logits.squeeze() - 3.8) ** 2).item(), rel=1e-5)  # MSE, not CE
    assert load_task_classifier("rte", "bundled").classifier.out_features == 2
