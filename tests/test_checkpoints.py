"""Checkpoints you can stop and trust: identity checks, crash safety, mid-epoch resume, interrupts and SIGKILLs."""

from __future__ import annotations

import errno
import json
import os
import re
import select
import shutil
import signal
import time
import traceback
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from llm_transfer import checkpoints
from llm_transfer.checkpoints import (
    CheckpointError,
    SaveError,
    atomic_dir,
    load_training_state,
    load_weights,
    save_checkpoint,
)
from llm_transfer.data import subsample, tokenize
from llm_transfer.identity import IdentityError
from llm_transfer.models import sha256_file
from llm_transfer.resume import Terminated
from llm_transfer.training import TrainConfig, fine_tune

# 48 rows in batches of 8: 6 steps an epoch, 2 epochs; fp32 so that resumed runs must match bit for bit.
CFG = TrainConfig(epochs=2, batch_size=8, lr=3e-3, max_length=32, mixed_precision="no", seed=0)
STEPS = 6


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread for the whole module: bit-identical resumes compare runs made with the same thread count.

    The kill test forks: a child of a process whose OpenMP pool already ran gets other threads than its parent, and
    float sums split over another number of threads round differently (the default of 2 threads failed that way).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def rows(sst2, tokenizer):
    """48 training and 16 dev rows, tokenized (and 48 other training rows, 16 other dev rows)."""
    train = tokenize(subsample(sst2["train"], 96, 0), tokenizer, 32)
    dev = tokenize(subsample(sst2["validation"], 32, 0), tokenizer, 32)
    return train.select(range(48)), dev.select(range(16)), train.select(range(48, 96)), dev.select(range(16, 32))


def train(model, tokenizer, rows, out, cfg=CFG, logs=None, train_rows=None, dev_rows=None, **kw):
    """fine_tune into `out` on the fixture's rows, quietly, with no time-based checkpoints."""
    log = logs.append if logs is not None else (lambda *a: None)
    return fine_tune(model, tokenizer, train_rows if train_rows is not None else rows[0],
                     dev_rows if dev_rows is not None else rows[1], cfg, output_dir=out, device="cpu", log=log,
                     progress=False, checkpoint_minutes=None, **kw)


@pytest.fixture(scope="module")
def reference(rows, tokenizer, tmp_path_factory):
    """An uninterrupted run (no mid-epoch checkpoints): its folder and result."""
    import transformers

    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=128, num_labels=2)
    out = tmp_path_factory.mktemp("reference") / "run"
    return out, train(transformers.BertForSequenceClassification(cfg), tokenizer, rows, out)


def same_weights(a: Path, b: Path) -> bool:
    """True when two checkpoint folders hold bit-identical weights."""
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def same_history(a: Path, b: Path) -> bool:
    """True when two runs' metrics (per-epoch losses and accuracies) are identical."""
    keys = ("train_loss", "eval_accuracy", "eval_loss")
    ha, hb = (json.loads((f / "metrics.json").read_text())["history"] for f in (a, b))
    return [[h[k] for k in keys] for h in ha] == [[h[k] for k in keys] for h in hb]


class Crash(Exception):
    """Stands for a crash at a named moment (in-process)."""


def crash_at(name: str):
    """An event hook that raises Crash at the named moment."""

    def hook(event: str) -> None:
        if event == name:
            raise Crash(event)

    return hook


@pytest.fixture
def hooks():
    """Set checkpoints' event hook for one test; always unset afterwards."""
    yield checkpoints.set_event_hook
    checkpoints.set_event_hook(None)


# --- mid-epoch checkpoints and interrupts ------------------------------------------------------------------

