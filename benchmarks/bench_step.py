"""Where one training step's time goes: forward+backward at a few lengths (fp32 vs bf16 autocast) and AdamW.

CPU seconds per step (process time, so other programs' load barely changes it), batch 32, the bundled
all-MiniLM-L6-v2; explains the speed-ups `bench_finetune.py` measures end to end.

    python benchmarks/bench_step.py                 # 1 thread, lengths 16 and 48
    python benchmarks/bench_step.py --threads 2 --lengths 16 32 64
"""

from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> list[dict]:
    """Print and return per-step CPU milliseconds for each (length, precision) and for each AdamW flavour."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lengths", type=int, nargs="+", default=[16, 48])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=5, help="timed steps per setting (the fastest is kept)")
    args = p.parse_args(argv)

    import torch

    from llm_transfer.models import load_classifier
    from llm_transfer.settings import quiet_libraries

    torch.set_num_threads(args.threads)
    quiet_libraries()
    model = load_classifier().train()
    rows = []

    def steps(length: int, bf16: bool, fused: bool) -> dict:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=fused)
        ids = torch.randint(1000, 2000, (args.batch_size, length))
        mask, labels = torch.ones_like(ids), torch.randint(0, 2, (args.batch_size,))
        fb, op = [], []
        for i in range(args.steps + 1):  # the first step warms up kernels and optimizer state
            t0 = time.process_time()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            t1 = time.process_time()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if i:
                fb.append(t1 - t0)
                op.append(time.process_time() - t1)
        return {"length": length, "bf16": bf16, "fused_adamw": fused,
                "forward_backward_ms": 1000 * min(fb), "optimizer_ms": 1000 * min(op)}

    for length in args.lengths:
        for bf16 in (False, True):
            rows.append(steps(length, bf16, fused=False))
    rows.append(steps(args.lengths[0], False, fused=True))
    print(f"CPU ms per step, batch {args.batch_size}, {args.threads} thread(s)")
    print("| length | precision | AdamW | forward+backward | optimizer step |\n|---:|---|---|---:|---:|")
    for r in rows:
        print(f"| {r['length']} | {'bf16 autocast' if r['bf16'] else 'fp32'} | "
              f"{'fused' if r['fused_adamw'] else 'default (for-loop on CPU)'} "
              f"| {r['forward_backward_ms']:.0f} | {r['optimizer_ms']:.0f} |")
    return rows


if __name__ == "__main__":
    main()
