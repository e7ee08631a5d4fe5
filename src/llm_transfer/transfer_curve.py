"""Label-budget curves of the TinyGPT classifier from several starts: one fine-tune per job, cached, in workers.

A job is (start, labelled rows, learning rate, epochs, seed). Each fine-tune uses AdamW with decoupled weight decay
(none on biases and norms), linear warm-up over 10 % of the steps then linear decay, gradient clipping at 1.0 and
bf16 autocast where the CPU has it natively. The validation split is scored after up to `evals` of the epochs and
the best epoch's weights are kept, then scored once on dev: the number of epochs is chosen on validation, never on
the reported split. Finished jobs are appended to a JSON-lines file, so an interrupted curve resumes where it
stopped; on a CPU, `workers` processes of one thread each train side by side (small batches use two cores better
that way than one process of two threads).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import multiprocessing as mp
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .batching import LengthGroupedBatchSampler, sorted_batches
from .hardware import bf16_autocast
from .lm import load_lm, pad_batch
from .tinylm import LMClassifier, LMConfig, TinyGPT

VERSION = 1  # bump when the training loop changes: cached results of another version are not reused


@dataclass(frozen=True)
class Start:
    """Where a classifier's body starts: a saved TinyGPT folder, or random weights shaped like one."""

    name: str
    folder: str  # a folder lm.save_lm wrote
    random: bool = False  # True: the folder's architecture with fresh random weights (drawn from the job's seed)

    def fingerprint(self) -> str:
        """The saved weights' SHA-256 (from the folder's manifest), or 'random' and the architecture."""
        folder = Path(self.folder)
        if self.random:
            return "random:" + json.dumps(json.loads((folder / "config.json").read_text())["config"], sort_keys=True)
        return hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()


@dataclass
class Labelled:
    """Token-id lists and their labels."""

    ids: list[list[int]]
    y: np.ndarray


@dataclass
class CurveData:
    """The training pool, the validation split that chooses, the dev split that is reported."""

    train: Labelled
    val: Labelled
    dev: Labelled
    pad_id: int

    def fingerprint(self) -> str:
        """A hash of the token ids and labels of all three splits and the pad id: a job's rows index into these."""
        h = hashlib.blake2b(digest_size=12)
        for part in (self.train, self.val, self.dev):
            h.update(np.asarray([len(x) for x in part.ids], np.int64).tobytes())
            h.update(np.asarray([t for x in part.ids for t in x], np.int64).tobytes())
            h.update(np.asarray(part.y, np.int64).tobytes())
        h.update(str(self.pad_id).encode())
        return h.hexdigest()


@dataclass(frozen=True)
class Job:
    """One fine-tune: a start, rows of the training pool, and its settings."""

    start: Start
    rows: tuple[int, ...]
    lr: float
    epochs: int
    seed: int
    batch_size: int = 32
    evals: int = 8  # validation scores per run (after evenly spaced epochs, always the last)
    pooling: str = "mean"
    tag: str = ""  # free text kept in the result (e.g. 'lr search')

    def key(self) -> str:
        """A hash of everything that decides the result."""
        rows = hashlib.blake2b(np.asarray(self.rows, np.int64).tobytes(), digest_size=8).hexdigest()
        spec = {**asdict(self), "start": [self.start.name, self.start.fingerprint()], "rows": rows, "v": VERSION,
                "tag": None}
        return hashlib.blake2b(json.dumps(spec, sort_keys=True).encode(), digest_size=12).hexdigest()


def epochs_for(n: int, batch_size: int = 32, min_steps: int = 150, lo: int = 2, hi: int = 40) -> int:
    """Epochs that give at least min_steps optimizer steps on n rows, within [lo, hi]."""
    return int(np.clip(math.ceil(min_steps * batch_size / n), lo, hi))


def eval_epochs(epochs: int, evals: int) -> set[int]:
    """The epochs after which validation is scored: evenly spaced, the last always included."""
    return {int(e) for e in np.ceil(np.linspace(epochs / max(1, evals), epochs, max(1, min(evals, epochs))))}


_BODIES: dict[tuple[str, str], torch.nn.Module] = {}  # saved starts by (folder, weights' hash), loaded once per process


def start_body(start: Start, seed: int) -> TinyGPT:
    """A fresh copy of the start's body (random weights drawn from seed for a random start)."""
    if start.random:
        cfg = json.loads((Path(start.folder) / "config.json").read_text())["config"]
        torch.manual_seed(seed)
        return TinyGPT(LMConfig(**cfg))
    key = (start.folder, start.fingerprint())  # weights saved again under the same folder: loaded again
    if key not in _BODIES:
        _BODIES[key] = load_lm(start.folder)
    return copy.deepcopy(_BODIES[key])


@torch.no_grad()
def predict(model: torch.nn.Module, data: Labelled, pad_id: int, batch_size: int = 256) -> np.ndarray:
    """Predicted labels in input order."""
    model.eval()
    out = np.empty(len(data.ids), np.int64)
    for rows in sorted_batches([len(x) for x in data.ids], batch_size):
        ids, mask = pad_batch([data.ids[i] for i in rows], pad_id)
        with bf16_autocast("cpu"):
            out[rows] = model(ids, mask).logits.argmax(-1).numpy()
    return out