def test_mid_epoch_resume_continues_from_the_next_batch_bit_identically(rows, tokenizer, tiny_bert, reference,
                                                                        tmp_path, hooks):
    ref_dir, ref = reference
    out = tmp_path / "run"
    hooks(crash_at("step 2.3"))  # last/ was saved after step 2.2 (every 4 steps: 1.4, 2.2)
    with pytest.raises(Crash):
        train(tiny_bert(0), tokenizer, rows, out, checkpoint_steps=4)
    hooks(None)
    state = json.loads((out / "last" / "training_state.json").read_text())
    assert (state["epoch"], state["step"]) == (1, 2) and "rng" in state
    logs: list[str] = []
    rest = train(tiny_bert(0), tokenizer, rows, out, logs=logs, checkpoint_steps=4)
    assert any("at epoch 2/2, step 2/6: continuing with batch 3" in m for m in logs), logs
    assert (rest.resumed_from_epoch, rest.resumed_from_step) == (1, 2)
    assert rest.step_losses == ref.step_losses[STEPS + 2:]  # the very batches and dropout masks, from batch 3 on
    assert same_weights(out / "last", ref_dir / "last") and same_history(out / "last", ref_dir / "last")
    assert same_weights(out / "best", ref_dir / "best")


def test_interrupt_saves_a_resumable_checkpoint_and_says_how_to_continue(rows, tokenizer, tiny_bert, reference,
                                                                         tmp_path, hooks):
    ref_dir, _ = reference
    out = tmp_path / "run"
    hooks(lambda e: os.kill(os.getpid(), signal.SIGINT) if e == "backward 1.3" else None)  # "interrupt kernel"
    logs: list[str] = []
    # SIGINT as in a terminal or a Jupyter kernel (a test run started in the background inherits "ignore SIGINT")
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            train(tiny_bert(0), tokenizer, rows, out, logs=logs)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    finally:
        signal.signal(signal.SIGINT, before)
    hooks(None)
    assert logs[-1].startswith("interrupted at epoch 1/2, step 3/6: saved a resumable checkpoint in ")
    assert "run the same cell or command again to continue" in logs[-1] and str(tmp_path) not in logs[-1]
    assert json.loads((out / "last" / "training_state.json").read_text())["step"] == 3  # the step was finished
    train(tiny_bert(0), tokenizer, rows, out)
    assert same_weights(out / "last", ref_dir / "last") and same_history(out / "last", ref_dir / "last")


# --- identity: a resume or reuse of another run is refused -----------------------------------------------------

def refused(rows, tokenizer, model, ref_dir: Path, tmp_path: Path, **kw) -> str:
    """Resume a copy of the reference run with something changed; the one-line IdentityError message."""
    out = tmp_path / "copy"
    shutil.copytree(ref_dir, out)
    with pytest.raises(IdentityError) as err:
        train(model, tokenizer, rows, out, **kw)
    msg = str(err.value)
    assert "\n" not in msg and "delete" in msg and str(tmp_path) not in msg, msg
    return msg


def test_resume_refuses_another_seed(rows, tokenizer, tiny_bert, reference, tmp_path):
    msg = refused(rows, tokenizer, tiny_bert(0), reference[0], tmp_path, cfg=TrainConfig(**{**CFG.__dict__, "seed": 1}))
    assert "copy/last: holds a run of another seed (0 there, 1 now)" in msg
    assert "starting model" not in msg  # the seed explains the other head initialisation


def test_resume_refuses_other_data_rows(rows, tokenizer, tiny_bert, reference, tmp_path):
    msg = refused(rows, tokenizer, tiny_bert(0), reference[0], tmp_path, train_rows=rows[2])
    assert "holds a run of other training rows (48 rows" in msg and "evaluation" not in msg
    msg = refused(rows, tokenizer, tiny_bert(0), reference[0], tmp_path / "b", dev_rows=rows[3])
    assert "holds a run of other evaluation rows (16 rows" in msg and "training rows" not in msg


