"""The fine-tune loop (🤗 Accelerate: one CPU, one GPU or several), evaluation and prediction."""

from __future__ import annotations

import contextlib
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
from .checkpoints import (
    MARKER,
    SaveError,
    event,
    load_training_state,
    load_weights,
    recover,
    run_lock,
    save_checkpoint,
    verify_manifest,
)
from .hardware import autocast, bf16_autocast, describe, launch, resolve_precision
from .identity import LATER_RECIPE_DEFAULTS, check_identity, data_identity, model_identity, run_identity
from .resume import DEFAULT_CHECKPOINT_MINUTES, HeldInterrupt, rng_state, set_rng_state
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
    freeze_word_embeddings: bool = False  # no gradient and no AdamW update for the token-embedding table


def recipe_fields(cfg: TrainConfig) -> dict:
    """The recipe as a run's identity records it: asdict(cfg) without later fields left at their defaults."""
    d = asdict(cfg)
    return {k: v for k, v in d.items() if k not in LATER_RECIPE_DEFAULTS or v != LATER_RECIPE_DEFAULTS[k]}


def freeze_word_embeddings(model) -> int:
    """Take the input token-embedding table out of training (in place); returns how many weights it froze."""
    table = model.get_input_embeddings().weight
    table.requires_grad_(False)
    return table.numel()


@dataclass
class FineTuneResult:
    """What a run produced: per-epoch history, per-step training losses, checkpoint folders, timing."""

    history: list[dict] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)  # every optimiser step this call ran, in order
    best_dir: Path | None = None
    last_dir: Path | None = None
    train_seconds: float = 0.0
    examples_seen: int = 0
    resumed_from_epoch: int = 0  # finished epochs found in last/ when this call started
    resumed_from_step: int = 0  # ... and batches of the next epoch (a mid-epoch checkpoint)

    @property
    def best(self) -> dict:
        """The epoch with the highest validation accuracy (with a task: its GLUE score, see `best_key`)."""
        return max(self.history, key=best_key)

    @property
    def examples_per_second(self) -> float:
        """Training throughput over the epochs this call ran."""
        return self.examples_seen / self.train_seconds if self.train_seconds else float("nan")


def best_key(rec: dict) -> float:
    """What picks the best epoch: the task's GLUE score (runs given a task), else the validation accuracy."""
    return rec["eval_score"] if "eval_score" in rec else rec["eval_accuracy"]


_SHORT = {"accuracy": "acc", "matthews_correlation": "mcc", "pearson": "pearson", "spearman": "spearman", "f1": "f1"}


