"""Batching, the fine-tune loop, checkpoints and resuming."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from llm_transfer.batching import LengthGroupedBatchSampler, padding_stats
from llm_transfer.checkpoints import CheckpointError, atomic_dir, load_checkpoint, recover, save_checkpoint
from llm_transfer.data import subsample, tokenize
from llm_transfer.settings import display_path
from llm_transfer.training import TrainConfig, epoch_line, evaluate, fine_tune, predict_proba, recipe_fields

QUIET = {"log": lambda *a: None}


@pytest.fixture(scope="module")
def small(sst2, tokenizer):
    """96 training and 64 validation rows, tokenized."""
    return (tokenize(subsample(sst2["train"], 96, 0), tokenizer, 32),
            tokenize(subsample(sst2["validation"], 64, 0), tokenizer, 32))


def test_length_grouping_covers_every_row_once_with_little_padding(sst2, tokenizer):
    lengths = [len(x) for x in tokenizer(list(sst2["train"]["sentence"][:5000]))["input_ids"]]
    grouped = LengthGroupedBatchSampler(lengths, 32, seed=0)
    for epoch in (0, 1):
        grouped.set_epoch(epoch)
        batches = list(grouped)
        flat = sorted(i for b in batches for i in b)
        assert flat == list(range(len(lengths))) and len(batches) == len(grouped)
    randomb = list(LengthGroupedBatchSampler(lengths, 32, seed=0, group=False))
    g, r = padding_stats(lengths, batches)["real_fraction"], padding_stats(lengths, randomb)["real_fraction"]
    assert g > 0.9 and r < 0.6, (g, r)
    grouped.set_epoch(0)
    first = list(grouped)
    grouped.set_epoch(1)
    assert list(grouped) != first  # a new order each epoch
    grouped.set_epoch(0)
    assert list(grouped) == first  # ... fixed by (seed, epoch)


def test_random_batches_are_those_of_a_seeded_shuffled_dataloader():
    """group=False replays `DataLoader(shuffle=True, generator=seeded)` epoch after epoch (notebook 04 needs it)."""
    from torch.utils.data import DataLoader

    loader = DataLoader(list(range(70)), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(3))
    sampler = LengthGroupedBatchSampler([5] * 70, 8, seed=3, group=False)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        assert list(sampler) == [b.tolist() for b in loader], epoch
    assert list(sampler) != [b.tolist() for b in loader]  # the DataLoader moved on to epoch 3


def hand_loop(model, tokenizer, train, cfg: TrainConfig) -> list[float]:
    """Notebook 04's loop written out: shuffled DataLoader, AdamW (no decay on biases/LayerNorm), warm-up, clipping."""
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding, get_linear_schedule_with_warmup

    loader = DataLoader(train.select_columns(["input_ids", "attention_mask", "label"]), batch_size=cfg.batch_size,
                        shuffle=True, collate_fn=DataCollatorWithPadding(tokenizer),
                        generator=torch.Generator().manual_seed(cfg.seed))
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    total = len(loader) * cfg.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * total), total)
    loss_fn, losses = torch.nn.CrossEntropyLoss(), []
    for epoch in range(cfg.epochs):
        torch.manual_seed(cfg.seed * 1000 + epoch)  # dropout, as fine_tune seeds it
        model.train()
        for batch in loader:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loss = loss_fn(logits, batch["labels"])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            losses.append(loss.item())
    return losses


def test_fine_tune_without_grouping_and_bf16_is_the_hand_loop(small, tokenizer, tiny_bert):
    train, dev = small[0].select(range(40)), small[1].select(range(16))
    cfg = TrainConfig(epochs=2, batch_size=8, lr=3e-3, max_length=32, group_by_length=False, mixed_precision="no",
                      seed=2)
    hand = hand_loop(tiny_bert(0), tokenizer, train, cfg)
    res = fine_tune(tiny_bert(0), tokenizer, train, dev, cfg, device="cpu", **QUIET)
    assert len(res.step_losses) == len(hand) == 10
    assert np.abs(np.array(res.step_losses) - hand).max() < 1e-4, (res.step_losses, hand)
    assert len(set(np.round(hand, 4))) > 5  # the losses move: a constant would match trivially
    shifted = hand_loop(tiny_bert(0), tokenizer, train, TrainConfig(**{**cfg.__dict__, "seed": 3}))
    assert np.abs(np.array(shifted) - hand).max() > 1e-3  # another shuffling seed is told apart