def test_resume_refuses_another_model(rows, tokenizer, tiny_bert, reference, tmp_path):
    from transformers import BertForSequenceClassification

    msg = refused(rows, tokenizer, tiny_bert(1), reference[0], tmp_path)  # a model built in memory
    assert "holds a run of another starting model" in msg
    for seed in (0, 1):  # models loaded from folders: named by their weights file's SHA-256
        tiny_bert(seed).save_pretrained(tmp_path / f"m{seed}")
    out = tmp_path / "from-file"
    train(BertForSequenceClassification.from_pretrained(tmp_path / "m0"), tokenizer, rows, out, stop_after=1)
    ident = json.loads((out / "last" / "identity.json").read_text())
    assert ident["model"]["sha256"] == sha256_file(tmp_path / "m0" / "model.safetensors")
    assert ident["data"]["train_rows"] == 48 and ident["seed"] == 0 and ident["recipe"]["lr"] == CFG.lr
    with pytest.raises(IdentityError, match=r"holds a run of another model \(.*m0 \w{12} there, .*m1 \w{12} now\)"):
        train(BertForSequenceClassification.from_pretrained(tmp_path / "m1"), tokenizer, rows, out)


def test_resume_refuses_a_checkpoint_without_identity(rows, tokenizer, tiny_bert, reference, tmp_path):
    out = tmp_path / "old"
    shutil.copytree(reference[0], out)
    for name in ("identity.json", "manifest.json"):  # as an older version wrote it
        (out / "last" / name).unlink()
    with pytest.raises(IdentityError, match="old/last: records no identity .*older version.*; delete"):
        train(tiny_bert(0), tokenizer, rows, out)


def test_ensure_finetuned_reuses_only_a_run_of_the_same_identity(monkeypatch, tmp_path, tokenizer, tiny_bert,
                                                                 sst2_dir):
    from llm_transfer import recipes
    from llm_transfer.settings import get_settings

    model_dir = tmp_path / "tiny-model"
    tiny_bert(0).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    recipe = TrainConfig(epochs=1, batch_size=16, lr=1e-3, max_length=16, mixed_precision="no")
    monkeypatch.setattr(recipes, "sst2_recipe", lambda s: (TrainConfig(**{**recipe.__dict__, "seed": s.seed}), 32))
    logs: list[str] = []

    def ensure(seed: int) -> Path:
        S = get_settings(data=sst2_dir, model=model_dir, mode="quick", artifacts=tmp_path / "art", device="cpu",
                         seed=seed)
        return recipes.ensure_finetuned(S, log=logs.append)

    best = ensure(0)
    assert logs[0].startswith("no finished checkpoint") and (best / "identity.json").is_file()
    ensure(0)
    assert logs[-1].startswith("reusing the fine-tuned checkpoint")
    n = len(logs)
    ensure(1)
    assert "last: holds a fine-tune of " in logs[n] and "another seed (0 there, 1 now)" in logs[n]
    assert logs[n].endswith(": not reused; replacing the run")  # the seed picks other rows too: both are named
    assert json.loads((best / "identity.json").read_text())["seed"] == 1
    for name in ("identity.json", "manifest.json"):
        (best / name).unlink()
    n = len(logs)
    ensure(1)
    assert "best: records no identity" in logs[n] and "replacing the run" in logs[n]
    assert (best / "identity.json").is_file()
    assert all(str(tmp_path) not in m for m in logs)


def test_pretrained_lm_of_another_seed_is_replaced(monkeypatch, tmp_path):
    from llm_transfer import corpora, lm, source_lm
    from llm_transfer.settings import get_settings

    if corpora.find_shared_data() is None:
        pytest.skip("no shared data folder (../shared/data)")
    budget = dict(articles=40, vocab_size=200, train_tokens=1024, block_size=32, batch_size=8, lr=1e-3, n_layer=1,
                  n_head=2, d_model=16, dropout=0.0, tie_embeddings=False, eval_every=2, heldout_blocks=2)
    monkeypatch.setattr(source_lm, "pretrain_budget", lambda settings: budget)
    logs: list[str] = []
    for seed in (0, 1):
        lm.get_pretrained_lm(get_settings(mode="quick", artifacts=tmp_path, device="cpu", seed=seed),
                             log=logs.append)
    said = [m for m in logs if "replacing it" in m]
    assert len(said) == 1 and "tiny-lm-wiki: holds a TinyGPT of " in said[0]
    assert "another seed (0 there, 1 now)" in said[0]
    assert "other training rows" in said[0]  # the seed also picks the held-out articles and their order