def epoch_line(rec: dict, epochs: int) -> str:
    """One history record as the line `fine_tune` logs after each epoch."""
    if "task" in rec:  # a run given a task: its GLUE metrics (STS-B: Pearson and Spearman, no accuracy)
        from .glue import get_task

        dev = " | ".join(f"dev {_SHORT.get(m, m)} {rec[f'eval_{m}']:.4f}" for m in get_task(rec["task"]).metrics)
    else:
        dev = f"dev acc {rec['eval_accuracy']:.4f}"
    return (f"epoch {rec['epoch']}/{epochs}: train loss {rec['train_loss']:.4f} | {dev} "
            f"| dev loss {rec['eval_loss']:.4f} | {rec['examples_per_second']:.0f} ex/s | {rec['train_seconds']:.0f} s")


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
             bf16: bool | None = None, precision: str | None = None, task: str | None = None) -> dict:
    """Accuracy and mean cross-entropy on a tokenized, labelled dataset.

    With a GLUE task (glue.TASKS), also the task's metrics (metrics.task_metrics: e.g. matthews_correlation and
    score); for a regression task (STS-B) the loss is the mean squared error and there is no accuracy.
    """
    logits = predict_logits(model, tokenizer, ds, batch_size=batch_size, device=device, bf16=bf16,
                            precision=precision)
    labels = np.asarray(ds["label"])
    if task is not None:
        from .glue import get_task
        from .metrics import task_metrics

        if get_task(task).is_regression:
            scores = logits[:, 0].astype(np.float64)
            return {**task_metrics(task, scores, labels), "loss": float(((scores - labels) ** 2).mean()),
                    "n": int(len(labels))}
    logp = torch.log_softmax(torch.from_numpy(logits).float(), dim=-1).numpy()
    out = {"accuracy": float((logits.argmax(-1) == labels).mean()),
           "loss": float(-logp[np.arange(len(labels)), labels].mean()), "n": int(len(labels))}
    if task is not None:
        out = {**task_metrics(task, logits, labels), **out}
    return out


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
              stop_after: int | None = None, progress: bool = True, checkpoint_steps: int | None = None,
              checkpoint_minutes: float | None = DEFAULT_CHECKPOINT_MINUTES,
              data_source: str | None = None, task: str | None = None) -> FineTuneResult:
    """Fine-tune `model` on tokenized `train_ds`, evaluating on `eval_ds` after each epoch.

    With `output_dir`, each epoch writes `last/` (with optimizer state, for resuming) and, when the
    validation accuracy improves, `best/`; `last/` is also written mid-epoch every `checkpoint_steps` optimizer
    steps and/or `checkpoint_minutes` minutes, and when the kernel is interrupted or the process gets SIGTERM
    (after the current step; then KeyboardInterrupt, or its subclass resume.Terminated for SIGTERM). A failed save
    (disk full, folder not writable) is a one-line checkpoints.SaveError that says what is intact. A later call
    with the same folder resumes from the next batch, after checking that the folder holds this run (model, data
    rows, seed, recipe: identity.py); the result is that of an uninterrupted run.
    `stop_after` ends this call after that many epochs (a time-boxed session); resume later for the rest.
    `progress=False` hides the per-step progress bar (the one line per epoch stays). While it trains into
    `output_dir`, the run holds that folder's lock (checkpoints.run_lock): a second process waits.
    `data_source` names where the rows came from in the checkpoint (default: what load_sst2 recorded).
    `task` (a GLUE task name, glue.TASKS): each epoch is scored with the task's metrics (history keys eval_<metric>,
    eval_score and "task"; no eval_accuracy for STS-B), the best epoch is the one with the best GLUE score, and the
    task is recorded in the checkpoint (train_args.json, identity), so a run of one task never resumes another's.
    Without it: SST-2's accuracy, as before.
    """
    if task is not None:
        from .glue import get_task

        task = get_task(task).name
    opts = dict(resume=resume, device=device, log=log, stop_after=stop_after, progress=progress,
                checkpoint_steps=checkpoint_steps, checkpoint_minutes=checkpoint_minutes, data_source=data_source,
                task=task)
    if output_dir is None:
        return _fine_tune(model, tokenizer, train_ds, eval_ds, cfg, None, **opts)
    with run_lock(output_dir, log=log):
        return _fine_tune(model, tokenizer, train_ds, eval_ds, cfg, output_dir, **opts)


