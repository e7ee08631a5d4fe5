"""The frozen word-embedding table on the whole SST-2 split: the series' full recipe with and without it, 3 seeds.

    python benchmarks/frozen_table.py                      # train what is missing (two one-thread workers), report
    python benchmarks/frozen_table.py --report-only        # the report from the runs recorded so far

Each run is notebook 04's full-mode fine-tune (`recipes.sst2_recipe`: 67,349 rows, 3 epochs, lr 5e-5, batch 32,
max length 128) with `TrainConfig(freeze_word_embeddings=...)` and a seed: arm "current" (the table trained, the
recipe the comparison started from) and arm "frozen". Each writes its resumable run folder under
`artifacts/full/frozen-table/`; seed 0 of the series' recipe goes to the series' own `sst2-finetune`, where notebook
04 finds it. One JSON line a finished run in `frozen-table/runs.jsonl`: dev accuracy after every epoch, the dev
predictions of the last and the best epoch, seconds, examples/s and examples per CPU-second of the worker. The
report (`benchmarks/results/frozen_table.{md,json}`) compares the arms seed by seed; the decision rule, fixed before
the runs: frozen becomes the series' recipe if its mean *last-epoch* dev accuracy (no epoch chosen on dev) is at most
0.5 points below that of the table trained.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from llm_transfer import get_settings, quiet_libraries
from llm_transfer.checkpoints import load_checkpoint
from llm_transfer.hardware import describe
from llm_transfer.jobs import quiet_job, run_cached
from llm_transfer.recipes import FINETUNE_RUN, run_sst2_finetune, sst2_inputs, sst2_recipe
from llm_transfer.settings import display_path
from llm_transfer.training import predict_logits
from llm_transfer.transfer_curve import read_cache

ARMS = {"current": False, "frozen": True}  # arm name (in the cache keys) -> freeze_word_embeddings
LABELS = {"current": "table trained", "frozen": "table frozen"}
RULE_POINTS = 0.5


@dataclass(frozen=True)
class Run:
    """One full-data fine-tune: an arm of the comparison and a seed."""

    arm: str
    seed: int

    def key(self) -> str:
        return f"{self.arm}-s{self.seed}-v1"

    def folder(self, artifacts: Path) -> Path:
        series = sst2_recipe(get_settings(mode="full"))[0].freeze_word_embeddings  # the series' arm
        if self.seed == 0 and ARMS[self.arm] == series:
            return artifacts / FINETUNE_RUN  # the series' own run (notebook 04)
        return artifacts / "frozen-table" / f"{self.arm}-s{self.seed}"


def train_run(run: Run, artifacts: str, mode: str) -> dict:
    """Fine-tune (or resume) one run in this worker; its record with dev predictions of the last and best epoch."""
    import resource

    S = get_settings(mode=mode, seed=run.seed)
    cfg, tokenizer, train, dev = sst2_inputs(S)
    cfg = replace(cfg, freeze_word_embeddings=ARMS[run.arm])
    cpu0, t0 = time.process_time(), time.perf_counter()
    with quiet_job(run.seed):
        res = run_sst2_finetune(S, run.folder(Path(artifacts)), log=lambda *_: None,
                                inputs=(cfg, tokenizer, train, dev))
    cpu = time.process_time() - cpu0
    preds = {}
    for name, folder in (("last", res.last_dir), ("best", res.best_dir)):
        model, tok = load_checkpoint(folder)
        logits = predict_logits(model, tok, dev, precision=res.history[-1]["precision"])
        preds[name] = "".join(str(int(k)) for k in logits.argmax(-1))
    ran = res.resumed_from_epoch < cfg.epochs  # False: the folder held the finished run
    return {"key": run.key(), "arm": run.arm, "seed": run.seed, "freeze_word_embeddings": cfg.freeze_word_embeddings,
            "dev_accuracy": [h["eval_accuracy"] for h in res.history],
            "dev_loss": [h["eval_loss"] for h in res.history],
            "best_epoch": res.best["epoch"], "pred_last": preds["last"], "pred_best": preds["best"],
            "train_seconds": sum(h["train_seconds"] for h in res.history),
            "examples_per_second": float(np.mean([h["examples_per_second"] for h in res.history])),
            "examples_per_cpu_second": res.examples_seen / cpu if ran and cpu else None,
            "resumed_from_epoch": res.resumed_from_epoch, "wall_seconds": time.perf_counter() - t0,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "hardware": res.history[-1]["hardware"], "machine": describe("cpu")}


def report(records: list[dict], labels: np.ndarray) -> dict:
    """Per-arm means, per-seed paired differences and a bootstrap interval of the difference of means."""
    out = {"arms": {}, "paired": [], "rule_points": RULE_POINTS}
    by = {(r["arm"], r["seed"]): r for r in records}
    for arm in ARMS:
        rs = sorted((r for r in records if r["arm"] == arm), key=lambda r: r["seed"])
        if not rs:
            continue
        last = [r["dev_accuracy"][-1] for r in rs]
        best = [max(r["dev_accuracy"]) for r in rs]
        out["arms"][arm] = {"seeds": [r["seed"] for r in rs], "last": last, "best": best,
                            "last_mean": float(np.mean(last)), "best_mean": float(np.mean(best)),
                            "last_sd": float(np.std(last, ddof=1)) if len(rs) > 1 else None,
                            "per_epoch": [r["dev_accuracy"] for r in rs],
                            "examples_per_second": [r["examples_per_second"] for r in rs],
                            "examples_per_cpu_second": [r["examples_per_cpu_second"] for r in rs],
                            "train_minutes": [r["train_seconds"] / 60 for r in rs]}
    seeds = sorted({s for (a, s) in by if a == "current"} & {s for (a, s) in by if a == "frozen"})
    for s in seeds:
        c, f = by["current", s], by["frozen", s]
        cpu_c, cpu_f = c["examples_per_cpu_second"], f["examples_per_cpu_second"]
        pc = np.array([int(ch) for ch in c["pred_last"]]) == labels
        pf = np.array([int(ch) for ch in f["pred_last"]]) == labels
        out["paired"].append({"seed": s, "diff_last": float(pf.mean() - pc.mean()),
                              "only_frozen_right": int((pf & ~pc).sum()), "only_current_right": int((pc & ~pf).sum()),
                              "speed_ratio": f["examples_per_second"] / c["examples_per_second"],
                              "cpu_ratio": cpu_f / cpu_c if cpu_f and cpu_c else None})
    if seeds:  # difference of the seed-mean accuracies, dev sentences resampled (the same resample for every run)
        C = np.stack([np.array([int(ch) for ch in by["current", s]["pred_last"]]) == labels for s in seeds])
        F = np.stack([np.array([int(ch) for ch in by["frozen", s]["pred_last"]]) == labels for s in seeds])
        diff = (F.mean(0) - C.mean(0)).astype(float)
        idx = np.random.default_rng(0).integers(0, len(diff), size=(2000, len(diff)))
        lo, hi = np.percentile(diff[idx].mean(1), [2.5, 97.5])
        out["diff_of_means"] = {"seeds": seeds, "value": float(diff.mean()), "ci95": [float(lo), float(hi)]}
        out["frozen_within_rule"] = bool(diff.mean() >= -RULE_POINTS / 100)
    return out


def to_markdown(rep: dict, records: list[dict], command: str) -> str:
    """The report as a Markdown page."""
    pct = lambda x: f"{100 * x:.2f}"  # noqa: E731
    m = records[0]["machine"] if records else "?"
    lines = ["# The frozen word-embedding table on the whole SST-2 split", "",
             f"- **Command**: `{command}`", f"- **Machine**: {m}; two one-thread workers side by side",
             f"- **Date**: {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}",
             "- **Recipe**: notebook 04's full mode (67,349 rows, 3 epochs, lr 5e-5, batch 32, warm-up 10 %, max "
             "length 128, bf16 where native); the arms differ only in `TrainConfig(freeze_word_embeddings=...)`",
             f"- **Rule, fixed before the runs**: frozen becomes the series' recipe if its mean last-epoch dev "
             f"accuracy is at most {RULE_POINTS} points below that of the table trained", "",
             "| arm | seed | dev accuracy after epochs 1 / 2 / 3 | best epoch | training min | examples/s | "
             "examples per CPU-s |", "|---|---:|---|---:|---:|---:|---:|"]
    for r in sorted(records, key=lambda r: (r["arm"], r["seed"])):
        cpu = f"{r['examples_per_cpu_second']:.1f}" if r["examples_per_cpu_second"] else "—"
        lines.append(f"| {LABELS[r['arm']]} | {r['seed']} | {' / '.join(pct(a) for a in r['dev_accuracy'])} | "
                     f"{r['best_epoch']} | {r['train_seconds'] / 60:.1f} | {r['examples_per_second']:.1f} | {cpu} |")
    lines += ["", "| arm | seeds | last epoch, mean ± sd | best epoch (chosen on dev), mean |", "|---|---|---:|---:|"]
    for arm, a in rep["arms"].items():
        sd = f" ± {100 * a['last_sd']:.2f}" if a["last_sd"] is not None else ""
        lines.append(f"| {LABELS[arm]} | {', '.join(map(str, a['seeds']))} | {pct(a['last_mean'])}{sd} | "
                     f"{pct(a['best_mean'])} |")
    if rep["paired"]:
        lines += ["", "| seed | frozen − trained, last epoch (points) | only frozen right | only trained right | "
                  "speed, frozen / trained (examples/s) | per CPU-s |", "|---:|---:|---:|---:|---:|---:|"]
        for p in rep["paired"]:
            cpu = f"{p['cpu_ratio']:.2f}×" if p["cpu_ratio"] else "—"
            lines.append(f"| {p['seed']} | {100 * p['diff_last']:+.2f} | {p['only_frozen_right']} | "
                         f"{p['only_current_right']} | {p['speed_ratio']:.2f}× | {cpu} |")
    if "diff_of_means" in rep:
        d = rep["diff_of_means"]
        verdict = "within" if rep["frozen_within_rule"] else "outside"
        lines += ["", f"**Frozen − trained, mean of seeds {', '.join(map(str, d['seeds']))}, last epoch: "
                  f"{100 * d['value']:+.2f} points** [{100 * d['ci95'][0]:+.2f}, {100 * d['ci95'][1]:+.2f}] "
                  f"(95 % bootstrap over the 872 dev sentences): {verdict} the {RULE_POINTS}-point rule."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    """Train the missing runs, then write the report."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--report-only", action="store_true", help="report the runs recorded so far, train nothing")
    p.add_argument("--out", default="benchmarks/results/frozen_table.md")
    p.add_argument("--mode", default="full", choices=["full", "quick"], help="quick: a smoke test of the script")
    a = p.parse_args(argv)
    quiet_libraries()
    S = get_settings(mode=a.mode)
    cache = S.run_dir("frozen-table") / "runs.jsonl"
    artifacts = cache.parent.parent
    # in pairs side by side (each pair's speed ratio measured under one load): frozen 0 + current 1, frozen 1 +
    # current 2, frozen 2 + current 0 (the series' own run, last: notebook 04 may have trained it already)
    order = [("frozen", 0), ("current", 1), ("frozen", 1), ("current", 2), ("frozen", 2), ("current", 0)]
    runs = [Run(arm, s) for arm, s in order if arm in a.arms and s in a.seeds]
    runs += [Run(arm, s) for arm in a.arms for s in a.seeds if (arm, s) not in order]
    if a.report_only:
        have = read_cache(cache)
        records = [have[r.key()] for r in runs if r.key() in have]
    else:
        records = run_cached(runs, cache, train_run, (str(artifacts), a.mode), workers=a.workers)
    labels = np.array(sst2_inputs(S)[3]["label"])
    rep = report(records, labels)
    rep["records"] = [{k: v for k, v in r.items() if not k.startswith("pred_")} for r in records]
    cmd = "python benchmarks/frozen_table.py" + (" " + " ".join(argv) if argv else "")
    Path(a.out).write_text(to_markdown(rep, records, cmd))
    Path(a.out).with_suffix(".json").write_text(json.dumps(rep, indent=1))
    print(to_markdown(rep, records, cmd))
    print(f"written {display_path(a.out)} (+ .json); runs in {display_path(cache)}; recipe {sst2_recipe(S)[0]}")
    return rep


if __name__ == "__main__":
    main()