# --- crash safety ----------------------------------------------------------------------------------------

def test_damaged_resume_state_is_a_checkpoint_error(rows, tokenizer, tiny_bert, reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference[0], out)
    opt = out / "last" / "optimizer.safetensors"
    opt.write_bytes(opt.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"last/optimizer.safetensors: damaged .*manifest.*; delete"):
        train(tiny_bert(0), tokenizer, rows, out)
    shutil.copytree(reference[0] / "last", tmp_path / "last")
    state = tmp_path / "last" / "training_state.json"
    model = tiny_bert(0)
    optimizer = torch.optim.AdamW(model.parameters())
    for bad in ('{"param_groups": [', '{"scalars": {}}'):  # truncated JSON; a key missing
        state.write_text(bad)
        with pytest.raises(CheckpointError, match="resume state .* damaged .*delete that folder"):
            load_training_state(tmp_path / "last", optimizer, None)


def test_stale_temporary_folders_are_removed_and_best_is_recovered(rows, tokenizer, tiny_bert, reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference[0], out)
    (out / "best").rename(out / ".best.old-1a2b3c4d")  # a kill between best/'s two renames
    for junk in (".best.tmp-x1", ".last.tmp-y2", ".last.old-5e6f7a8b"):  # kills mid-save, before the cleanup
        (out / junk).mkdir()
        (out / junk / "model.safetensors").write_bytes(b"partial")
    res = train(tiny_bert(0), tokenizer, rows, out)  # nothing left to train: it only resumes
    assert res.best_dir == out / "best" and same_weights(out / "best", reference[0] / "best")
    assert sorted(p.name for p in out.iterdir()) == ["best", "last"]


def test_weights_load_strictly(tiny_bert, tmp_path):
    model = tiny_bert(0)
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(tmp_path / "ok.safetensors"))
    load_weights(tiny_bert(1), tmp_path / "ok.safetensors")
    save_file({k: v for k, v in weights.items() if k != "classifier.bias"}, str(tmp_path / "missing.safetensors"))
    with pytest.raises(CheckpointError, match="do not fit the model .missing: classifier.bias"):
        load_weights(tiny_bert(0), tmp_path / "missing.safetensors")
    save_file({**weights, "extra.weight": torch.zeros(2)}, str(tmp_path / "extra.safetensors"))
    with pytest.raises(CheckpointError, match="unexpected: extra.weight"):
        load_weights(tiny_bert(0), tmp_path / "extra.safetensors")


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="reads file names from /proc (Linux)")
def test_saves_are_fsynced_before_the_renames(tiny_bert, tokenizer, tmp_path, monkeypatch, hooks):
    synced: list[str] = []
    real = os.fsync
    monkeypatch.setattr(checkpoints.os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}"))
                        or real(fd))
    hooks(lambda e: synced.append(e) if e.startswith("save:") else None)
    ck = save_checkpoint(tmp_path / "ck", tiny_bert(0), tokenizer, {}, {})
    files = [p for p in ck.iterdir()]
    first_rename = synced.index("save:synced ck")
    before = [Path(s).name for s in synced[:first_rename]]
    assert {f.name for f in files} <= set(before) and "manifest.json" in before  # every file, then the folder
    assert Path(synced[first_rename - 1]).name.startswith(".ck.tmp-")
    assert synced[-2:] == [str(tmp_path), "save:renamed ck"]  # the parent folder after the rename


# --- SIGKILL at five moments, each resumed -----------------------------------------------------------------

def _wait_or_fail(pid: int, what: str, seconds: float = 120) -> int:
    """The exit status of child `pid`; kill it and fail the test if it does not end within `seconds`."""
    deadline = time.monotonic() + seconds
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail(f"{what} hung")
    return done[1]