def _fine_tune(model, tokenizer, train_ds, eval_ds, cfg: TrainConfig, output_dir: str | Path | None, *, resume: bool,
               device: str | None, log, stop_after: int | None, progress: bool, checkpoint_steps: int | None,
               checkpoint_minutes: float | None, data_source: str | None, task: str | None) -> FineTuneResult:
    """The body of `fine_tune` (called with the run folder's lock held)."""
    # Accelerate keeps one state per process and refuses a second Accelerator with another precision or device.
    # So the Accelerator is asked for neither: it handles processes (DDP, gradient sync, the main process) while
    # this run's device and precision (autocast, fp16 loss scaling) are applied here, call by call.
    # Launched as several processes (torchrun / `accelerate launch --multi_gpu`) on a machine without a GPU, the
    # processes train on CPUs, talking over gloo: Accelerate only does that when asked for the CPU.
    launched_on_cpu = launch()[0] > 1 and not torch.cuda.is_available()
    accelerator = Accelerator(device_placement=False, cpu=launched_on_cpu)
    procs = accelerator.num_processes
    if not accelerator.is_main_process:  # several processes: one of them speaks
        log = _quiet
    if procs > 1:  # `accelerate launch`: one device per process
        run_device = accelerator.device
    else:
        run_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    precision = resolve_precision(cfg.mixed_precision, run_device)
    scaler = torch.amp.GradScaler(run_device.type, enabled=(precision == "fp16" and run_device.type == "cuda"))
    model.to(run_device)
    torch.manual_seed(cfg.seed)
    # Each process takes its slice of every batch (batching.py): an optimizer step still covers cfg.batch_size rows,
    # DDP averages the slices' gradients, every row is seen once an epoch. Accelerate's own sharding of a loader
    # deals whole batches to processes and pads an uneven end with repeated rows, so the loader is not prepared.
    loader = make_loader(train_ds, tokenizer, cfg.batch_size, seed=cfg.seed, group_by_length=cfg.group_by_length,
                         num_shards=procs, shard_index=accelerator.process_index)
    sampler = loader.batch_sampler
    steps_per_epoch = len(sampler)
    total = steps_per_epoch * cfg.epochs
    if cfg.freeze_word_embeddings:
        freeze_word_embeddings(model)
    optimizer = _optimizer(model, cfg)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * total), total)
    model, optimizer = accelerator.prepare(model, optimizer)  # (the scheduler steps once per step, as built)
    if procs > 1:
        log(f"{procs} processes (accelerate launch, {accelerator.distributed_type.value}): each trains on its "
            f"slice of every {cfg.batch_size}-row batch")
    result = FineTuneResult()
    args = {**recipe_fields(cfg), "train_rows": len(train_ds), "eval_rows": len(eval_ds)}
    recipe = recipe_fields(cfg) if task is None else {**recipe_fields(cfg), "task": task}  # SST-2's: no "task"
    if task is not None:
        args["task"] = task
    machine = describe(str(run_device))
    run = _Run(accelerator, tokenizer, args, Path(output_dir) if output_dir is not None else None, result,
               cfg.epochs, steps_per_epoch)
    start_epoch, start_step, state = 0, 0, {}
    if run.out is not None:
        start = accelerator.unwrap_model(model)
        run.identity = run_identity(model_identity(start), data_identity(train_ds, eval_ds, data_source), cfg.seed,
                                    recipe)
        state = run.resume_from(start, optimizer, scheduler, scaler, resume, log)
        start_epoch, start_step = state.get("epoch", 0), state.get("step", 0)
    end_epoch = cfg.epochs if stop_after is None else min(cfg.epochs, start_epoch + stop_after)
    held = HeldInterrupt()
    with held if run.out is not None else contextlib.nullcontext():
        for epoch in range(start_epoch, end_epoch):
            sampler.set_epoch(epoch)
            torch.manual_seed(cfg.seed * 1000 + epoch)  # dropout: the same whether or not the run was resumed
            model.train()
            t0, seen, loss_sum, before = time.perf_counter(), 0, 0.0, 0.0
            skip = start_step if epoch == start_epoch else 0
            batches = loader
            if skip:  # mid-epoch resume: the batches of this epoch's fixed order after `skip`, none of them loaded
                set_rng_state(state["rng"])
                seen, loss_sum, before = state["seen"], state["loss_sum"], state["seconds"]
                batches = accelerator.skip_first_batches(loader, skip)
            bar = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", total=steps_per_epoch, initial=skip,
                       mininterval=10, leave=False, file=sys.stderr, ncols=80,
                       disable=not (progress and accelerator.is_local_main_process))
            step = skip
            for batch in bar:
                batch = to_device(batch, run_device)
                with autocast(run_device, precision):
                    loss = model(**batch).loss
                accelerator.backward(scaler.scale(loss))
                event(f"backward {epoch + 1}.{step + 1}")
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
                step += 1
                event(f"step {epoch + 1}.{step}")
                if run.out is not None and step < steps_per_epoch:  # an epoch's last step: its end saves below
                    due = (checkpoint_steps and (epoch * steps_per_epoch + step) % checkpoint_steps == 0) or (
                        checkpoint_minutes and time.perf_counter() - run.saved_at >= 60 * checkpoint_minutes)
                    if due or held.requested:
                        so_far = {"seen": seen, "loss_sum": loss_sum, "seconds": before + time.perf_counter() - t0}
                        run.save_last(model, optimizer, scheduler, scaler, epoch, step, so_far)
                    if held.requested:
                        bar.close()
                        run.interrupted(held, epoch, step, resume, log)
            bar.close()
            dt = before + time.perf_counter() - t0
            result.train_seconds += time.perf_counter() - t0
            result.examples_seen += seen - (state.get("seen", 0) if skip else 0)
            ev = evaluate(accelerator.unwrap_model(model), eval_ds, tokenizer, cfg.eval_batch_size, run_device,
                          precision=precision, task=task)  # in the run's own precision
            rows, loss_total = seen, loss_sum
            if procs > 1:  # every process's rows and losses together
                rows, loss_total = accelerator.reduce(torch.tensor([seen, loss_sum], dtype=torch.float64), "sum")
                rows, loss_total = int(rows), float(loss_total)
            if task is None:
                dev = {"eval_accuracy": ev["accuracy"]}
            else:  # the task's metrics, accuracy first where there is one, then eval_score
                dev = {f"eval_{k}": v for k, v in sorted(ev.items(), key=lambda kv: kv[0] != "accuracy")
                       if k not in ("loss", "n")}
            rec = {"epoch": epoch + 1, "train_loss": loss_total / max(rows, 1), **dev,
                   "eval_loss": ev["loss"], "train_seconds": dt, "examples_per_second": rows / dt,
                   "train_rows_seen": rows, "processes": procs, "hardware": machine, "precision": precision}
            if task is not None:
                rec["task"] = task
            result.history.append(rec)
            log(epoch_line(rec, cfg.epochs))
            if run.out is not None:
                if rec is result.best:
                    run.save_best(model)
                run.save_last(model, optimizer, scheduler, scaler, epoch + 1, 0, None)
                event(f"epoch {epoch + 1}")
                if held.requested:
                    run.interrupted(held, epoch + 1, 0, resume, log)
            accelerator.wait_for_everyone()
    accelerator.unwrap_model(model, keep_fp32_wrapper=False)  # drop the autocast hook a launch-wide precision adds
    return result