def test_training_lowers_the_loss_and_is_reproducible(small, tokenizer, tiny_bert):
    train, dev = small[0].select(range(24)), small[1]
    cfg = TrainConfig(epochs=8, batch_size=8, lr=3e-3, warmup_ratio=0.0, max_length=32, seed=0)
    a = fine_tune(tiny_bert(0), tokenizer, train, dev, cfg, **QUIET)
    assert a.history[-1]["train_loss"] < a.history[0]["train_loss"] - 0.03, a.history
    b = fine_tune(tiny_bert(0), tokenizer, train, dev, cfg, **QUIET)
    keys = ("train_loss", "eval_accuracy", "eval_loss")
    assert [[h[k] for k in keys] for h in a.history] == [[h[k] for k in keys] for h in b.history]


def test_a_frozen_word_embedding_table_stays_put_and_resumes(small, tokenizer, tiny_bert, tmp_path):
    train, dev = small
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-3, max_length=32, seed=1, freeze_word_embeddings=True)
    start = tiny_bert(0)
    table0 = start.get_input_embeddings().weight.detach().clone()
    pos0 = start.bert.embeddings.position_embeddings.weight.detach().clone()
    full = fine_tune(start, tokenizer, train, dev, cfg, output_dir=tmp_path / "a", **QUIET)
    trained, _ = load_checkpoint(tmp_path / "a" / "last")
    assert torch.equal(trained.get_input_embeddings().weight, table0)  # no gradient, no AdamW step, no decay
    assert not torch.equal(trained.bert.embeddings.position_embeddings.weight, pos0)  # the rest trains
    part = fine_tune(tiny_bert(0), tokenizer, train, dev, cfg, output_dir=tmp_path / "b", stop_after=1, **QUIET)
    rest = fine_tune(tiny_bert(0), tokenizer, train, dev, cfg, output_dir=tmp_path / "b", **QUIET)
    assert len(part.history) == 1 and rest.resumed_from_epoch == 1
    assert rest.history[1]["train_loss"] == full.history[1]["train_loss"]
    # the option is part of the run's identity: the other recipe's folder is refused, naming the difference
    with pytest.raises(CheckpointError, match="freeze_word_embeddings: True there, False now"):
        fine_tune(tiny_bert(0), tokenizer, train, dev, TrainConfig(epochs=2, batch_size=16, lr=1e-3, max_length=32,
                                                                   seed=1), output_dir=tmp_path / "a", **QUIET)


def test_recipe_fields_leave_earlier_identities_unchanged():
    cfg = TrainConfig(epochs=3, lr=5e-5)
    assert "freeze_word_embeddings" not in recipe_fields(cfg)  # the default: as every run before the option
    assert recipe_fields(cfg) == {k: v for k, v in vars(cfg).items() if k != "freeze_word_embeddings"}
    assert recipe_fields(TrainConfig(freeze_word_embeddings=True))["freeze_word_embeddings"] is True


def test_checkpoint_reload_and_resume_match_an_uninterrupted_run(small, tokenizer, tiny_bert, tmp_path):
    train, dev = small
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-3, max_length=32, seed=1)
    full = fine_tune(tiny_bert(0), tokenizer, train, dev, cfg, output_dir=tmp_path / "a", **QUIET)
    part = fine_tune(tiny_bert(0), tokenizer, train, dev, cfg, output_dir=tmp_path / "b", stop_after=1, **QUIET)
    assert len(part.history) == 1
    rest = fine_tune(tiny_bert(0), tokenizer, train, dev, cfg, output_dir=tmp_path / "b", **QUIET)
    assert rest.resumed_from_epoch == 1 and len(rest.history) == 2
    assert rest.history[1]["train_loss"] == full.history[1]["train_loss"]
    texts = list(dev["sentence"][:20])
    ma, _ = load_checkpoint(tmp_path / "a" / "last")
    mb, tb = load_checkpoint(tmp_path / "b" / "last")
    assert np.array_equal(predict_proba(ma, tokenizer, texts), predict_proba(mb, tb, texts))
    files = {p.name for p in (tmp_path / "a" / "best").iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "metrics.json", "train_args.json"} <= files
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    assert json.loads((tmp_path / "a" / "best" / "train_args.json").read_text())["lr"] == 1e-3
    other = TrainConfig(epochs=2, batch_size=8, lr=1e-3, max_length=32, seed=1)
    with pytest.raises(CheckpointError, match="holds a run of other arguments") as err:
        fine_tune(tiny_bert(0), tokenizer, train, dev, other, output_dir=tmp_path / "a", **QUIET)
    assert "batch_size: 16 there, 8 now" in str(err.value) and "lr:" not in str(err.value)  # only what changed
    assert f"delete {display_path(tmp_path / 'a')}" in str(err.value) and "\n" not in str(err.value)