def _child(out: Path, kill_at: str, tokenizer, rows, model) -> None:
    """In a forked child: train into `out` and SIGKILL itself at the n-th 'event#n' (then no cleanup runs at all)."""
    name, _, nth = kill_at.partition("#")
    seen = {"n": 0}

    def hook(event: str) -> None:
        if event == name:
            seen["n"] += 1
            if seen["n"] == int(nth or 1):
                os.kill(os.getpid(), signal.SIGKILL)

    torch.set_num_threads(1)
    checkpoints.set_event_hook(hook)
    try:
        train(model, tokenizer, rows, out, checkpoint_steps=2)
    except BaseException:
        (out.parent / "child-error.txt").write_text(traceback.format_exc())
        os._exit(3)
    os._exit(0)  # finished without reaching the kill point


@pytest.mark.skipif(not hasattr(os, "fork") or not Path("/proc/self").exists(), reason="needs fork (Linux)")
def test_runs_killed_at_five_moments_resume_to_the_uninterrupted_weights(rows, tokenizer, tiny_bert, reference,
                                                                         tmp_path):
    """SIGKILL mid-step, mid-save (between files), between renames, between epochs and after a rename.

    Each kill is a separate process (forked: the imports are already done) that kills itself at a named moment, so
    the moments are exact; the next process resumes from what the kill left on disk.
    """
    ref_dir, _ = reference
    out = tmp_path / "run"
    save = "save:{} {}"
    moments = [
        "backward 1.3",  # mid-step: after the backward pass, before the optimizer step (last/ holds step 2)
        f"{save.format('weights', 'best')}#1",  # mid-save: best/'s files half written (a stale .best.tmp-*)
        f"{save.format('aside', 'last')}#1",  # between the renames: last/ moved aside, the new one not in place
        "epoch 1",  # between epochs: both epoch-end checkpoints written
        f"{save.format('renamed', 'last')}#1",  # after a save's rename, before the old copy is removed
    ]
    for kill_at in moments:
        pid = os.fork()
        if pid == 0:
            _child(out, kill_at, tokenizer, rows, tiny_bert(0))
        status = _wait_or_fail(pid, f"the run to be killed at {kill_at!r}")
        err = (tmp_path / "child-error.txt").read_text() if (tmp_path / "child-error.txt").exists() else ""
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (kill_at, status, err)
    logs: list[str] = []
    res = train(tiny_bert(0), tokenizer, rows, out, logs=logs, checkpoint_steps=2)
    assert (res.resumed_from_epoch, res.resumed_from_step) == (1, 2), logs  # the last kill came after step 2.2
    assert same_weights(out / "last", ref_dir / "last") and same_history(out / "last", ref_dir / "last")
    assert same_weights(out / "best", ref_dir / "best")
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".lock")) == ["best", "last"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_ignored_signal_stays_ignored(rows, tokenizer, tiny_bert, tmp_path, signum):
    """A process started to ignore SIGINT (a background job) or SIGTERM (`trap '' TERM`) keeps ignoring it."""
    before = signal.signal(signum, signal.SIG_IGN)
    try:
        seen = []
        checkpoints.set_event_hook(lambda e: seen.append(signal.getsignal(signum)) if e == "step 1.1" else None)
        train(tiny_bert(0), tokenizer, rows, tmp_path / "run", cfg=TrainConfig(**{**CFG.__dict__, "epochs": 1}))
        assert seen == [signal.SIG_IGN] and signal.getsignal(signum) is signal.SIG_IGN
    finally:
        checkpoints.set_event_hook(None)
        signal.signal(signum, before)


# --- SIGTERM from another process ----------------------------------------------------------------------------

def _sigterm_child(out: Path, tokenizer, rows, model, ready: int, go: int) -> None:
    """In a forked child: train into `out`; mid-step 1.3, tell the parent and wait for it to have sent SIGTERM."""

    def hook(event: str) -> None:
        if event == "backward 1.3":
            os.write(ready, b"r")
            os.read(go, 1)

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as a process normally starts (a test run may inherit SIG_IGN)
    torch.set_num_threads(1)
    checkpoints.set_event_hook(hook)
    logs: list[str] = []
    code = 0
    try:
        train(model, tokenizer, rows, out, logs=logs)
    except Terminated:
        code = Terminated.exit_status
    except BaseException:
        (out.parent / "child-error.txt").write_text(traceback.format_exc())
        code = 3
    (out.parent / "child-log.txt").write_text("\n".join(logs))
    os._exit(code)


@pytest.mark.skipif(not hasattr(os, "fork") or not Path("/proc/self").exists(), reason="needs fork (Linux)")
def test_a_run_sent_sigterm_mid_step_saves_and_resumes_to_the_uninterrupted_weights(rows, tokenizer, tiny_bert,
                                                                                     reference, tmp_path):
    """`kill`, `timeout`, SLURM and container stops send SIGTERM: the step is finished and last/ saved (bug: lost)."""
    ref_dir, _ = reference
    out = tmp_path / "run"
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r), os.close(go_w)
        _sigterm_child(out, tokenizer, rows, tiny_bert(0), ready_w, go_r)
    os.close(ready_w), os.close(go_r)
    try:
        if not select.select([ready_r], [], [], 120)[0] or os.read(ready_r, 1) != b"r":
            err = (tmp_path / "child-error.txt").read_text() if (tmp_path / "child-error.txt").exists() else ""
            pytest.fail(f"the child did not reach step 1.3: {err}")
        os.kill(pid, signal.SIGTERM)  # mid-step: after the backward pass, before the optimizer step
        os.write(go_w, b"g")
        status = _wait_or_fail(pid, "the run sent SIGTERM")
    finally:
        os.close(ready_r), os.close(go_w)
    assert not os.WIFSIGNALED(status), f"killed by signal {os.WTERMSIG(status)}: SIGTERM was not handled"
    err = (tmp_path / "child-error.txt").read_text() if (tmp_path / "child-error.txt").exists() else ""
    assert os.WEXITSTATUS(status) == 143, err  # the child raised Terminated, the CLI's status 143
    said = (tmp_path / "child-log.txt").read_text().splitlines()[-1]
    assert said.startswith("stopped by SIGTERM at epoch 1/2, step 3/6: saved a resumable checkpoint in "), said
    assert said.endswith("run/last; run the same cell or command again to continue")
    assert json.loads((out / "last" / "training_state.json").read_text())["step"] == 3  # the step was finished
    logs: list[str] = []
    res = train(tiny_bert(0), tokenizer, rows, out, logs=logs)
    assert (res.resumed_from_epoch, res.resumed_from_step) == (0, 3), logs
    assert same_weights(out / "last", ref_dir / "last") and same_history(out / "last", ref_dir / "last")
    assert same_weights(out / "best", ref_dir / "best")


