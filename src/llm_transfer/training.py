"""The fine-tune loop (🤗 Accelerate: one CPU, one GPU or several), evaluation and prediction."""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from .batching import make_loader, sorted_batches, to_device
from .checkpoints import load_training_state, recover, run_lock, save_checkpoint
from .hardware import autocast, bf16_autocast, describe, resolve_precision
from .settings import display_path


@dataclass
class TrainConfig:
    """Hyper-parameters of one fine-tune run."""

    epochs: int = 2
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    max_length: int = 128
    group_by_length: bool = True
    eval_batch_size: int = 128
    mixed_precision: str = "auto"  # "auto" (bf16 where the hardware has it natively), "no", "bf16", "fp16"
    seed: int = 0


@dataclass
class FineTuneResult:
    """What a run produced: per-epoch history, per-step training losses, checkpoint folders, timing."""

    history: list[dict] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)  # every optimiser step this call ran, in order
    best_dir: Path | None = None
    last_dir: Path | None = None
    train_seconds: float = 0.0
    examples_seen: int = 0
    resumed_from_epoch: int = 0

    @property
    def best(self) -> dict:
        """The epoch with the highest validation accuracy."""
        return max(self.history, key=lambda h: h["eval_accuracy"])

    @property
    def examples_per_second(self) -> float:
        """Training throughput over the epochs this call ran."""
        return self.examples_seen / self.train_seconds if self.train_seconds else float("nan")


