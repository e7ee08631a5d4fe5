"""Fine-tune jobs cached in a JSON-lines file by key, trained in one-thread worker processes side by side."""

from __future__ import annotations

import contextlib
import io
import multiprocessing as mp
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from .settings import display_path, quiet_libraries, seed_everything
from .transfer_curve import append_record, read_cache

_PAYLOAD: dict = {}


@contextlib.contextmanager
def quiet_job(seed: int):
    """Seed everything; keep a job's library reports (a fresh head's "MISSING" load report) and prints out."""
    seed_everything(seed)
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        hf_logging.set_verbosity(level)


def _init_worker(train: Callable, payload: tuple) -> None:
    """Each worker: one thread, the libraries quiet (a spawned process starts loud), its inputs received once."""
    torch.set_num_threads(1)
    quiet_libraries()
    _PAYLOAD.update(train=train, payload=payload)


def _work(job) -> dict:
    return _PAYLOAD["train"](job, *_PAYLOAD["payload"])


def run_cached(jobs: Sequence, cache: str | Path, train: Callable, payload: tuple, log: Callable = print,
               workers: int = 1, is_done: Callable[[dict], bool] = lambda rec: True) -> list[dict]:
    """Each job's record: reused from `cache` (by `job.key()`, when `is_done(record)`), else `train(job, *payload)`.

    `train` must be a module-level function (workers import it). `workers` > 1: that many processes of one thread
    each train side by side (on a CPU, small batches use two cores better that way than one process of two
    threads); each finished record is appended to `cache` as it arrives, so an interrupted run keeps what it did.
    """
    cache = Path(cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    done = read_cache(cache, is_done)
    todo = list({j.key(): j for j in jobs if j.key() not in done}.values())  # duplicates train once
    log(f"{sum(j.key() in done for j in jobs)} of {len(jobs)} fine-tunes reused from {display_path(cache)}; "
        f"training {len(todo)} with {workers} worker(s)")
    t0 = time.perf_counter()

    def keep(k: int, rec: dict) -> None:
        append_record(cache, rec)
        done[rec["key"]] = rec
        if k % max(1, len(todo) // 8) == 0 or k == len(todo):
            log(f"  {k}/{len(todo)} fine-tunes done, {time.perf_counter() - t0:.0f} s")

    if workers > 1 and len(todo) > 1:
        pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                   initargs=(train, payload))
        try:
            for k, fut in enumerate(as_completed([pool.submit(_work, j) for j in todo]), 1):
                keep(k, fut.result())
        finally:
            pool.shutdown(cancel_futures=True)
    else:
        for k, job in enumerate(todo, 1):
            keep(k, train(job, *payload))
    return [done[j.key()] for j in jobs]
