"""The series' standard SST-2 fine-tune (notebook 04), reusable by later notebooks and the CLI."""

from __future__ import annotations

from pathlib import Path

from .checkpoints import read_metrics, recover, run_lock
from .data import load_sst2, subsample, tokenize
from .models import load_classifier, load_tokenizer
from .settings import Settings, display_path, seed_everything
from .training import FineTuneResult, TrainConfig, fine_tune

FINETUNE_RUN = "sst2-finetune"  # artifacts/<mode>/sst2-finetune/{best,last}
QUICK_TRAIN_ROWS = 6000


def sst2_recipe(settings: Settings) -> tuple[TrainConfig, int | None]:
    """Hyper-parameters and training-set size for the settings' mode (None = the whole split)."""
    if settings.quick:
        cfg = TrainConfig(epochs=1, batch_size=32, lr=1e-4, warmup_ratio=0.1, max_length=64, seed=settings.seed)
        return cfg, QUICK_TRAIN_ROWS
    # Full data: the classic BERT recipe (3 epochs, lr 5e-5, 10 % warm-up); 2 epochs at lr 1e-4 gave 0.8956 dev.
    cfg = TrainConfig(epochs=3, batch_size=32, lr=5e-5, warmup_ratio=0.1, max_length=128, seed=settings.seed)
    return cfg, None


def run_sst2_finetune(settings: Settings, output_dir: str | Path | None = None, log=print) -> FineTuneResult:
    """Fine-tune the settings' model on SST-2 with the mode's recipe, writing best/ and last/ checkpoints."""
    cfg, rows = sst2_recipe(settings)
    dsd = load_sst2(settings.data)
    tokenizer = load_tokenizer(settings.model)
    train = tokenize(subsample(dsd["train"], rows, settings.seed), tokenizer, cfg.max_length)
    dev = tokenize(dsd["validation"], tokenizer, cfg.max_length)
    seed_everything(settings.seed)
    model = load_classifier(settings.model)
    out = Path(output_dir) if output_dir is not None else settings.run_dir(FINETUNE_RUN)
    return fine_tune(model, tokenizer, train, dev, cfg, output_dir=out, device=settings.device, log=log)


def ensure_finetuned(settings: Settings, log=print) -> Path:
    """Notebook 04's best checkpoint: reused when present (and finished), trained when not.

    Holds the run folder's lock while it checks and trains, so notebooks started side by side wait for one run
    instead of training the same checkpoint twice into one folder.
    """
    out = settings.run_dir(FINETUNE_RUN)
    cfg, _ = sst2_recipe(settings)
    with run_lock(out, log=log):
        last = recover(out / "last")
        if last is not None and (out / "best").is_dir():
            if len(read_metrics(last)["history"]) >= cfg.epochs:
                log(f"reusing the fine-tuned checkpoint {display_path(out / 'best')}")
                return out / "best"
        log(f"no finished checkpoint in {display_path(out)}: fine-tuning one now ({settings.mode} mode)")
        run_sst2_finetune(settings, out, log=log)
    return out / "best"
