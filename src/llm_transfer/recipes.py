"""The series' standard SST-2 fine-tune (notebook 04), reusable by later notebooks and the CLI."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from .checkpoints import read_metrics, recover, run_lock, verify_manifest
from .data import load_sst2, subsample, tokenize
from .identity import data_identity, describe_mismatch, mismatch, model_identity, run_identity
from .models import load_classifier, load_tokenizer, resolve_model
from .settings import MPNET_MODEL, Settings, display_path, seed_everything
from .training import FineTuneResult, TrainConfig, fine_tune, recipe_fields

FINETUNE_RUN = "sst2-finetune"  # artifacts/<mode>/sst2-finetune/{best,last}
MPNET_RUN = "sst2-finetune-mpnet"  # the stronger source model's run (notebook 05, section 8)
QUICK_TRAIN_ROWS = 6000


def finetune_run(settings: Settings) -> str:
    """The run folder's name for the settings' model: MPNet's runs apart from the default model's."""
    return MPNET_RUN if settings.model == MPNET_MODEL else FINETUNE_RUN


def sst2_recipe(settings: Settings) -> tuple[TrainConfig, int | None]:
    """Hyper-parameters and training-set size for the settings' mode (None = the whole split)."""
    if settings.quick:
        cfg = TrainConfig(epochs=1, batch_size=32, lr=1e-4, warmup_ratio=0.1, max_length=64, seed=settings.seed)
        return cfg, QUICK_TRAIN_ROWS
    if settings.model == MPNET_MODEL:  # 109.5 M parameters, ~5x MiniLM's compute a row: one epoch at a lower lr
        cfg = TrainConfig(epochs=1, batch_size=32, lr=3e-5, warmup_ratio=0.1, max_length=128, seed=settings.seed)
        return cfg, None
    # Full data: the classic BERT recipe (3 epochs, lr 5e-5, 10 % warm-up) with the token-embedding table frozen:
    # 1.15-1.27x the examples per CPU-second and +1.15 points of last-epoch dev accuracy over 3 seeds each
    # (benchmarks/results/frozen_table.md).
    cfg = TrainConfig(epochs=3, batch_size=32, lr=5e-5, warmup_ratio=0.1, max_length=128, seed=settings.seed,
                      freeze_word_embeddings=True)
    return cfg, None


def task_run(settings: Settings, task: str) -> str:
    """The run folder's name of a GLUE task's fine-tune: SST-2's own (finetune_run), else 'glue-<task>'."""
    from .glue import get_task

    name = get_task(task).name
    return finetune_run(settings) if name == "sst2" else f"glue-{name}"


def task_recipe(settings: Settings, task: str) -> tuple[TrainConfig, int | None]:
    """Hyper-parameters and training-set size of a GLUE task for the settings' mode (SST-2: sst2_recipe).

    SST-2's recipe for the mode and model (quick: 6,000 rows, 1 epoch at lr 1e-4, max length 64; full: every row, 3
    epochs at lr 5e-5, max length 128), with room for both sentences of a pair: max length 128 in both modes; the
    token-embedding table trained (SST-2's full recipe freezes it, measured on SST-2 alone).
    """
    from .glue import get_task

    t = get_task(task)
    if t.name == "sst2":
        return sst2_recipe(settings)
    cfg, rows = sst2_recipe(settings)  # the frozen table was measured on SST-2 only: the others train it
    return replace(cfg, max_length=128 if t.is_pair else cfg.max_length, freeze_word_embeddings=False), rows


def sst2_inputs(settings: Settings) -> tuple[TrainConfig, object, object, object]:
    """(recipe, tokenizer, tokenized training rows, tokenized dev split) of the settings' standard fine-tune."""
    cfg, rows = sst2_recipe(settings)
    dsd = load_sst2(settings.data)
    tokenizer = load_tokenizer(settings.model)
    train = tokenize(subsample(dsd["train"], rows, settings.seed), tokenizer, cfg.max_length)
    dev = tokenize(dsd["validation"], tokenizer, cfg.max_length)
    return cfg, tokenizer, train, dev


def sst2_identity(settings: Settings, inputs: tuple | None = None) -> dict:
    """The identity (identity.py) a checkpoint of the settings' standard fine-tune must record to be reused."""
    cfg, _, train, dev = inputs or sst2_inputs(settings)
    return run_identity(model_identity(source=resolve_model(settings.model)), data_identity(train, dev), cfg.seed,
                        recipe_fields(cfg))


def run_sst2_finetune(settings: Settings, output_dir: str | Path | None = None, log=print,
                      inputs: tuple | None = None) -> FineTuneResult:
    """Fine-tune the settings' model on SST-2 with the mode's recipe, writing best/ and last/ checkpoints."""
    cfg, tokenizer, train, dev = inputs or sst2_inputs(settings)
    seed_everything(settings.seed)
    model = load_classifier(settings.model)
    out = Path(output_dir) if output_dir is not None else settings.run_dir(finetune_run(settings))
    return fine_tune(model, tokenizer, train, dev, cfg, output_dir=out, device=settings.device, log=log)


def ensure_finetuned(settings: Settings, log=print) -> Path:
    """Notebook 04's best checkpoint: reused when it is finished and holds this very run, trained when not.

    "This very run": the same model weights, training and dev rows, seed and recipe (identity.py). A checkpoint of
    another run is not reused: one line says what differs, and it is replaced. An unfinished run of the same
    identity is resumed. Holds the run folder's lock while it checks and trains, so notebooks started side by side
    wait for one run instead of training the same checkpoint twice into one folder.
    """
    out = settings.run_dir(finetune_run(settings))
    with run_lock(out, log=log):
        inputs = sst2_inputs(settings)
        now = sst2_identity(settings, inputs)
        best, last = recover(out / "best"), recover(out / "last")
        foreign = None  # (folder, differences) of the first checkpoint that holds another run
        for folder in (f for f in (last, best) if f is not None):
            if foreign is None and (diffs := mismatch(folder, now)) is not None:
                foreign = (folder, diffs)
        finished = last is not None and len(read_metrics(last)["history"]) >= inputs[0].epochs
        if foreign is None and finished and best is not None:
            verify_manifest(best)
            log(f"reusing the fine-tuned checkpoint {display_path(best)}")
            return best
        if foreign is not None:
            log(f"{describe_mismatch(*foreign, 'a fine-tune')}: not reused; replacing the run")
        if foreign is not None or finished:  # another run, or a finished one without best/: train it again
            for folder in (f for f in (last, best) if f is not None):
                shutil.rmtree(folder)
        log(f"no finished checkpoint in {display_path(out)}: fine-tuning one now ({settings.mode} mode)")
        run_sst2_finetune(settings, out, log=log, inputs=inputs)
    return out / "best"