def test_a_reused_finished_run_prints_the_epoch_lines_it_logged(small, tokenizer, tiny_bert, tmp_path):
    """Notebook 04 prints a reused run's epochs with epoch_line: the very lines the run logged while training."""
    train, dev = small[0].select(range(32)), small[1]
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-3, max_length=32, seed=0)
    logged: list[str] = []
    fine_tune(tiny_bert(0), tokenizer, train, dev, cfg, output_dir=tmp_path / "run", log=logged.append)
    again = fine_tune(tiny_bert(0), tokenizer, train, dev, cfg, output_dir=tmp_path / "run", **QUIET)
    assert again.resumed_from_epoch == 2
    assert [epoch_line(h, cfg.epochs) for h in again.history] == [m for m in logged if m.startswith("epoch ")]
    assert len(again.history) == 2 and epoch_line(again.history[0], 2).startswith("epoch 1/2: train loss ")


def test_interrupted_save_leaves_the_old_checkpoint_intact(tmp_path, tiny_bert, tokenizer):
    target = tmp_path / "ckpt"
    save_checkpoint(target, tiny_bert(0), tokenizer, {"acc": 1}, {"lr": 1})
    before = (target / "model.safetensors").read_bytes()

    def dies_halfway(tmp):
        (tmp / "model.safetensors").write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_dir(target, dies_halfway)
    assert (target / "model.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporary folder left behind
    # a kill between the two renames leaves the old copy aside: recover() puts it back
    aside = tmp_path / ".ckpt.old-deadbeef"
    target.rename(aside)
    assert recover(target) == target and (target / "model.safetensors").read_bytes() == before


def test_damaged_or_foreign_checkpoints_are_refused(tmp_path, tiny_bert, tokenizer):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a model checkpoint"):
        load_checkpoint(tmp_path / "foreign")
    ck = save_checkpoint(tmp_path / "ck", tiny_bert(0), tokenizer, {}, {})
    w = ck / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="model.safetensors: damaged .*SHA-256.*manifest.json"):
        load_checkpoint(ck)  # the manifest names the damaged file
    (ck / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="damaged or incomplete"):
        load_checkpoint(ck)  # without one, loading still fails with a clear error


def test_precision_auto_follows_the_hardware(monkeypatch):
    from llm_transfer import hardware
    from llm_transfer.hardware import PrecisionError, resolve_precision

    monkeypatch.setattr(hardware, "native_bf16", lambda device="cpu": True)
    assert resolve_precision("auto") == "bf16" and resolve_precision("no") == "no"
    monkeypatch.setattr(hardware, "native_bf16", lambda device="cpu": False)
    assert resolve_precision("auto") == "no" and resolve_precision("bf16") == "bf16"
    with pytest.raises(PrecisionError, match="mixed_precision"):
        resolve_precision("half")