def _optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """AdamW, weight decay 0.01 on matrices (embeddings included), none on biases and norm gains."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}],
                             lr=lr, fused=True)


def train_one(job: Job, data: CurveData, return_model: bool = False) -> dict | tuple[dict, torch.nn.Module]:
    """Fine-tune one classifier; the validation-best epoch's dev predictions and accuracy (and the model, if asked)."""
    t0 = time.perf_counter()
    body = start_body(job.start, job.seed)
    torch.manual_seed(job.seed)  # the head and dropout: the same for every start at this seed
    model = LMClassifier(body, num_labels=2, pooling=job.pooling)
    rows = np.asarray(job.rows)
    ids, y = [data.train.ids[i] for i in rows], torch.as_tensor(data.train.y[rows])
    sampler = LengthGroupedBatchSampler([len(x) for x in ids], job.batch_size, seed=job.seed, drop_last=False)
    steps = job.epochs * len(sampler)
    warmup = max(1, steps // 10)
    opt = _optimizer(model, job.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) /
                                                                                    max(1, steps - warmup))))
    scored, best = eval_epochs(job.epochs, job.evals), (-1.0, 0, None)
    curve = []
    for epoch in range(1, job.epochs + 1):
        model.train()
        sampler.set_epoch(epoch)
        for batch in sampler:
            x, mask = pad_batch([ids[i] for i in batch], data.pad_id)
            with bf16_autocast("cpu"):
                loss = model(x, mask, labels=y[batch]).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
        if epoch in scored:
            acc = float((predict(model, data.val, data.pad_id) == data.val.y).mean())
            curve.append([epoch, acc])  # a list, as a cached result reads back from JSON
            if acc > best[0]:
                best = (acc, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[2])
    pred = predict(model, data.dev, data.pad_id)
    rec = {"key": job.key(), "start": job.start.name, "n": len(rows), "seed": job.seed, "lr": job.lr,
           "epochs": job.epochs, "best_epoch": best[1], "val": best[0], "val_curve": curve, "tag": job.tag,
           "dev": float((pred == data.dev.y).mean()), "dev_pred": "".join(map(str, pred.tolist())),
           "seconds": time.perf_counter() - t0}
    return (rec, model) if return_model else rec


def read_cache(path: Path, usable: Callable[[dict], bool] | None = None) -> dict[str, dict]:
    """Finished results by job key (the last usable one of each); a line cut short by a broken write is ignored."""
    done = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if usable is None or usable(rec):
                done[rec["key"]] = rec
    return done


def append_record(cache: Path, rec: dict) -> None:
    """One result appended as a JSON line; after a line cut short by an interrupted write, on a new line."""
    cut = cache.is_file() and cache.stat().st_size and not cache.read_bytes().endswith(b"\n")
    with cache.open("a") as f:
        f.write(("\n" if cut else "") + json.dumps(rec) + "\n")


_DATA: CurveData | None = None


def _init_worker(data: CurveData) -> None:
    """Each worker: one thread, the data received once."""
    global _DATA
    torch.set_num_threads(1)
    _DATA = data


def _work(job: Job) -> dict:
    return train_one(job, _DATA)


def run_jobs(jobs: Sequence[Job], data: CurveData, cache: str | Path, workers: int = 1,
             log: Callable = print) -> list[dict]:
    """Every job's result, in job order: reused from the cache file or trained (largest first) and appended to it.

    A cached result is reused only when it was trained and scored on the same data (`CurveData.fingerprint`): job
    keys name rows by their index into the training pool, so another pool or another validation or dev split under
    the same cache file trains again instead of returning another data set's numbers.
    """
    cache = Path(cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    data_sha = data.fingerprint()
    done = read_cache(cache, lambda r: r.get("data_sha") == data_sha)
    todo = {j.key(): j for j in jobs if j.key() not in done}  # duplicates train once
    order = sorted(todo.values(), key=lambda j: -len(j.rows) * j.epochs)
    log(f"{len(jobs) - sum(1 for j in jobs if j.key() in todo)} of {len(jobs)} fine-tunes reused from the cache; "
        f"training {len(order)} with {workers} worker(s)")
    t0 = time.perf_counter()

    def keep(rec: dict) -> None:
        rec["data_sha"] = data_sha
        append_record(cache, rec)
        done[rec["key"]] = rec

    if workers > 1 and len(order) > 1:
        pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                   initargs=(data,))
        try:
            for k, fut in enumerate(as_completed([pool.submit(_work, j) for j in order]), 1):
                keep(fut.result())
                if k % max(1, len(order) // 10) == 0 or k == len(order):
                    log(f"  {k}/{len(order)} fine-tunes done, {time.perf_counter() - t0:.0f} s")
        finally:
            pool.shutdown(cancel_futures=True)
    else:
        for job in order:
            keep(train_one(job, data))
    return [done[j.key()] for j in jobs]
