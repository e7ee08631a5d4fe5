"""Does training keep its speed when another process keeps one core busy? (issue: OpenMP spin-waiting)

Workload: the series' TinyGPT (2 layers, 128 wide, as pretrained in notebook 02) trained with `lm.train_lm` for a
fixed number of steps on token sequences with SST-2-like lengths. Each configuration runs in a fresh Python process
(the OpenMP wait policy is read when torch loads), interleaved over `--repeats` rounds; the median is reported.
The competitor is one plain Python busy loop (one core's worth of load), started before and stopped after each run.

    python benchmarks/bench_busy_cpu.py --out benchmarks/results/busy_cpu.md
    taskset -c 0,1 python benchmarks/bench_busy_cpu.py ...   # emulate a 2-core machine on a bigger one

Prints a Markdown table and one JSON line. Ratios are only meaningful within one run (same machine, same load).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

WORKER = r"""
import json, os, random, sys, time
import torch
from llm_transfer.hardware import cpu_model
from llm_transfer.lm import LMConfig, TinyGPT, train_lm
threads, steps = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
rng = random.Random(0)
vocab = 11000
seqs = [[1] + [rng.randrange(5, vocab) for _ in range(rng.randint(4, 48))] + [2] for _ in range(4096)]
torch.manual_seed(0)
model = TinyGPT(LMConfig(vocab_size=vocab, tie_embeddings=False))
train_lm(model, seqs, seqs[:64], steps=3, batch_size=64, eval_every=10**9, log=lambda *a: None, bf16=False)
t0 = time.perf_counter()
train_lm(model, seqs, seqs[:64], steps=steps, batch_size=64, eval_every=10**9, log=lambda *a: None, bf16=False)
print(json.dumps({"seconds": time.perf_counter() - t0, "threads": torch.get_num_threads(),
                  "policy": os.environ.get("OMP_WAIT_POLICY", "unset"), "cpu": cpu_model()}))
"""

CONFIGS = [  # (name, busy neighbour?, threads (0 = all cores), OMP_WAIT_POLICY (None = unset, the old default))
    ("project default (passive), idle", False, 0, "PASSIVE"),
    ("project default (passive), busy", True, 0, "PASSIVE"),
    ("OpenMP default (unset), idle", False, 0, None),
    ("OpenMP default (unset), busy", True, 0, None),
    ("1 thread (passive), idle", False, 1, "PASSIVE"),
    ("1 thread (passive), busy", True, 1, "PASSIVE"),
]
# With a neighbour busy on one of two cores, a run gets at most one core's worth of compute: its floor is the
# one-thread idle time, so busy / idle cannot drop below (1-thread idle) / (all-core idle), whatever the threads.


def run_one(threads: int, policy: str | None, busy: bool, steps: int) -> dict:
    """One configuration in a fresh process, with or without a busy neighbour process."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    if policy is None:
        env["OMP_WAIT_POLICY"] = ""  # present but empty: OpenMP's own default, and llm_transfer keeps its hands off
    else:
        env["OMP_WAIT_POLICY"] = policy
    n = threads or len(os.sched_getaffinity(0))
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        time.sleep(0.5 if busy else 0)
        out = subprocess.run([sys.executable, "-c", WORKER, str(n), str(steps)], env=env, capture_output=True,
                             text=True, check=False)
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    if out.returncode != 0:
        raise RuntimeError(f"worker failed (threads={n}, policy={policy}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40, help="timed training steps per run (batch 64)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the median is reported")
    ap.add_argument("--out", type=Path, help="also write the Markdown table here (and .json beside it)")
    args = ap.parse_args(argv)
    times: dict[str, list[float]] = {name: [] for name, *_ in CONFIGS}
    info = {}
    for r in range(args.repeats):
        for name, busy, threads, policy in CONFIGS:
            res = run_one(threads, policy, busy, args.steps)
            times[name].append(res["seconds"])
            info = res
            print(f"round {r + 1}: {name}: {res['seconds']:.2f} s ({res['threads']} threads)", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio_project = med["project default (passive), busy"] / med["project default (passive), idle"]
    ratio_unset = med["OpenMP default (unset), busy"] / med["OpenMP default (unset), idle"]
    floor = med["1 thread (passive), idle"] / med["project default (passive), idle"]
    cores = len(os.sched_getaffinity(0))
    head = (f"{info.get('cpu', '?')}, {cores} cores usable, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
            f"{args.steps} TinyGPT steps of 64 sequences, median of {args.repeats}")
    lines = [f"Busy-CPU benchmark ({head}); `python benchmarks/bench_busy_cpu.py --steps {args.steps} "
             f"--repeats {args.repeats}`", "", "| configuration | seconds (median) | runs | vs its idle run |",
             "|---|---:|---|---:|"]
    for name, _busy, _, policy in CONFIGS:
        idle = med["OpenMP default (unset), idle"] if policy is None else med["project default (passive), idle"]
        # (every row is set against the all-core idle run of its wait policy)
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        lines.append(f"| {name} | {med[name]:.2f} | {runs} | {med[name] / idle:.2f}× |")
    lines += ["", f"Busy / idle with the project's default: **{ratio_project:.2f}×** (goal ≤ 1.5×); "
              f"with OpenMP's default wait policy: {ratio_unset:.2f}×. One core's worth of compute (1 thread, idle) "
              f"takes {floor:.2f}× the all-core idle time: the floor for any run that shares the cores with a busy "
              f"neighbour, so the busy run is {ratio_project / floor:.2f}× its floor."]
    table = "\n".join(lines)
    print(table)
    result = {"median_seconds": med, "runs": times, "busy_over_idle_project": ratio_project,
              "busy_over_idle_unset": ratio_unset, "one_core_floor": floor, "cores": cores,
              "cpu": info.get("cpu"), "steps": args.steps}
    print(json.dumps(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table + "\n", encoding="utf-8")
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
