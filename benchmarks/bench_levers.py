"""Where a real training step's time goes, per lever: CPU-ms per phase on real SST-2 batches.

Every configuration trains its own copy of the bundled all-MiniLM-L6-v2 on the same length-grouped batches of a
SST-2 subset (the project's sampler), with bf16 autocast where native, fused AdamW and gradient clipping (the
`fine_tune` step), and the configurations take turns step by step, so background load hits all alike. Times
are process CPU time (1 thread: other programs' load barely moves them), mean per phase.

    python benchmarks/bench_levers.py                         # 4,000 rows, 24 timed steps per configuration
    python benchmarks/bench_levers.py --configs base freeze_emb lazy_emb --steps 40

Configurations (see `CONFIGS`): `base` (the `fine_tune` step today); `freeze_emb` (word-embedding table frozen);
`lazy_emb` (word-embedding gradient kept sparse, rows updated only where used: lazy AdamW); `keep_grads`
(`zero_grad(set_to_none=False)`: gradient buffers reused, not reallocated); `b64` / `b64_freeze` (batch 64);
`tensor_collate` is timed for every batch next to `tokenizer.pad` (collation only).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

CONFIGS = {
    "base": {},
    "freeze_emb": {"embedding": "frozen"},
    "lazy_emb": {"embedding": "lazy"},
    "keep_grads": {"set_to_none": False},
    "b64": {"batch_size": 64},
    "b64_freeze": {"batch_size": 64, "embedding": "frozen"},
    "b128_freeze": {"batch_size": 128, "embedding": "frozen"},
    "fast_dropout": {"fast_dropout": True},
    "b64_freeze_fastdrop": {"batch_size": 64, "embedding": "frozen", "fast_dropout": True},
}
PHASES = ["collate", "forward", "backward", "clip", "optimizer", "zero_grad", "item"]


def lazy_adamw_rows(weight, state: dict, lr: float, betas=(0.9, 0.999), eps: float = 1e-8,
                    weight_decay: float = 0.0) -> None:
    """AdamW on the rows of `weight` its sparse gradient touches (lazy Adam: other rows and moments stay)."""
    import torch

    g = weight.grad.coalesce()
    idx, vals = g.indices()[0], g.values()
    if not state:
        state["step"] = 0
        state["m"] = torch.zeros_like(weight)
        state["v"] = torch.zeros_like(weight)
    state["step"] += 1
    b1, b2 = betas
    m = state["m"][idx].mul_(b1).add_(vals, alpha=1 - b1)
    v = state["v"][idx].mul_(b2).addcmul_(vals, vals, value=1 - b2)
    state["m"][idx], state["v"][idx] = m, v
    c1, c2 = 1 - b1 ** state["step"], 1 - b2 ** state["step"]
    with torch.no_grad():
        rows = weight[idx].mul_(1 - lr * weight_decay)
        rows.addcdiv_(m, v.div(c2).sqrt_().add_(eps), value=-lr / c1)
        weight[idx] = rows


class _MaskDropout:
    """nn.Dropout's forward with the keep-mask drawn from numpy's PCG64 (16-bit uniforms) instead of torch's
    per-element Bernoulli sampling (same distribution up to 2^-16; a probe, not the package's dropout)."""

    def __init__(self, seed: int = 0):
        import numpy as np

        self.rng = np.random.default_rng(seed)

    def __call__(self, module, x):
        import numpy as np
        import torch

        if not module.training or module.p == 0:
            return x
        u = np.frombuffer(self.rng.bytes(2 * x.numel()), dtype=np.uint16).reshape(x.shape)
        keep = torch.from_numpy(u >= int(module.p * 65536))
        return x * keep.to(x.dtype) * (1.0 / (1 - module.p))


def main(argv: list[str] | None = None) -> dict:
    """Print and return CPU-ms per phase and per example for each configuration."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--train-rows", type=int, default=4000)
    p.add_argument("--steps", type=int, default=24, help="timed steps per configuration (after 3 warm-up steps)")
    p.add_argument("--configs", nargs="+", default=["base", "freeze_emb", "lazy_emb", "keep_grads", "b64",
                                                    "b64_freeze"], choices=list(CONFIGS))
    p.add_argument("--profile", action="store_true",
                   help="also profile the first configuration's timed steps by operator (torch.profiler): "
                        "the share of CPU time in matrix multiplies")
    args = p.parse_args(argv)

    import torch
    from transformers import DataCollatorWithPadding

    from llm_transfer.batching import LengthGroupedBatchSampler
    from llm_transfer.data import load_sst2, subsample, tokenize
    from llm_transfer.models import load_classifier, load_tokenizer
    from llm_transfer.settings import quiet_libraries

    torch.set_num_threads(args.threads)
    quiet_libraries()
    tok = load_tokenizer()
    ds = tokenize(subsample(load_sst2()["train"], args.train_rows, 0), tok, 128)
    ds = ds.select_columns(["input_ids", "attention_mask", "label"])
    lengths = [len(x) for x in ds["input_ids"]]
    pad = DataCollatorWithPadding(tok, return_tensors="pt")
    # static shapes for torch.compile: pad each length-grouped batch up to a multiple of q tokens
    for q in (1, 8, 16):
        b32 = list(LengthGroupedBatchSampler(lengths, 32, seed=0))
        padded = [-(-max(lengths[j] for j in b) // q) * q for b in b32]
        real = sum(lengths[j] for b in b32 for j in b)
        print(f"batch 32, lengths padded to a multiple of {q}: {len(set(padded))} distinct shapes, real tokens "
              f"{100 * real / sum(len(b) * n for b, n in zip(b32, padded, strict=True)):.1f} %")
    ids_all = torch.zeros(len(ds), max(lengths), dtype=torch.long)
    for i, x in enumerate(ds["input_ids"]):
        ids_all[i, :len(x)] = torch.tensor(x)
    labels_all, len_all = torch.tensor(ds["label"]), torch.tensor(lengths)

    def tensor_collate(rows):  # pre-padded tensors, cut to the batch's longest row
        r = torch.tensor(rows)
        L = int(len_all[r].max())
        ids = ids_all[r, :L]
        return {"input_ids": ids, "attention_mask": (torch.arange(L) < len_all[r, None]).long(),
                "labels": labels_all[r]}

    runs = {}
    for name in args.configs:
        c = CONFIGS[name]
        torch.manual_seed(0)
        model = load_classifier().train()
        emb = model.bert.embeddings.word_embeddings
        if c.get("embedding") == "frozen":
            emb.weight.requires_grad_(False)
        if c.get("embedding") == "lazy":
            emb.sparse = True
        if c.get("fast_dropout"):
            drop = _MaskDropout()
            for mod in model.modules():
                if isinstance(mod, torch.nn.Dropout):
                    mod.forward = functools.partial(drop, mod)
        dense = [q for q in model.parameters() if q.requires_grad and not (c.get("embedding") == "lazy"
                                                                               and q is emb.weight)]
        decay = [q for q in dense if q.ndim >= 2]
        no_decay = [q for q in dense if q.ndim < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                lr=5e-5, fused=True)
        bs = c.get("batch_size", 32)
        batches = list(LengthGroupedBatchSampler(lengths, bs, seed=0))
        runs[name] = {"model": model, "opt": opt, "emb": emb, "lazy_state": {}, "c": c, "batches": batches,
                      "times": {ph: [] for ph in PHASES}, "examples": [], "tokens": []}

    def step(run, i):
        c, model, opt = run["c"], run["model"], run["opt"]
        rows = run["batches"][i % len(run["batches"])]
        t = [time.process_time()]
        batch = pad(ds.__getitems__(rows))  # what DataLoader(batch_sampler=...) + DataCollatorWithPadding do
        t.append(time.process_time())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**batch).loss
        t.append(time.process_time())
        loss.backward()
        t.append(time.process_time())
        params = [q for q in model.parameters() if q.grad is not None]
        if c.get("embedding") == "lazy":
            sp = run["emb"].weight
            others = [q for q in params if q is not sp]
            norms = torch.stack([torch.linalg.vector_norm(q.grad) for q in others]
                                + [torch.linalg.vector_norm(sp.grad.coalesce().values())])
            total = torch.linalg.vector_norm(norms)
            scale = torch.clamp(1.0 / (total + 1e-6), max=1.0)
            torch._foreach_mul_([q.grad for q in others], scale)
            sp.grad = sp.grad * scale
        else:
            torch.nn.utils.clip_grad_norm_(params, 1.0)
        t.append(time.process_time())
        opt.step()
        if c.get("embedding") == "lazy":
            lazy_adamw_rows(run["emb"].weight, run["lazy_state"], lr=5e-5, weight_decay=0.01)
        t.append(time.process_time())
        opt.zero_grad(set_to_none=c.get("set_to_none", True))
        if c.get("embedding") == "lazy":
            run["emb"].weight.grad = None
        t.append(time.process_time())
        loss.item()
        t.append(time.process_time())
        return t, len(rows), batch["attention_mask"].numel()

    collate_ms = {"tokenizer.pad": [], "tensor": []}
    profile = None
    for i in range(args.steps + 3):
        if args.profile and i == 3:
            from torch.profiler import ProfilerActivity
            from torch.profiler import profile as torch_profile

            profile = torch_profile(activities=[ProfilerActivity.CPU])
            profile.__enter__()
        if profile is not None and i == args.steps + 2:  # the profiled run: configuration 1, steps 3 .. end-1
            profile.__exit__(None, None, None)
        for run in runs.values():
            t, n, real = step(run, i)
            if i >= 3:
                for k, ph in enumerate(PHASES):
                    run["times"][ph].append(1000 * (t[k + 1] - t[k]))
                run["examples"].append(n)
                run["tokens"].append(real)
        rows = runs[args.configs[0]]["batches"][i]
        t0 = time.process_time()
        pad(ds.__getitems__(rows))
        t1 = time.process_time()
        tensor_collate(rows)
        t2 = time.process_time()
        collate_ms["tokenizer.pad"].append(1000 * (t1 - t0))
        collate_ms["tensor"].append(1000 * (t2 - t1))

    print(f"CPU ms per step (mean of {args.steps} steps), {args.threads} thread(s), "
          f"{args.train_rows} SST-2 rows, bf16 autocast, fused AdamW, clip 1.0")
    print("| config | batch | padded tokens | " + " | ".join(PHASES) + " | step | examples / CPU-s | tokens / CPU-s |")
    print("|---|---:|---:|" + "---:|" * (len(PHASES) + 3))
    out = {}
    for name, run in runs.items():
        ms = {ph: statistics.fmean(run["times"][ph]) for ph in PHASES}
        total = sum(ms.values())
        n = statistics.fmean(run["examples"])
        out[name] = {"phases_ms": ms, "step_ms": total, "examples_per_cpu_second": 1000 * n / total,
                     "batch": n, "padded_tokens_per_step": statistics.fmean(run["tokens"]),
                     "padded_tokens_per_cpu_second": 1000 * statistics.fmean(run["tokens"]) / total}
        print(f"| {name} | {n:.0f} | {statistics.fmean(run['tokens']):.0f} | "
              + " | ".join(f"{ms[ph]:.1f}" for ph in PHASES)
              + f" | {total:.1f} | {1000 * n / total:.0f} | {1000 * statistics.fmean(run['tokens']) / total:.0f} |")
    print("collation, ms per batch of 32: " + ", ".join(f"{k} {statistics.fmean(v):.2f}"
                                                      for k, v in collate_ms.items()))
    out["collate_ms"] = {k: statistics.fmean(v) for k, v in collate_ms.items()}
    if profile is not None:
        # the profile covers every configuration's steps 3 .. steps+1 (they take turns): report the share
        ops = sorted(profile.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in ops)
        print(f"\noperator time (profiler self time, wall clock) over steps 3-{args.steps + 1} of "
              f"{', '.join(args.configs)}, share of all operators:")
        for e in ops[:12]:
            print(f"  {e.key:<40} {100 * e.self_cpu_time_total / total:5.1f} %  ({e.count} calls)")
        mm = sum(e.self_cpu_time_total for e in ops if e.key in ("aten::mm", "aten::addmm", "aten::bmm"))
        print(f"matrix multiplies (aten::mm, addmm, bmm): {100 * mm / total:.1f} % of operator time")
        out["matmul_share"] = mm / total
        if len(runs) == 1:  # weight matmuls: 6 FLOPs per non-embedding parameter and processed token
            run = next(iter(runs.values()))
            n_params = sum(q.numel() for name, q in run["model"].named_parameters() if ".embeddings." not in name)
            flops = 6 * n_params * sum(run["tokens"][:args.steps - 1])
            # the profiler times operators by the wall clock (descheduling included): take their share of the
            # operator time, times the steps' process CPU time
            share = sum(e.self_cpu_time_total for e in ops if e.key in ("aten::mm", "aten::addmm")) / total
            cpu = sum(sum(run["times"][ph][k] for ph in PHASES) for k in range(args.steps - 1)) / 1000
            lin = share * cpu
            print(f"weight matmuls (aten::mm + addmm): ≈ {flops / lin / 1e9:.0f} GFLOP per CPU-second "
                  f"(6 × {n_params / 1e6:.2f} M parameters × processed tokens / (their share × the steps' CPU time))")
            out["weight_matmul_flops_per_second"] = flops / lin
    return out


if __name__ == "__main__":
    main()
