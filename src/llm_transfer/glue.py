"""The GLUE tasks we have (CoLA, SST-2, MRPC, STS-B, QNLI, RTE, WNLI): a task table, checked loading, pair encoding.

Every task loads into a `datasets.DatasetDict` with the hub's schema (``nyu-mll/glue``, the task's config): the same
text columns (``sentence``; ``sentence1`` / ``sentence2``; ``question`` / ``sentence``), ``label`` (a ClassLabel in the
hub's order, or a float32 score for STS-B; -1 where GLUE hides the test labels) and ``idx`` (the row's position in its
file), so code runs unchanged on a local GLUE folder or on the hub.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, DatasetInfo, Features, Value

from .data import HUB_ID, DataError, load_sst2, text_lines
from .settings import ENV_DATA, HUB_DATA, display_path

SCORE_RANGE = (0.0, 5.0)  # STS-B's similarity scores


@dataclass(frozen=True)
class SplitFile:
    """One local TSV file of a task: its name, its columns in order, and which of them hold the label and index."""

    file: str
    columns: tuple[str, ...]  # the header, or the column names of a headerless file
    label: str | None = None  # None: labels hidden (GLUE's test files)
    index: str | None = None  # a column that must hold an integer row index
    header: bool = True  # False: CoLA's train and dev files start with data


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task: where its files are, what their columns mean, its labels and its metrics."""

    name: str  # the hub's config name and our key: "cola", "mrpc", ...
    title: str  # as papers write it: "CoLA"
    folder: str  # the local folder's name in GLUE's layout
    text: dict[str, str]  # hub column -> file column, first sentence first
    label_names: tuple[str, ...] | None  # class names in the hub's order; None: a real-valued score (regression)
    raw_labels: dict[str, int] | None  # label as written in the files -> class id
    metrics: tuple[str, ...]  # GLUE's metrics for the task (names of llm_transfer.metrics functions)
    files: dict[str, SplitFile]  # local splits; QNLI has no train split here
    hub_splits: tuple[str, ...] = ("train", "validation", "test")

    @property
    def is_pair(self) -> bool:
        """True for sentence-pair tasks ([CLS] a [SEP] b [SEP])."""
        return len(self.text) == 2

    @property
    def is_regression(self) -> bool:
        """True when the label is a real-valued score (STS-B)."""
        return self.label_names is None

    @property
    def num_labels(self) -> int:
        """Output units of the task's head: 1 for a score, else the number of classes."""
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def text_columns(self) -> tuple[str, ...]:
        """The hub's text columns, in the order they are encoded."""
        return tuple(self.text)

    @property
    def features(self) -> Features:
        """The hub's features for this task: text columns, label, idx."""
        label = Value("float32") if self.label_names is None else ClassLabel(names=list(self.label_names))
        return Features({**{c: Value("string") for c in self.text}, "label": label, "idx": Value("int32")})


def _pair_files(cols: tuple[str, ...], label: str = "label") -> dict[str, SplitFile]:
    """train / dev / test files of a task whose files have an index column first and the label last."""
    return {
        "train": SplitFile("train.tsv", (*cols, label), label=label, index="index"),
        "validation": SplitFile("dev.tsv", (*cols, label), label=label, index="index"),
        "test": SplitFile("test.tsv", cols, index="index"),
    }


_STSB_COLS = ("index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2")
_MRPC_COLS = ("#1 ID", "#2 ID", "#1 String", "#2 String")
_BINARY = {"0": 0, "1": 1}
_NLI = {"entailment": 0, "not_entailment": 1}