# --- a full disk, an unwritable folder -----------------------------------------------------------------------

# what safetensors 0.8 raised on a full 64 kB tmpfs
NO_SPACE = "Error while serializing: I/O error: No space left on device (os error 28)"


def disk_full_at(nth: int):
    """checkpoints.save_file (the optimizer state of a last/ save) failing as on a full disk at its nth call."""
    real, calls = checkpoints.save_file, {"n": 0}

    def save_file(tensors, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == nth:
            Path(path).write_bytes(b"\0" * 4096)  # what it wrote before the disk filled up
            raise SafetensorError(NO_SPACE)
        return real(tensors, path, *args, **kwargs)

    return save_file


def test_a_full_disk_says_what_is_intact_and_a_rerun_resumes(rows, tokenizer, tiny_bert, reference, tmp_path,
                                                              monkeypatch):
    ref_dir, _ = reference
    out = tmp_path / "run"
    monkeypatch.setattr(checkpoints, "save_file", disk_full_at(2))  # epoch 2's last/ (epoch 1's was the first)
    with pytest.raises(SaveError) as err:
        train(tiny_bert(0), tokenizer, rows, out)
    msg = str(err.value)  # was: a multi-line SafetensorError traceback
    assert "\n" not in msg and str(tmp_path) not in msg, msg
    assert re.fullmatch(r"\.\.\./run/last: could not save \(no space left on device\); the half-written copy was "
                        r"removed and the previous \.\.\./run/last is intact; a save there needs about 1\d MB, "
                        r"[\d.]+ [kMG]B free now; free some space there \(or pass another output folder\) and run "
                        r"the same command again: it resumes from \.\.\./run/last \(the end of epoch 1\)\.", msg), msg
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".lock")) == ["best", "last"]  # no .tmp-*
    assert json.loads((out / "last" / "training_state.json").read_text())["epoch"] == 1
    monkeypatch.undo()  # space freed
    res = train(tiny_bert(0), tokenizer, rows, out)
    assert res.resumed_from_epoch == 1
    assert same_weights(out / "last", ref_dir / "last") and same_history(out / "last", ref_dir / "last")
    assert same_weights(out / "best", ref_dir / "best")