def _quiet(*_args, **_kwargs) -> None:
    """The log of a process that is not the main one."""


class _Run:
    """A fine-tune's checkpoint folder: resume from it, save `last/` and `best/` into it, say where it stopped."""

    def __init__(self, accelerator, tokenizer, args: dict, out: Path | None, result: FineTuneResult, epochs: int,
                 steps_per_epoch: int):
        self.accelerator, self.tokenizer, self.args, self.out, self.result = accelerator, tokenizer, args, out, result
        self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
        self.identity: dict | None = None
        self.saved_at = time.perf_counter()
        self.resume_point: str | None = None  # where a rerun would continue: 'run/last (epoch 2/3, step 4/10)'

    def _where(self, epoch: int, step: int) -> str:
        """'epoch 2/3, step 4/10' (mid-epoch) or 'the end of epoch 1' (finished epochs, step 0)."""
        return f"epoch {epoch + 1}/{self.epochs}, step {step}/{self.steps_per_epoch}" if step else \
            f"the end of epoch {epoch}"

    def _saved(self, folder: Path, epoch: int, step: int) -> None:
        """Note that `folder` now holds a resumable state at (epoch, step)."""
        self.resume_point = f"{display_path(folder)} ({self._where(epoch, step)})"

    @contextlib.contextmanager
    def _failed_saves(self):
        """A SaveError (disk full, folder not writable) also says where a rerun resumes from."""
        try:
            yield
        except SaveError as e:
            e.fix += f": it resumes from {self.resume_point}" if self.resume_point else \
                ": it starts over (no resumable checkpoint of this run was saved yet)"
            raise

    def resume_from(self, model, optimizer, scheduler, scaler, resume: bool, log) -> dict:
        """Check the folder holds this run (IdentityError if not) and load `last/`; the resume state, or {}."""
        out, result = self.out, self.result
        if self.accelerator.is_main_process:  # repairs and clean-up: by one process of a launch, the others wait
            recover(out / "best"), recover(out / "last")
        self.accelerator.wait_for_everyone()
        best, last = (f if (f / MARKER).is_file() else None for f in (out / "best", out / "last"))
        if not resume:
            return {}  # training from scratch: last/ and best/ will be overwritten, as asked
        fix = f"delete {display_path(out)} to train again, or pass another output_dir (or resume=False)"
        for folder in (f for f in (last, best) if f is not None):
            verify_manifest(folder)
            check_identity(folder, self.identity, fix)
        result.best_dir = best
        if last is None:
            return {}
        load_weights(model, last / "model.safetensors")
        state = load_training_state(last, optimizer, scheduler, scaler)
        result.history, result.last_dir = state["history"], last
        result.resumed_from_epoch, result.resumed_from_step = state["epoch"], state.get("step", 0)
        self._saved(last, state["epoch"], result.resumed_from_step)
        if result.resumed_from_step:
            log(f"resumed from {display_path(last)} at {self._where(state['epoch'], state['step'])}: continuing "
                f"with batch {state['step'] + 1}")
        else:
            log(f"resumed from {display_path(last)} after epoch {state['epoch']}/{self.epochs}")
        return state

    def _metrics(self) -> dict:
        """metrics.json: the finished epochs and the best of them."""
        history = self.result.history
        return {"history": history, "best": max(history, key=best_key) if history else None}

    def save_last(self, model, optimizer, scheduler, scaler, epoch: int, step: int, progress: dict | None) -> None:
        """`last/` with everything a resume needs: at an epoch's end (step 0) or after `step` batches of `epoch`."""
        if self.accelerator.is_main_process:
            extra = {"epoch": epoch, "step": step, "history": self.result.history, "scaler": scaler.state_dict(),
                     "rng": rng_state(), **(progress or {})}
            with self._failed_saves():
                self.result.last_dir = save_checkpoint(self.out / "last", self.accelerator.unwrap_model(model),
                                                       self.tokenizer, self._metrics(), self.args, optimizer,
                                                       scheduler, extra, identity=self.identity)
            self._saved(self.result.last_dir, epoch, step)
        self.saved_at = time.perf_counter()

    def save_best(self, model) -> None:
        """`best/`: the weights of the epoch that just ended (no resume state)."""
        if self.accelerator.is_main_process:
            with self._failed_saves():
                self.result.best_dir = save_checkpoint(self.out / "best", self.accelerator.unwrap_model(model),
                                                       self.tokenizer, self._metrics(), self.args,
                                                       identity=self.identity)

    def interrupted(self, held: HeldInterrupt, epoch: int, step: int, resume: bool, log) -> None:
        """Say where the run stopped (SIGINT or SIGTERM) and how to continue, then raise the signal's exception."""
        again = "run the same cell or command again to continue" if resume else \
            "call it again with resume=True to continue (this call had resume=False, which starts over)"
        log(f"{held.what} at {self._where(epoch, step)}: saved a resumable checkpoint in "
            f"{display_path(self.out / 'last')}; {again}")
        raise held.exception()