TASKS: dict[str, GlueTask] = {
    t.name: t
    for t in [
        GlueTask("cola", "CoLA", "CoLA", {"sentence": "sentence"}, ("unacceptable", "acceptable"), _BINARY,
                 ("matthews_correlation",), {
                     split: SplitFile(f, ("source", "label", "original_mark", "sentence"), label="label", header=False)
                     for split, f in (("train", "train.tsv"), ("validation", "dev.tsv"))
                 } | {"test": SplitFile("test.tsv", ("index", "sentence"), index="index")}),
        GlueTask("sst2", "SST-2", "SST-2", {"sentence": "sentence"}, ("negative", "positive"), _BINARY,
                 ("accuracy",), {
                     "train": SplitFile("train.tsv", ("sentence", "label"), label="label"),
                     "validation": SplitFile("dev.tsv", ("sentence", "label"), label="label"),
                     "test": SplitFile("test.tsv", ("index", "sentence"), index="index"),
                 }),
        GlueTask("mrpc", "MRPC", "MRPC", {"sentence1": "#1 String", "sentence2": "#2 String"},
                 ("not_equivalent", "equivalent"), _BINARY, ("f1", "accuracy"), {
                     "train": SplitFile("train.tsv", ("Quality", *_MRPC_COLS), label="Quality"),
                     "validation": SplitFile("dev.tsv", ("Quality", *_MRPC_COLS), label="Quality"),
                     "test": SplitFile("test.tsv", ("index", *_MRPC_COLS), index="index"),
                 }),
        GlueTask("stsb", "STS-B", "STS-B", {"sentence1": "sentence1", "sentence2": "sentence2"}, None, None,
                 ("pearson", "spearman"), _pair_files(_STSB_COLS, "score")),
        GlueTask("qnli", "QNLI", "QNLI", {"question": "question", "sentence": "sentence"},
                 ("entailment", "not_entailment"), _NLI, ("accuracy",),
                 {k: v for k, v in _pair_files(("index", "question", "sentence")).items() if k != "train"}),
        GlueTask("rte", "RTE", "RTE", {"sentence1": "sentence1", "sentence2": "sentence2"},
                 ("entailment", "not_entailment"), _NLI, ("accuracy",),
                 _pair_files(("index", "sentence1", "sentence2"))),
        GlueTask("wnli", "WNLI", "WNLI", {"sentence1": "sentence1", "sentence2": "sentence2"},
                 ("not_entailment", "entailment"), _BINARY, ("accuracy",),
                 _pair_files(("index", "sentence1", "sentence2"))),
    ]
}


def get_task(task: str | GlueTask) -> GlueTask:
    """The table entry of a task name (case and '-' ignored: 'CoLA', 'sts-b'); ValueError for an unknown one."""
    if isinstance(task, GlueTask):
        return task
    key = str(task).lower().replace("-", "").replace("_", "")
    if key not in TASKS:
        raise ValueError(f"unknown GLUE task {task!r}; the tasks here are {', '.join(TASKS)} "
                         "(MNLI, QQP and QNLI's train split are online only, through the hub).")
    return TASKS[key]


def how_to_get(task: str | GlueTask) -> str:
    """What to pass to load_task to get a task, locally or from the hub (the tail of every 'not found' error)."""
    t = get_task(task)
    files = ", ".join(s.file for s in t.files.values())
    qnli = " QNLI's train split is online only: use the hub for it." if t.name == "qnli" else ""
    return (f"Two ways to get {t.title}: (1) a local folder in the GLUE layout ({files}), e.g. "
            f"../shared/data/glue/{t.folder} next to the checkout, passed as load_task({t.name!r}, "
            f"'path/to/{t.folder}') or its parent folder, or found next to the SST-2 folder that {ENV_DATA} names; "
            f"(2) the Hugging Face hub ({HUB_ID}, config {t.name}), which needs internet: load_task({t.name!r}, 'hub') "
            f"or {ENV_DATA}=hub.{qnli}")


def _allowed_labels(t: GlueTask) -> str:
    """The label values a task's files may hold, as an error message lists them."""
    names = t.label_names or ()
    return " or ".join(repr(raw) if raw == names[i] else f"{raw!r} ({names[i]})" for raw, i in t.raw_labels.items())


def _score(t: GlueTask, value: str, where: str, unit: str) -> float:
    """An STS-B score as a float in 0-5, else DataError."""
    try:
        score = float(value)
    except ValueError:
        raise DataError(f"{where}: score {value!r} is not a number; fix or remove that {unit}.") from None
    lo, hi = SCORE_RANGE
    if not lo <= score <= hi:  # NaN fails too
        raise DataError(f"{where}: score {value!r} is outside {lo:g}–{hi:g}; fix or remove that {unit}.")
    return score


def _label(t: GlueTask, value: str, where: str) -> int | float:
    """The class id (or score) of a label as written in a task's file; DataError for any other value."""
    if t.is_regression:
        return _score(t, value.strip(), where, "line")
    if value.strip() not in t.raw_labels:
        raise DataError(f"{where}: label {value!r} is not {_allowed_labels(t)}; fix or remove that line.")
    return t.raw_labels[value.strip()]


