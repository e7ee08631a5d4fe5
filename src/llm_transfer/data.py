"""GLUE SST-2 as a `datasets.DatasetDict`, from a local GLUE folder or from the Hugging Face hub."""

from __future__ import annotations

import os
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, DatasetInfo, Features, Value

from .settings import ENV_DATA, HUB_DATA, display_path

HUB_ID, HUB_CONFIG = "nyu-mll/glue", "sst2"
LABEL_NAMES = ["negative", "positive"]
FEATURES = Features(
    {"sentence": Value("string"), "label": ClassLabel(names=LABEL_NAMES), "idx": Value("int32")}
)
# split name -> (file name, expected header)
GLUE_FILES = {
    "train": ("train.tsv", ["sentence", "label"]),
    "validation": ("dev.tsv", ["sentence", "label"]),
    "test": ("test.tsv", ["index", "sentence"]),
}

HOW_TO_GET = (
    "Two ways to get SST-2: (1) a local folder in the GLUE layout (train.tsv, dev.tsv, test.tsv), e.g. "
    "../shared/data/glue/SST-2 next to the checkout or the folder from GLUE's download script, passed as "
    f"load_sst2('path/to/SST-2') or with {ENV_DATA}=path/to/SST-2; "
    f"(2) the Hugging Face hub ({HUB_ID}, config {HUB_CONFIG}), which needs internet: "
    f"load_sst2('hub') or {ENV_DATA}=hub."
)


class DataError(ValueError):
    """SST-2 input that cannot be used as it is; the message names the file, the line and the fix."""


def bad_label(where: str, value, unit: str) -> str:
    """The message for a label that is not 0 or 1 (the same for a TSV line and a hub row)."""
    return f"{where}: label {value!r} is not 0 (negative) or 1 (positive); fix or remove that {unit}."


def empty_sentence(where: str, unit: str) -> str:
    """The message for a blank sentence (the same for a TSV line and a hub row)."""
    return f"{where}: empty sentence; fix or remove that {unit}."


def text_lines(path: Path):
    """(line number, line without its newline) of a UTF-8 text file; a byte-order mark before line 1 is dropped
    (GLUE's MRPC files, spreadsheets); DataError naming the line on bytes that are not UTF-8."""
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path}, line {lineno}: bytes that are not UTF-8 ({e.reason} at byte {e.start}); "
                    "re-save the file as UTF-8."
                ) from None
            yield lineno, line.rstrip("\r\n")


def read_glue_tsv(path: str | os.PathLike, split: str) -> Dataset:
    """Read one GLUE SST-2 TSV file (quoting off, a UTF-8 byte-order mark allowed), checking every line.

    Raises DataError on the first bad line.
    """
    path = Path(path)
    if split not in GLUE_FILES:
        raise ValueError(f"split must be one of {list(GLUE_FILES)}, not {split!r}")
    expected = GLUE_FILES[split][1]
    if not path.is_file():
        raise DataError(f"{path}: file not found. {HOW_TO_GET}")
    sentences: list[str] = []
    labels: list[int] = []
    idxs: list[int] = []
    for lineno, line in text_lines(path):
        cols = line.split("\t")
        if lineno == 1:
            if [c.strip() for c in cols] != expected:
                raise DataError(
                    f"{path}, line 1: header is {line!r}, expected {chr(9).join(expected)!r} "
                    f"(tab-separated) for the {split} split; is this the right file?"
                )
            continue
        if line == "":
            raise DataError(f"{path}, line {lineno}: empty line; remove it.")
        if len(cols) != len(expected):
            raise DataError(
                f"{path}, line {lineno}: {len(cols)} tab-separated columns, expected {len(expected)} "
                f"({', '.join(expected)}); a tab inside a sentence or a missing column? Fix that line."
            )
        if split == "test":
            index_s, sentence = cols
            try:
                idx = int(index_s)
            except ValueError:
                raise DataError(
                    f"{path}, line {lineno}: index {index_s!r} is not an integer; fix that line."
                ) from None
            label = -1
        else:
            sentence, label_s = cols
            if label_s.strip() not in ("0", "1"):
                raise DataError(bad_label(f"{path}, line {lineno}", label_s, "line"))
            label, idx = int(label_s), lineno - 2
        if not sentence.strip():
            raise DataError(empty_sentence(f"{path}, line {lineno}", "line"))
        sentences.append(sentence)
        labels.append(label)
        idxs.append(idx)
    if not sentences:
        raise DataError(f"{path}: no rows after the header; the file is empty or truncated.")
    # The description travels with every subset and tokenized copy: checkpoints record it as the data source.
    info = DatasetInfo(description=f"GLUE SST-2 {split} split, {display_path(path)}", features=FEATURES)
    return Dataset.from_dict({"sentence": sentences, "label": labels, "idx": idxs}, features=FEATURES, info=info)


