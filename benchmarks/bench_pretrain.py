"""Pretraining throughput of TinyGPT on packed blocks: tokens per second and model FLOP utilisation.

Times `lm.train_lm` (the loop notebook 02 writes out and `source_lm.get_pretrained_lm` runs) on packed blocks of
random token ids at notebook 02's full-mode shapes (4 layers x 256, block 128, batch 32, bf16 where native), once
with BERT's 30,522-piece output layer and once with the learnt 8,192-piece vocabulary, interleaved over repeats, and
compares the model FLOPs per second with a square bf16 matmul (`--matmul-size`, 2048 by default) measured in the
same process.

    python benchmarks/bench_pretrain.py --steps 30 --repeats 3 --out benchmarks/results/pretrain.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from llm_transfer import lm
from llm_transfer.hardware import cpu_model, native_bf16, set_threads
from llm_transfer.tinylm import LMConfig, TinyGPT

VOCABS = {"BERT's WordPiece (30,522)": 30522, "learnt WordPiece (8,192)": 8192}


def model_flops_per_token(model: TinyGPT, block: int) -> float:
    """6·N per token for every weight matmul (output layer included, embedding look-ups not) plus attention."""
    cfg = model.cfg
    n = sum(p.numel() for name, p in model.named_parameters() if name not in ("tok_emb.weight", "pos_emb.weight"))
    if cfg.tie_embeddings:
        n += cfg.vocab_size * cfg.d_model  # the tied output layer still multiplies by the whole table
    return 6 * n + 12 * cfg.n_layer * cfg.d_model * block


def matmul_rate(threads: int, n: int = 2048) -> float:
    """Best of 3 square n^3 bf16 matmuls, FLOP per second."""
    a, b = torch.randn(n, n).bfloat16(), torch.randn(n, n).bfloat16()
    a @ b
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def time_run(vocab: int, args: argparse.Namespace, seed: int) -> dict:
    """Tokens per second of `args.steps` train_lm steps (after 3 warm-up steps) on random packed blocks."""
    torch.manual_seed(seed)
    cfg = LMConfig(vocab_size=vocab, block_size=args.block, n_layer=args.layers, n_head=4, d_model=args.width,
                   dropout=0.0, tie_embeddings=True)
    model = TinyGPT(cfg)
    blocks = torch.randint(5, vocab, (args.batch * (args.steps + 3), args.block))
    lm.train_lm(model, blocks, blocks[:2], 3, args.batch, 2e-3, eval_every=10**9, log=lambda *a: None)
    t0 = time.perf_counter()
    lm.train_lm(model, blocks, blocks[:2], args.steps, args.batch, 2e-3, eval_every=10**9, log=lambda *a: None)
    seconds = time.perf_counter() - t0
    tokens = args.steps * args.batch * (args.block - 1)
    return {"tokens_per_s": tokens / seconds, "flops_per_token": model_flops_per_token(model, args.block)}


def main(argv: list[str] | None = None) -> dict:
    """Run the comparison, print a markdown table and write it (and JSON) next to --out."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--block", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--matmul-size", type=int, default=2048,
                   help="side of the square bf16 matmul that measures the achievable rate")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    for name in ("steps", "repeats", "layers", "width", "block", "batch", "matmul_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    threads = set_threads(args.threads)
    rate = matmul_rate(threads, args.matmul_size)
    runs = {name: [] for name in VOCABS}
    for r in range(args.repeats):  # interleaved, so a busy spell hits both
        for name, vocab in VOCABS.items():
            runs[name].append(time_run(vocab, args, seed=r))
    rows = []
    for name, rs in runs.items():
        tps = sorted(x["tokens_per_s"] for x in rs)[len(rs) // 2]  # median
        fpt = rs[0]["flops_per_token"]
        rows.append((name, tps, fpt, tps * fpt, tps * fpt / rate))
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "python benchmarks/bench_pretrain.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"# TinyGPT pretraining throughput ({when})", "",
             f"`{cmd}` on {cpu_model()}, {threads} torch thread(s), bf16 autocast "
             f"{'(native)' if native_bf16('cpu') else '(not native: fp32)'}; {args.layers} layers x {args.width}, "
             f"block {args.block}, batch {args.batch}; {args.steps} timed steps, median of {args.repeats} interleaved "
             f"repeats; {args.matmul_size}³ bf16 matmul in the same process: {rate / 1e9:.1f} GFLOP/s.", "",
             "| output vocabulary | training tokens/s | model MFLOP per token | model GFLOP/s "
             "| share of the matmul rate |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {n} | {t:,.0f} | {f / 1e6:.1f} | {g / 1e9:.1f} | {s:.0%} |" for n, t, f, g, s in rows]
    lines += ["", f"Learnt vocabulary / BERT's: {rows[1][1] / rows[0][1]:.2f}x the tokens per second."]
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        args.out.with_suffix(".json").write_text(json.dumps({"rows": rows, "matmul_bf16": rate, "args": vars(args)},
                                                            default=str, indent=1))
    return {"rows": rows, "matmul": rate}


if __name__ == "__main__":
    main()