def _optimizer(model, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with no weight decay on biases and LayerNorm weights (the BERT recipe)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel updates all tensors at once: on CPU the optimizer step is ~7x faster than the
    # default per-tensor loop (benchmarks/README.md), same arithmetic.
    fused = all(p.device.type in ("cpu", "cuda", "mps", "xpu") for p in decay + no_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=fused or None)


@torch.no_grad()
def evaluate(model, ds, tokenizer, batch_size: int = 128, device: str | torch.device | None = None,
             bf16: bool | None = None, precision: str | None = None) -> dict:
    """Accuracy and mean cross-entropy on a tokenized, labelled dataset."""
    logits = predict_logits(model, tokenizer, ds, batch_size=batch_size, device=device, bf16=bf16,
                            precision=precision)
    labels = np.asarray(ds["label"])
    logp = torch.log_softmax(torch.from_numpy(logits).float(), dim=-1).numpy()
    return {"accuracy": float((logits.argmax(-1) == labels).mean()),
            "loss": float(-logp[np.arange(len(labels)), labels].mean()), "n": int(len(labels))}


@torch.no_grad()
def predict_logits(model, tokenizer, ds, batch_size: int = 128, device: str | torch.device | None = None,
                   bf16: bool | None = None, precision: str | None = None) -> np.ndarray:
    """Logits for every row of a tokenized dataset, in the dataset's order (batches sorted by length).

    bf16=None: bf16 autocast where the device has it natively (see hardware.bf16_autocast); False: fp32.
    precision ('no', 'bf16', 'fp16'; e.g. a run's recorded one) overrides bf16.
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    loader = make_loader(ds, tokenizer, batch_size, shuffle=False)
    out = None
    for rows, batch in zip(loader.batch_sampler, loader, strict=True):
        batch.pop("labels", None)
        with autocast(device, precision) if precision is not None else bf16_autocast(device, bf16):
            logits = model(**to_device(batch, device)).logits.float().cpu().numpy()
        if out is None:
            out = np.zeros((len(ds), logits.shape[-1]), dtype=np.float32)
        out[rows] = logits
    model.train(was_training)
    return out


@torch.no_grad()
def predict_proba(model, tokenizer, texts: list[str], max_length: int = 128, batch_size: int = 128,
                  bf16: bool | None = None) -> np.ndarray:
    """Class probabilities for raw texts (rows sorted by length into batches, results in input order)."""
    if isinstance(texts, str):
        texts = [texts]
    if len(texts) == 0:  # (it used to return None)
        raise ValueError("predict_proba: got no texts; pass a list of at least one sentence.")
    device = next(model.parameters()).device
    model.eval()
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    lengths = [len(x) for x in enc["input_ids"]]
    out = None
    for rows in sorted_batches(lengths, batch_size):
        feats = [{k: enc[k][i] for k in enc.keys()} for i in rows]
        batch = tokenizer.pad(feats, return_tensors="pt")
        with bf16_autocast(device, bf16):
            logits = model(**to_device(batch, device)).logits
        probs = torch.softmax(logits.float(), -1).cpu().numpy()
        if out is None:
            out = np.zeros((len(texts), probs.shape[-1]), dtype=np.float32)
        out[rows] = probs
    return out


def fine_tune(model, tokenizer, train_ds, eval_ds, cfg: TrainConfig, output_dir: str | Path | None = None,
              resume: bool = True, device: str | None = None, log=print,
              stop_after: int | None = None, progress: bool = True) -> FineTuneResult:
    """Fine-tune `model` on tokenized `train_ds`, evaluating on `eval_ds` after each epoch.

    With `output_dir`, each epoch writes `last/` (with optimizer state, for resuming) and, when the
    validation accuracy improves, `best/`; a later call with the same folder resumes after the last epoch.
    `stop_after` ends this call after that many epochs (a time-boxed session); resume later for the rest.
    `progress=False` hides the per-step progress bar (the one line per epoch stays). While it trains into
    `output_dir`, the run holds that folder's lock (checkpoints.run_lock): a second process waits.
    """
    if output_dir is None:
        return _fine_tune(model, tokenizer, train_ds, eval_ds, cfg, None, resume, device, log, stop_after, progress)
    with run_lock(output_dir, log=log):
        return _fine_tune(model, tokenizer, train_ds, eval_ds, cfg, output_dir, resume, device, log, stop_after,
                          progress)


def _fine_tune(model, tokenizer, train_ds, eval_ds, cfg: TrainConfig, output_dir: str | Path | None, resume: bool,
               device: str | None, log, stop_after: int | None, progress: bool) -> FineTuneResult:
    """The body of `fine_tune` (called with the run folder's lock held)."""
    # Accelerate keeps one state per process and refuses a second Accelerator with another precision or device.
    # So the Accelerator is asked for neither: it handles processes (DDP, gradient sync, the main process) while
    # this run's device and precision (autocast, fp16 loss scaling) are applied here, call by call.
    accelerator = Accelerator(device_placement=False)
    if accelerator.num_processes > 1:  # `accelerate launch`: one device per process
        run_device = accelerator.device
    else:
        run_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    precision = resolve_precision(cfg.mixed_precision, run_device)
    scaler = torch.amp.GradScaler(run_device.type, enabled=(precision == "fp16" and run_device.type == "cuda"))
    model.to(run_device)
    torch.manual_seed(cfg.seed)
    loader = make_loader(train_ds, tokenizer, cfg.batch_size, seed=cfg.seed, group_by_length=cfg.group_by_length)
    sampler = loader.batch_sampler
    steps_per_epoch = len(sampler)
    total = steps_per_epoch * cfg.epochs
    optimizer = _optimizer(model, cfg)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * total), total)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    result = FineTuneResult()
    args = {**asdict(cfg), "train_rows": len(train_ds), "eval_rows": len(eval_ds)}
    machine = describe(str(run_device))
    out = Path(output_dir) if output_dir is not None else None
    start_epoch = 0
    if out is not None and resume and (last := recover(out / "last")) is not None:
        saved_args, now = json.loads((last / "train_args.json").read_text()), json.loads(json.dumps(args, default=str))
        if saved_args != now:
            changed = "; ".join(f"{k}: {saved_args.get(k)!r} then, {now.get(k)!r} now"
                                for k in sorted(set(saved_args) | set(now)) if saved_args.get(k) != now.get(k))
            raise ValueError(f"{last}: was trained with other arguments ({changed}); delete {out} to train again, "
                             "or pass another output_dir or resume=False.")
        from safetensors.torch import load_file

        accelerator.unwrap_model(model).load_state_dict(load_file(str(last / "model.safetensors")), strict=False)
        state = load_training_state(last, optimizer, scheduler)
        start_epoch, result.history = state["epoch"], state["history"]
        result.resumed_from_epoch = start_epoch
        result.last_dir = last
        result.best_dir = out / "best" if (out / "best").exists() else None
        log(f"resumed from {display_path(last)} after epoch {start_epoch}/{cfg.epochs}")
    end_epoch = cfg.epochs if stop_after is None else min(cfg.epochs, start_epoch + stop_after)
    for epoch in range(start_epoch, end_epoch):
        loader.set_epoch(epoch)  # Accelerate's loader re-sets the epoch on each iteration: keep it in step
        sampler.set_epoch(epoch)
        torch.manual_seed(cfg.seed * 1000 + epoch)  # dropout: the same whether or not the run was resumed
        model.train()
        t0, seen, loss_sum = time.perf_counter(), 0, 0.0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", total=steps_per_epoch, mininterval=10,
                   leave=False, file=sys.stderr, ncols=80, disable=not (progress and accelerator.is_local_main_process))
        for batch in bar:
            batch = to_device(batch, run_device)
            with autocast(run_device, precision):
                loss = model(**batch).loss
            accelerator.backward(scaler.scale(loss))
            if cfg.max_grad_norm:
                scaler.unscale_(optimizer)
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            n = batch["labels"].shape[0]
            seen += n
            result.step_losses.append(loss.item())
            loss_sum += result.step_losses[-1] * n
        bar.close()
        dt = time.perf_counter() - t0
        result.train_seconds += dt
        result.examples_seen += seen
        ev = evaluate(accelerator.unwrap_model(model), eval_ds, tokenizer, cfg.eval_batch_size, run_device,
                      precision=precision)  # in the run's own precision
        rec = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "eval_accuracy": ev["accuracy"],
               "eval_loss": ev["loss"], "train_seconds": dt, "examples_per_second": seen / dt, "hardware": machine,
               "precision": precision}
        result.history.append(rec)
        log(f"epoch {epoch + 1}/{cfg.epochs}: train loss {rec['train_loss']:.4f} | dev acc {ev['accuracy']:.4f} "
            f"| dev loss {ev['loss']:.4f} | {rec['examples_per_second']:.0f} ex/s | {dt:.0f} s")
        if out is not None and accelerator.is_main_process:
            unwrapped = accelerator.unwrap_model(model)
            metrics = {"history": result.history, "best": result.best}
            if rec is result.best:
                result.best_dir = save_checkpoint(out / "best", unwrapped, tokenizer, metrics, args)
            result.last_dir = save_checkpoint(out / "last", unwrapped, tokenizer, metrics, args, optimizer,
                                              scheduler, {"epoch": epoch + 1, "history": result.history})
        accelerator.wait_for_everyone()
    accelerator.unwrap_model(model, keep_fp32_wrapper=False)  # drop the autocast hook a launch-wide precision adds
    return result