def read_task_tsv(task: str | GlueTask, split: str, path: str | os.PathLike) -> Dataset:
    """Read one GLUE TSV file of a task (quoting off, a leading byte-order mark dropped), checking every line."""
    t = get_task(task)
    if t.name == "sst2":
        from .data import read_glue_tsv

        return read_glue_tsv(path, split)
    if split not in t.files:
        raise ValueError(f"{t.title} has local splits {list(t.files)}, not {split!r}")
    spec, path = t.files[split], Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found. {how_to_get(t)}")
    pos = {c: i for i, c in enumerate(spec.columns)}
    out: dict[str, list] = {c: [] for c in t.text} | {"label": [], "idx": []}
    hidden = -1.0 if t.is_regression else -1
    for lineno, line in text_lines(path):  # UTF-8 checked, a byte-order mark dropped
        where = f"{path}, line {lineno}"
        cols = line.split("\t")
        if lineno == 1 and spec.header:
            if [c.strip() for c in cols] != list(spec.columns):
                raise DataError(f"{where}: header is {line!r}, expected {chr(9).join(spec.columns)!r} "
                                f"(tab-separated) for the {t.title} {split} split; is this the right file?")
            continue
        if not line.strip():
            raise DataError(f"{where}: empty line; remove it.")
        if len(cols) != len(spec.columns):
            raise DataError(f"{where}: {len(cols)} tab-separated columns, expected {len(spec.columns)} "
                            f"({', '.join(spec.columns)}); a tab inside a sentence or a missing column? "
                            "Fix that line.")
        if spec.index is not None:
            index_s = cols[pos[spec.index]]
            try:
                int(index_s)
            except ValueError:
                raise DataError(f"{where}: index {index_s!r} is not an integer; fix that line.") from None
        label = hidden if spec.label is None else _label(t, cols[pos[spec.label]], where)
        for name, col in t.text.items():
            if not cols[pos[col]].strip():
                raise DataError(f"{where}: empty {name}; fix or remove that line.")
            out[name].append(cols[pos[col]])
        out["label"].append(label)
        out["idx"].append(len(out["idx"]))  # the hub's idx: the row's position in its file
    if not out["idx"]:
        after = " after the header" if spec.header else ""
        raise DataError(f"{path}: no rows{after}; the file is empty or truncated.")
    info = DatasetInfo(description=f"GLUE {t.title} {split} split, {display_path(path)}", features=t.features)
    return Dataset.from_dict(out, features=t.features, info=info)


def task_folder(task: str | GlueTask, source: str | os.PathLike) -> Path:
    """The task's folder from a path that is either that folder or a GLUE folder holding it (e.g. data/glue)."""
    t = get_task(task)
    p = Path(source).expanduser()
    return p / t.folder if (p / t.folder).is_dir() else p


def load_task_folder(task: str | GlueTask, folder: str | os.PathLike) -> DatasetDict:
    """Every local split of a task from its folder in the GLUE layout (QNLI: validation and test only)."""
    t = get_task(task)
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder}: {t.title} folder not found. {how_to_get(t)}")
    missing = [s.file for s in t.files.values() if not (folder / s.file).is_file()]
    if missing:
        raise DataError(f"{folder}: missing {', '.join(missing)} (a GLUE {t.title} folder holds "
                        f"{', '.join(s.file for s in t.files.values())}). {how_to_get(t)}")
    return DatasetDict({split: read_task_tsv(t, split, folder / s.file) for split, s in t.files.items()})


def check_hub_task(task: str | GlueTask, dsd) -> DatasetDict:
    """A task as the hub serves it, held to the local files' rules (splits, columns, labels, text); DataError if not."""
    t = get_task(task)
    name = f"{HUB_ID}/{t.name}"
    missing = [s for s in t.hub_splits if s not in dsd]
    if missing:
        raise DataError(f"{name}: no {', '.join(missing)} split ({t.title} has {', '.join(t.hub_splits)}). "
                        f"{how_to_get(t)}")
    features = t.features
    out = {}
    for split in t.hub_splits:
        ds, where = dsd[split], f"{name} {split} split"
        if sorted(ds.column_names) != sorted(features):
            raise DataError(f"{where}: columns {ds.column_names}, expected {list(features)}; is this {t.title}?")
        feature = ds.features["label"]
        if t.is_regression and isinstance(feature, ClassLabel):
            raise DataError(f"{where}: label is a class label {feature.names}, expected a real-valued score 0–5.")
        if not t.is_regression and isinstance(feature, ClassLabel) and feature.names != list(t.label_names):
            raise DataError(f"{where}: label names {feature.names}, expected {list(t.label_names)}; "
                            "the labels would be read the wrong way round.")
        if len(ds) == 0:
            raise DataError(f"{where}: no rows; the download is empty or truncated.")
        classes = set(range(t.num_labels))
        for i, row in enumerate(zip(ds["label"], *(ds[c] for c in t.text), strict=True)):
            label, texts, at = row[0], row[1:], f"{where}, row {i}"
            if split == "test" and label == -1:
                pass  # hidden labels (the hub's MRPC test split has its real ones)
            elif t.is_regression:
                _score(t, label, at, "row")
            elif label not in classes:
                allowed = ", ".join(f"{k} ({n})" for k, n in enumerate(t.label_names))
                raise DataError(f"{at}: label {label!r} is not one of {allowed}; fix or remove that row.")
            for col, text in zip(t.text, texts, strict=True):
                if not isinstance(text, str) or not text.strip():
                    raise DataError(f"{at}: empty {col}; fix or remove that row.")
        out[split] = ds.select_columns(list(features)).cast(features)
        out[split].info.description = f"GLUE {t.title} {split} split, hub {HUB_ID} ({t.name})"  # the data source
    return DatasetDict(out)


