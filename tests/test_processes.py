"""Several processes: each gets a slice of every batch, and `accelerate launch` trains with 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter

import pytest

from llm_transfer.batching import LengthGroupedBatchSampler
from llm_transfer.cli import main


@pytest.mark.parametrize("n_rows,batch,shards", [(70, 8, 2), (65, 8, 2), (66, 8, 3), (64, 8, 4), (9, 8, 2)])
@pytest.mark.parametrize("group", [True, False])
def test_shards_cover_every_row_once_in_equal_steps(n_rows, batch, shards, group):
    lengths = [(7 * i) % 23 + 1 for i in range(n_rows)]
    parts = [LengthGroupedBatchSampler(lengths, batch, seed=1, group=group, num_shards=shards, shard_index=k)
             for k in range(shards)]
    single = LengthGroupedBatchSampler(lengths, batch, seed=1, group=group)
    for epoch in (0, 1):
        for p in [*parts, single]:
            p.set_epoch(epoch)
        per_shard = [list(p) for p in parts]
        assert len({len(b) for b in per_shard}) == 1 == len({len(p) for p in parts})  # same number of steps
        assert len(per_shard[0]) == len(parts[0])
        assert all(len(b) > 0 for batches in per_shard for b in batches)  # every process has rows every step
        seen = Counter(i for batches in per_shard for b in batches for i in b)
        assert sorted(seen) == list(range(n_rows)) and set(seen.values()) == {1}
        # each step's slices together are one batch of the single-process order (same rows per optimizer step)
        if n_rows % batch == 0 or n_rows % batch >= shards:  # (else the short last batch joins another one)
            steps = [sorted(sum((batches[s] for batches in per_shard), [])) for s in range(len(parts[0]))]
            assert steps == [sorted(b) for b in single]


def test_a_shard_must_get_rows():
    with pytest.raises(ValueError, match="shard_index < num_shards <= batch_size"):
        LengthGroupedBatchSampler([3] * 10, 2, num_shards=3, shard_index=0)
    with pytest.raises(ValueError, match="0 <= shard_index"):
        LengthGroupedBatchSampler([3] * 10, 4, num_shards=2, shard_index=2)


TRAIN = ["train", "--quick", "--train-rows", "72", "--eval-rows", "64", "--epochs", "2", "--max-length", "32",
         "--batch-size", "16", "--lr", "1e-4"]


@pytest.mark.skipif(shutil.which("accelerate") is None and not os.path.exists(
    os.path.join(os.path.dirname(sys.executable), "accelerate")), reason="accelerate's launcher is not installed")
def test_accelerate_launch_two_cpu_processes_matches_one(tmp_path, capsys):
    """`accelerate launch --multi_gpu --num_processes 2` on a CPU: torchrun, gloo, one checkpoint, same metrics."""
    launcher = shutil.which("accelerate") or os.path.join(os.path.dirname(sys.executable), "accelerate")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LLM_TRANSFER_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "OMP_WAIT_POLICY": "PASSIVE"}
    two = tmp_path / "two"
    proc = subprocess.run([launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
                           "-m", "llm_transfer.cli", *TRAIN, "--output", str(two)],
                          capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 processes (accelerate launch, MULTI_CPU)" in proc.stderr  # the run says it ran on two processes
    assert proc.stderr.count("mode = quick") == 1  # ... and only the main process speaks
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(results) == 1  # only the main process prints the result
    # one checkpoint, written once, nothing half-written beside it
    assert sorted(p.name for p in two.iterdir() if not p.name.startswith(".")) == ["best", "last"]
    assert not [p.name for p in two.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")]
    history = json.loads((two / "last" / "metrics.json").read_text())["history"]
    assert [h["train_rows_seen"] for h in history] == [72, 72]  # every row once per epoch, across the processes
    assert all(h["processes"] == 2 for h in history)

    one = tmp_path / "one"
    assert main([*TRAIN, "--output", str(one)]) == 0
    single = json.loads(capsys.readouterr().out)
    history1 = json.loads((one / "last" / "metrics.json").read_text())["history"]
    assert [h["train_rows_seen"] for h in history1] == [72, 72] and history1[0]["processes"] == 1
    # the same rows per optimizer step, gradients averaged over the two halves: the same run up to float rounding
    for h2, h1 in zip(history, history1, strict=True):
        assert abs(h2["train_loss"] - h1["train_loss"]) < 0.01, (h2["train_loss"], h1["train_loss"])
        assert abs(h2["eval_loss"] - h1["eval_loss"]) < 0.01, (h2["eval_loss"], h1["eval_loss"])
        assert abs(h2["eval_accuracy"] - h1["eval_accuracy"]) <= 2 / 64, (h2["eval_accuracy"], h1["eval_accuracy"])
    assert abs(results[0]["eval_accuracy"] - single["eval_accuracy"]) <= 2 / 64


def test_launch_reads_torchruns_environment(monkeypatch):
    from llm_transfer.hardware import launch

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert launch() == (1, 0)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert launch() == (2, 1)