def load_glue_folder(folder: str | os.PathLike) -> DatasetDict:
    """Load train / validation / test from a folder in the GLUE layout."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder}: SST-2 folder not found. {HOW_TO_GET}")
    missing = [f for f, _ in GLUE_FILES.values() if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{folder}: missing {', '.join(missing)} (a GLUE SST-2 folder holds all three). {HOW_TO_GET}")
    return DatasetDict({split: read_glue_tsv(folder / f, split) for split, (f, _) in GLUE_FILES.items()})


def load_from_hub() -> DatasetDict:
    """Load SST-2 from the Hugging Face hub (needs internet)."""
    import datasets

    try:
        dsd = datasets.load_dataset(HUB_ID, HUB_CONFIG)
    except Exception as e:  # connection errors come in many types across library versions
        raise DataError(f"Could not load {HUB_ID}/{HUB_CONFIG} from the hub ({type(e).__name__}: {e}). "
                        f"{HOW_TO_GET}") from e
    return check_hub_sst2(dsd)


def check_hub_sst2(dsd) -> DatasetDict:
    """The hub's SST-2 held to the local folder's rules (columns, label names, labels, sentences); DataError if not."""
    name = f"{HUB_ID}/{HUB_CONFIG}"
    missing = [k for k in GLUE_FILES if k not in dsd]
    if missing:
        raise DataError(f"{name}: no {', '.join(missing)} split (SST-2 has train, validation and test). {HOW_TO_GET}")
    out = {}
    for split in GLUE_FILES:
        ds = dsd[split]
        where = f"{name} {split} split"
        if sorted(ds.column_names) != sorted(FEATURES):
            raise DataError(f"{where}: columns {ds.column_names}, expected {list(FEATURES)}; is this SST-2?")
        feature = ds.features["label"]
        if isinstance(feature, ClassLabel) and feature.names != LABEL_NAMES:
            raise DataError(f"{where}: label names {feature.names}, expected {LABEL_NAMES} (0 = negative, "
                            "1 = positive); the labels would be read the wrong way round.")
        if len(ds) == 0:
            raise DataError(f"{where}: no rows; the download is empty or truncated.")
        allowed = {-1} if split == "test" else {0, 1}
        for i, (sentence, label) in enumerate(zip(ds["sentence"], ds["label"], strict=True)):
            row = f"{where}, row {i}"
            if label not in allowed:
                if split == "test":
                    raise DataError(f"{row}: label {label!r} in the test split, expected -1 (hidden labels).")
                raise DataError(bad_label(row, label, "row"))
            if not isinstance(sentence, str) or not sentence.strip():
                raise DataError(empty_sentence(row, "row"))
        out[split] = ds.select_columns(list(FEATURES)).cast(FEATURES)
        out[split].info.description = f"GLUE SST-2 {split} split, hub {HUB_ID} ({HUB_CONFIG})"  # the data source
    return DatasetDict(out)


def load_sst2(source: str | os.PathLike | None = None) -> DatasetDict:
    """SST-2 with the hub's schema (sentence, label, idx; test labels -1) from a GLUE folder or 'hub'."""
    if source is None:
        from .settings import get_settings

        source = get_settings().data
    if str(source) == HUB_DATA:
        return load_from_hub()
    return load_glue_folder(source)


def subsample(ds: Dataset, n: int | None, seed: int = 0) -> Dataset:
    """A reproducible random subset of n rows (all rows when n is None or too large)."""
    if n is None or n >= len(ds):
        return ds
    return ds.shuffle(seed=seed).select(range(n))


def tokenize(dsd: DatasetDict | Dataset, tokenizer, max_length: int = 128):
    """Add input_ids / attention_mask (no padding: batches are padded later, to their own longest row)."""

    def enc(batch):
        return tokenizer(batch["sentence"], truncation=True, max_length=max_length)

    return dsd.map(enc, batched=True, desc=None)


def label_counts(ds: Dataset) -> dict[str, int]:
    """How many rows carry each label name."""
    names = ds.features["label"].names
    counts = {name: 0 for name in names}
    for y in ds["label"]:
        if y >= 0:
            counts[names[y]] += 1
    return counts