def test_precision_auto_is_fp16_on_a_gpu_without_bf16(monkeypatch):
    """A Colab T4 (compute capability 7.5) has no bf16: auto must pick fp16 there, bf16 on Ampere and newer."""
    from llm_transfer import hardware

    monkeypatch.setattr(hardware.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(hardware.torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(hardware.torch.cuda, "get_device_capability", lambda i=0: (7, 5))
    assert hardware.resolve_precision("auto", "cuda") == "fp16"
    assert hardware.resolve_precision("auto", "cuda:1") == "fp16"
    monkeypatch.setattr(hardware.torch.cuda, "get_device_capability", lambda i=0: (9, 0))
    assert hardware.resolve_precision("auto", "cuda") == "bf16"


def test_bf16_training_leaves_a_plain_fp32_model(small, tokenizer, tiny_bert):
    """No autocast hook may stay on forward after a bf16 run (bug: Accelerate's stayed on)."""
    train, dev = small[0].select(range(16)), small[1].select(range(16))
    model = tiny_bert(0)
    cfg = TrainConfig(epochs=1, batch_size=8, lr=1e-3, max_length=32, mixed_precision="bf16", seed=0)
    res = fine_tune(model, tokenizer, train, dev, cfg, device="cpu", **QUIET)
    assert res.history[0]["precision"] == "bf16"
    assert "_original_forward" not in model.__dict__ and "forward" not in model.__dict__  # the class's own forward
    assert all(p.dtype == torch.float32 for p in model.parameters())
    texts = list(dev["sentence"])
    fp32 = predict_proba(model, tokenizer, texts, bf16=False)
    bf16 = predict_proba(model, tokenizer, texts, bf16=True)
    assert fp32.dtype == bf16.dtype == np.float32 and not np.array_equal(fp32, bf16)  # bf16 really ran
    assert np.abs(fp32 - bf16).max() < 0.05  # ... and stays close to fp32


def test_several_precisions_in_one_process(small, tokenizer, tiny_bert):
    """Accelerate keeps one state per process: auto -> no -> bf16 -> auto in one process (bug: the 2nd call raised)."""
    from llm_transfer.hardware import resolve_precision

    train, dev = small[0].select(range(16)), small[1].select(range(16))
    runs = []
    for mp in ("auto", "no", "bf16", "auto"):
        cfg = TrainConfig(epochs=1, batch_size=8, lr=1e-3, max_length=32, mixed_precision=mp, seed=0)
        runs.append(fine_tune(tiny_bert(0), tokenizer, train, dev, cfg, device="cpu", **QUIET))
    auto = resolve_precision("auto", "cpu")
    assert [r.history[0]["precision"] for r in runs] == [auto, "no", "bf16", auto]
    assert runs[1].step_losses != runs[2].step_losses  # bf16 really ran, and fp32 did not
    assert runs[0].step_losses == runs[3].step_losses == runs[2 if auto == "bf16" else 1].step_losses


def test_a_cpu_without_native_bf16_trains_in_fp32_and_evaluates_in_the_runs_precision(small, tokenizer, tiny_bert,
                                                                                       monkeypatch):
    from llm_transfer import hardware

    monkeypatch.setattr(hardware, "native_bf16", lambda device="cpu": False)
    train, dev = small[0].select(range(16)), small[1].select(range(32))
    runs = {}
    for mp in ("auto", "no", "bf16"):
        cfg = TrainConfig(epochs=1, batch_size=8, lr=1e-3, max_length=32, mixed_precision=mp, seed=0)
        model = tiny_bert(0)
        runs[mp] = (model, fine_tune(model, tokenizer, train, dev, cfg, device="cpu", **QUIET))
    assert runs["auto"][1].history[0]["precision"] == "no"
    assert runs["auto"][1].step_losses == runs["no"][1].step_losses
    model, res = runs["bf16"]  # evaluated in bf16 although this "CPU" has no native bf16 (bug: fp32 then)
    assert res.history[0]["eval_loss"] == evaluate(model, dev, tokenizer, precision="bf16")["loss"]
    assert res.history[0]["eval_loss"] != evaluate(model, dev, tokenizer, precision="no")["loss"]


def test_predict_proba_refuses_an_empty_list(tiny_bert, tokenizer):
    with pytest.raises(ValueError, match="no texts"):
        predict_proba(tiny_bert(0), tokenizer, [])


def test_run_lock_makes_a_second_process_wait_and_is_reentrant(tmp_path):
    """03 and 05 side by side both need 04's checkpoint: the second must wait, not train into the same folder."""
    import subprocess
    import sys
    import time

    from llm_transfer.checkpoints import run_lock

    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from llm_transfer.checkpoints import run_lock\n"
        f"with run_lock({str(run)!r}, log=lambda m: None):\n"
        "    print('held', flush=True); time.sleep(2)\n")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    said, t0 = [], time.perf_counter()
    with run_lock(run, log=said.append):
        waited = time.perf_counter() - t0
        with run_lock(run, log=said.append):  # the same process again: no deadlock
            pass
    holder.wait()
    assert waited > 0.5, waited
    assert len(said) == 1 and "waiting" in said[0] and str(tmp_path) not in said[0]