def load_task_from_hub(task: str | GlueTask) -> DatasetDict:
    """A task from the Hugging Face hub's nyu-mll/glue (needs internet), checked like the local files."""
    import datasets

    t = get_task(task)
    try:
        dsd = datasets.load_dataset(HUB_ID, t.name)
    except Exception as e:  # connection errors come in many types across library versions
        raise DataError(f"Could not load {HUB_ID}/{t.name} from the hub ({type(e).__name__}: {e}). "
                        f"{how_to_get(t)}") from e
    return check_hub_task(t, dsd)


def load_task(task: str | GlueTask, source: str | os.PathLike | None = None) -> DatasetDict:
    """A GLUE task with the hub's schema, from its local folder, a GLUE folder holding it, or 'hub'.

    With no source, the data setting decides: 'hub', or the task's folder next to the SST-2 folder it names.
    """
    t = get_task(task)
    if source is None:
        from .settings import get_settings

        data = get_settings().data
        source = data if data == HUB_DATA or t.name == "sst2" else Path(data).parent
    if str(source) == HUB_DATA:
        return load_sst2(HUB_DATA) if t.name == "sst2" else load_task_from_hub(t)
    if t.name == "sst2":
        return load_sst2(task_folder(t, source))
    return load_task_folder(t, task_folder(t, source))


def encode_task(dsd: DatasetDict | Dataset, tokenizer, task: str | GlueTask, max_length: int = 128):
    """Add input_ids / token_type_ids / attention_mask: [CLS] a [SEP] for one sentence, [CLS] a [SEP] b [SEP] for pairs.

    A pair goes through the tokenizer's pair API (segment 0 for a and its [SEP]s up to the first, 1 for b), truncated
    longest-first to max_length; no padding (batches are padded later, to their own longest row).
    """
    t = get_task(task)
    columns = dsd.column_names if isinstance(dsd, Dataset) else next(iter(dsd.values())).column_names
    missing = [c for c in t.text_columns if c not in columns]
    if missing:
        raise DataError(f"{t.title} rows need the columns {list(t.text_columns)}; these have {columns} "
                        f"(missing {missing}). Load them with load_task({t.name!r}).")
    first, *second = t.text_columns

    def enc(batch):
        pair = (batch[second[0]],) if second else ()
        return tokenizer(batch[first], *pair, truncation=True, max_length=max_length)

    return dsd.map(enc, batched=True, desc=None)


def head_config(task: str | GlueTask) -> dict:
    """num_labels, problem_type and label maps that make AutoModelForSequenceClassification build the task's head.

    STS-B: one output unit and problem_type 'regression', so the model's loss is the mean squared error on a float
    label; the classification tasks: one unit per class and cross-entropy.
    """
    t = get_task(task)
    if t.is_regression:
        return {"num_labels": 1, "problem_type": "regression", "id2label": {0: "score"}, "label2id": {"score": 0}}
    return {"num_labels": t.num_labels, "problem_type": "single_label_classification",
            "id2label": dict(enumerate(t.label_names)), "label2id": {n: i for i, n in enumerate(t.label_names)}}


def load_task_classifier(task: str | GlueTask, name: str | os.PathLike | None = None, random_init: bool = False):
    """A sequence classifier with a fresh head for the task (see head_config) on a pretrained or random encoder."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from .models import _from_pretrained, resolve_model

    source, head = resolve_model(name), head_config(task)
    if random_init:
        return AutoModelForSequenceClassification.from_config(_from_pretrained(AutoConfig, source, **head))
    # ignore_mismatched_sizes: a checkpoint fine-tuned on another task (STS-B's 1-unit head under MRPC's 2) gets a
    # fresh head of the task's size, not a loading error
    return _from_pretrained(AutoModelForSequenceClassification, source, use_safetensors=True,
                            ignore_mismatched_sizes=True, **head)