def test_a_full_disk_before_any_checkpoint_says_there_is_none(rows, tokenizer, tiny_bert, tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(checkpoints, "save_file", disk_full_at(1))
    with pytest.raises(SaveError, match=r"there is no previous .../run/last; a save there needs about \d+ MB, .*it "
                       r"starts over \(no resumable checkpoint of this run was saved yet\)\.$"):
        train(tiny_bert(0), tokenizer, rows, out, checkpoint_steps=2)
    assert not list(out.glob(".last.tmp-*"))


def test_atomic_dir_failures_remove_the_temporary_folder_and_keep_the_old_copy(tmp_path):
    target = tmp_path / "ck"
    atomic_dir(target, lambda tmp: (tmp / "weights").write_bytes(b"x" * 3_000_000))

    def fails(code: int):
        def write(tmp: Path) -> None:
            (tmp / "weights").write_bytes(b"y" * 1000)
            raise OSError(code, os.strerror(code))
        return write

    with pytest.raises(SaveError) as err:
        atomic_dir(target, fails(errno.ENOSPC))
    assert "needs about 3 MB" in str(err.value) and "/ck is intact" in str(err.value)  # the size of the old copy
    with pytest.raises(SaveError, match=r"\(permission denied\).*make that folder writable"):
        atomic_dir(target, fails(errno.EACCES))
    with pytest.raises(KeyboardInterrupt):  # not an OS error: raised as it is
        atomic_dir(target, lambda tmp: (_ for _ in ()).throw(KeyboardInterrupt))
    assert [p.name for p in tmp_path.iterdir()] == ["ck"] and (target / "weights").read_bytes() == b"x" * 3_000_000


def test_an_unwritable_output_folder_is_one_line(rows, tokenizer, tiny_bert, tmp_path, monkeypatch):
    """Bug: a raw PermissionError traceback on .run.lock. Tests run as root, where chmod stops nothing: patched."""

    def denied(folder: Path):
        raise PermissionError(errno.EACCES, "Permission denied", str(folder.with_name(f".{folder.name}.lock")))

    monkeypatch.setattr(checkpoints, "_lock_file", denied)
    with pytest.raises(SaveError) as err:
        train(tiny_bert(0), tokenizer, rows, tmp_path / "run")
    assert str(err.value).endswith("/run: cannot write the run folder's lock file (permission denied); nothing "
                                   "was written; make that folder writable (or pass another output folder) and run "
                                   "the same command again.")
    monkeypatch.undo()
    (tmp_path / "a-file").write_text("not a folder")  # a real OS error: a file where a folder should be
    with pytest.raises(SaveError, match=r"\(.*a-file is a file, not a folder\); nothing was written; pass another "
                       "output folder"):
        train(tiny_bert(0), tokenizer, rows, tmp_path / "a-file" / "sub" / "run")
