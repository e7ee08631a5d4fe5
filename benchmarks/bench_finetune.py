"""Fine-tuning and inference speed of the project's loop vs 🤗 `Trainer` and `pipeline`, side by side.

One run fine-tunes the same model on the same SST-2 subset with the same hyper-parameters three ways
(the project's `fine_tune`, `Trainer` with its default random sampling, `Trainer` with length grouping),
each in its own subprocess (so peak memory is per method), interleaved per seed (so background load hits
all alike); then times inference on the validation split: `training.predict_proba` vs `pipeline`.

    python benchmarks/bench_finetune.py                      # the default run (~10 min on 2 idle cores)
    python benchmarks/bench_finetune.py --out benchmarks/results/latest.md
    python benchmarks/bench_finetune.py --train-rows 256 --seeds 0 --dev-rows 128   # a smoke test
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# name -> (runner, options). The first three are the comparison; the others isolate one lever each.
# Levers marked "patched" need a change in training.py / batching.py: the worker patches them in its own
# process only, to measure the change before the lead makes it.
METHODS: dict[str, tuple[str, dict]] = {
    "project": ("project", {}),  # precision from --precision
    "trainer": ("trainer", {"strategy": "random"}),
    "trainer_grouped": ("trainer", {"strategy": "group_by_length"}),
    # levers (run with --methods ...)
    "project_fp32": ("project", {"precision": "no"}),
    "project_bf16": ("project", {"precision": "bf16"}),
    "project_random": ("project", {"group_by_length": False}),
    "project_unfused": ("project", {"fused_adamw": False}),
    "project_mega8": ("project", {"mega_batch_mult": 8}),
    "trainer_bf16": ("trainer", {"strategy": "random", "bf16": True}),
    "trainer_grouped_bf16": ("trainer", {"strategy": "group_by_length", "bf16": True}),
}
LABELS = {
    "project": "project `fine_tune` (length-grouped)",
    "trainer": "`Trainer` default (random)",
    "trainer_grouped": "`Trainer` group_by_length",
    "project_fp32": "project, fp32",
    "project_bf16": "project, bf16 autocast",
    "project_random": "project, random batches",
    "project_unfused": "project, per-tensor AdamW (not fused; patched)",
    "project_mega8": "project, mega-batch 8×batch (patched)",
    "trainer_bf16": "`Trainer` default + bf16",
    "trainer_grouped_bf16": "`Trainer` group_by_length + bf16",
}
# The comparison, then two levers worth seeing with the same seeds: fp32 (does bf16 cost accuracy?) and the
# optimizer without its fused kernel (what fused AdamW buys).
DEFAULT_METHODS = ["project", "trainer", "trainer_grouped", "project_fp32", "project_unfused"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--train-rows", type=int, default=2000, help="SST-2 training rows (a fixed random subset)")
    p.add_argument("--dev-rows", type=int, default=None,
                   help="validation rows for accuracy and inference (default: all 872)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="training seeds, one run per method each")
    p.add_argument("--repeats", type=int, default=2, help="timed inference passes per method")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--precision", choices=["auto", "no", "bf16"], default="auto",
                   help="mixed precision of the project's method (Trainer stays at its fp32 default); "
                        "auto = bf16 where the CPU has native bf16 (avx512_bf16 / amx_bf16), else no")
    p.add_argument("--infer-batch-size", type=int, default=128, help="batch size of both inference paths")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads in every worker (default: torch's own choice)")
    p.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=list(METHODS))
    p.add_argument("--no-inference", action="store_true", help="skip the inference comparison")
    p.add_argument("--no-inference-levers", dest="inference_levers", action="store_false",
                   help="time only the two paths compared, not predict_proba with bf16 autocast / other "
                        "batch sizes and pipeline at its default batch size 1")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the training subset (same in every run)")
    p.add_argument("--out", type=Path, default=None,
                   help="write the table here (.md) and the raw results next to it (.json)")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one measurement from a JSON spec
    args = p.parse_args(argv)
    for name in ("train_rows", "batch_size", "epochs", "max_length", "repeats", "infer_batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.dev_rows is not None and args.dev_rows < 1:
        p.error(f"--dev-rows must be at least 1, got {args.dev_rows}")
    return args


# ----------------------------------------------------------------------------- worker side (one subprocess)

def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


class TokenCounter:
    """Forward pre-hook counting real (attention_mask) vs processed (numel) tokens of each batch."""

    def __init__(self, model, training_only: bool):
        self.real = self.processed = self.batches = 0
        self.training_only = training_only
        self.handle = model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        """Count one forward call's tokens."""
        if self.training_only and not module.training:
            return None
        mask = kwargs.get("attention_mask")
        if mask is not None:
            self.real += int(mask.sum())
            self.processed += mask.numel()
            self.batches += 1
        return None

    def result(self) -> dict:
        """Totals and the real fraction."""
        return {"real_tokens": self.real, "processed_tokens": self.processed, "batches": self.batches,
                "real_fraction": self.real / self.processed if self.processed else float("nan")}


def _load_data(spec: dict):
    """The training subset and the dev rows, tokenized (no padding) with the spec's max length."""
    from llm_transfer.data import load_sst2, subsample, tokenize
    from llm_transfer.models import load_tokenizer

    dsd = load_sst2()
    tokenizer = load_tokenizer()
    dev = dsd["validation"]
    if spec["dev_rows"] is not None:
        dev = dev.select(range(min(spec["dev_rows"], len(dev))))
    keep = ["input_ids", "attention_mask", "label"]  # what the project's loader feeds: give Trainer the same
    train = subsample(dsd["train"], spec["train_rows"], spec["data_seed"])
    train = tokenize(train, tokenizer, spec["max_length"]).select_columns(keep)
    return train, tokenize(dev, tokenizer, spec["max_length"]).select_columns(keep), tokenizer


def _run_project(spec: dict, opts: dict, model, tokenizer, train, dev) -> float:
    """Fine-tune with the project's loop; return the seconds spent in training epochs."""
    from llm_transfer import batching, training
    from llm_transfer.training import TrainConfig, fine_tune

    if opts.get("fused_adamw") is False:  # undo training._optimizer's fused kernel, in this worker only
        make = training._optimizer

        def unfused_optimizer(model, cfg):
            opt = make(model, cfg)
            groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in opt.param_groups]
            return type(opt)(groups, lr=cfg.lr, fused=False, foreach=False)

        training._optimizer = unfused_optimizer

    if "mega_batch_mult" in opts:  # a lever that needs a change in batching.py: patch it in this worker only
        init = batching.LengthGroupedBatchSampler.__init__
        mult = opts["mega_batch_mult"]

        def patched(self, lengths, batch_size, seed=0, group=True, mega_batch_mult=50, drop_last=False):
            init(self, lengths, batch_size, seed, group, mult, drop_last)

        batching.LengthGroupedBatchSampler.__init__ = patched
    cfg = TrainConfig(epochs=spec["epochs"], batch_size=spec["batch_size"], lr=spec["lr"],
                      weight_decay=spec["weight_decay"], warmup_ratio=spec["warmup_ratio"],
                      max_length=spec["max_length"], group_by_length=opts.get("group_by_length", True),
                      mixed_precision=opts.get("precision", spec["precision"]), seed=spec["seed"])
    # fine_tune evaluates after each epoch: give it 8 rows so that costs nothing (every method is evaluated
    # alike afterwards, with the same code)
    res = fine_tune(model, tokenizer, train, dev.select(range(min(8, len(dev)))), cfg, output_dir=None,
                    device="cpu", log=lambda *a: None)
    return res.train_seconds


def _run_trainer(spec: dict, opts: dict, model, tokenizer, train, workdir: str) -> float:
    """Fine-tune with 🤗 Trainer (defaults except the shared hyper-parameters); return the epochs' seconds."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    class EpochTimer(TrainerCallback):
        """Sum the wall time of training epochs (what fine_tune's train_seconds covers)."""

        def __init__(self):
            self.seconds, self.t0 = 0.0, None

        def on_epoch_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, args, state, control, **kw):
            self.seconds += time.perf_counter() - self.t0

    targs = TrainingArguments(
        output_dir=workdir, per_device_train_batch_size=spec["batch_size"], learning_rate=spec["lr"],
        num_train_epochs=spec["epochs"], lr_scheduler_type="linear", warmup_steps=spec["warmup_ratio"],
        weight_decay=spec["weight_decay"], max_grad_norm=1.0, seed=spec["seed"], data_seed=spec["seed"],
        train_sampling_strategy=opts["strategy"], bf16=opts.get("bf16", False), use_cpu=True,
        save_strategy="no", eval_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True,
    )
    timer = EpochTimer()
    trainer = Trainer(model=model, args=targs, train_dataset=train, processing_class=tokenizer,
                      callbacks=[timer])
    trainer.train()
    return timer.seconds


def _train_worker(spec: dict) -> dict:
    """Fine-tune one method with one seed, then evaluate it on the dev rows with the same code for all."""
    import torch

    from llm_transfer.models import load_classifier
    from llm_transfer.settings import quiet_libraries, seed_everything
    from llm_transfer.training import evaluate

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    quiet_libraries()
    runner, opts = METHODS[spec["method"]]
    train, dev, tokenizer = _load_data(spec)
    seed_everything(spec["seed"])
    model = load_classifier()
    counter = TokenCounter(model, training_only=True)
    cpu0 = time.process_time()
    with tempfile.TemporaryDirectory() as workdir:
        if runner == "project":
            seconds = _run_project(spec, opts, model, tokenizer, train, dev)
        else:
            seconds = _run_trainer(spec, opts, model, tokenizer, train, workdir)
    cpu_seconds = time.process_time() - cpu0  # all threads; includes each library's few-second setup
    counter.handle.remove()
    from accelerate.utils import extract_model_from_parallel

    # drop the autocast wrapper Accelerate leaves on a bf16 model's forward: evaluate every method in fp32
    model = extract_model_from_parallel(model, keep_fp32_wrapper=False).to("cpu").float()
    ev = evaluate(model, dev, tokenizer, batch_size=128, bf16=False)
    if spec.get("save_to"):
        model.save_pretrained(spec["save_to"], safe_serialization=True)
        tokenizer.save_pretrained(spec["save_to"])
    examples = len(train) * spec["epochs"]
    return {"method": spec["method"], "seed": spec["seed"], "train_seconds": seconds, "examples": examples,
            "examples_per_second": examples / seconds, "cpu_seconds": cpu_seconds,
            "examples_per_cpu_second": examples / cpu_seconds, "dev_accuracy": ev["accuracy"],
            "dev_rows": ev["n"],
            **counter.result(), "peak_rss_mb": _peak_rss_mb(), "torch_threads": torch.get_num_threads()}


def _infer_worker(spec: dict) -> dict:
    """Time predict_proba vs pipeline on the same checkpoint and texts, alternating order each repeat."""
    import numpy as np
    import torch
    from transformers import pipeline

    from llm_transfer.checkpoints import load_checkpoint
    from llm_transfer.data import load_sst2
    from llm_transfer.settings import quiet_libraries
    from llm_transfer.training import predict_proba

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    quiet_libraries()
    dev = load_sst2()["validation"]
    texts = list(dev["sentence"])[: spec["dev_rows"] or len(dev)]  # datasets 5 columns are not lists
    model, tokenizer = load_checkpoint(spec["checkpoint"])
    pipe = pipeline("text-classification", model=spec["checkpoint"], device="cpu")
    bs, L = spec["infer_batch_size"], spec["max_length"]

    def project(batch_size: int = bs, bf16: bool | None = None):  # None: the default (bf16 where native)
        return predict_proba(model, tokenizer, texts, max_length=L, batch_size=batch_size, bf16=bf16).argmax(-1)

    def hf_pipeline(batch_size: int | None = bs):
        out = pipe(texts, batch_size=batch_size, truncation=True, max_length=L)
        return np.array([pipe.model.config.label2id[r["label"]] for r in out])

    methods = {"project": project, "pipeline": hf_pipeline}
    if spec.get("inference_levers"):
        methods["project_fp32"] = lambda: project(bf16=False)
        methods["project_batch_div4"] = lambda: project(batch_size=max(1, bs // 4))
        methods["project_batch_x4"] = lambda: project(batch_size=4 * bs)
        methods["pipeline_default_batch"] = lambda: hf_pipeline(None)  # the pipeline's default: one at a time
    models = {k: pipe.model if k.startswith("pipeline") else model for k in methods}
    # warm-up (allocator, oneDNN kernels) on one batch each
    predict_proba(model, tokenizer, texts[:bs], max_length=L, batch_size=bs)
    pipe(texts[:bs], batch_size=bs, truncation=True, max_length=L)
    times: dict[str, list[float]] = {k: [] for k in methods}
    preds, tokens = {}, {}
    for r in range(spec["repeats"]):
        order = list(methods) if r % 2 == 0 else list(reversed(methods))
        for name in order:
            counter = TokenCounter(models[name], training_only=False)
            t0 = time.perf_counter()
            preds[name] = methods[name]()
            times[name].append(time.perf_counter() - t0)
            counter.handle.remove()
            tokens[name] = counter.result()
    out = {}
    for name in methods:
        best = min(times[name])
        agree = float((preds[name] == preds["project"]).mean())
        out[name] = {"seconds": times[name], "sentences_per_second": len(texts) / best,
                     "agreement_with_project": agree, **tokens[name]}
    return {"inference": out, "sentences": len(texts), "batch_size": bs, "peak_rss_mb": _peak_rss_mb(),
            "torch_threads": torch.get_num_threads()}


def _worker_main(spec_json: str) -> None:
    """Entry point of a worker subprocess: run the spec, write JSON to spec['result']."""
    spec = json.loads(spec_json)
    result = _infer_worker(spec) if spec["kind"] == "infer" else _train_worker(spec)
    Path(spec["result"]).write_text(json.dumps(result))


# ----------------------------------------------------------------------------- parent side (orchestration)

def _spawn(spec: dict, tmp: Path) -> dict:
    """Run one worker subprocess and return its JSON result (raising with its stderr if it failed)."""
    spec = {**spec, "result": str(tmp / f"result-{time.monotonic_ns()}.json")}
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec.get('method', spec['kind'])} (seed {spec.get('seed')}) failed with "
                           f"exit code {proc.returncode}:\n{proc.stderr[-3000:]}")
    result = json.loads(Path(spec["result"]).read_text())
    result["wall_seconds"] = time.perf_counter() - t0
    return result


def machine_info(args: argparse.Namespace, argv: list[str] | None) -> dict:
    """CPU model, core count, load, versions, date and the command, for the report's header."""
    from llm_transfer.hardware import cpu_model, native_bf16

    cpu = cpu_model()
    versions = {}
    for mod in ("torch", "transformers", "accelerate", "datasets"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = "missing"
    cmd = argv if argv is not None else sys.argv[1:]
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "versions": versions,
            "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": "python benchmarks/bench_finetune.py " + shlex.join(cmd),
            "load_before": os.getloadavg(), "native_bf16": native_bf16()}


def _mean(xs: list[float]) -> float:
    return statistics.fmean(xs) if xs else float("nan")


def _sd(xs: list[float]) -> float:
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def summarize(runs: list[dict], methods: list[str]) -> dict:
    """Per-method means over seeds, plus the ratios the goals are stated in."""
    per = {}
    for m in methods:
        rs = [r for r in runs if r["method"] == m]
        real, processed = sum(r["real_tokens"] for r in rs), sum(r["processed_tokens"] for r in rs)
        per[m] = {"examples_per_second": _mean([r["examples_per_second"] for r in rs]),
                  "examples_per_second_sd": _sd([r["examples_per_second"] for r in rs]),
                  "examples_per_cpu_second": _mean([r["examples_per_cpu_second"] for r in rs]),
                  "real_fraction": real / max(processed, 1),
                  "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
                  "dev_accuracy": _mean([r["dev_accuracy"] for r in rs]),
                  "dev_accuracies": [r["dev_accuracy"] for r in rs],
                  "train_seconds": _mean([r["train_seconds"] for r in rs]), "seeds": [r["seed"] for r in rs]}
    ratios = {}
    if "project" in per:
        for other in methods:
            if other != "project":
                ratios[f"throughput project / {other}"] = (per["project"]["examples_per_second"]
                                                          / per[other]["examples_per_second"])
                ratios[f"accuracy project - {other} (points)"] = 100 * (per["project"]["dev_accuracy"]
                                                                        - per[other]["dev_accuracy"])
    return {"methods": per, "ratios": ratios}


INFER_LABELS = {
    "project": "project `predict_proba` (length-sorted batches, bf16 where native)",
    "pipeline": "`pipeline(\"text-classification\")`, same batch size",
    "project_fp32": "project `predict_proba` in fp32 (`bf16=False`)",
    "project_batch_div4": "project `predict_proba`, batch ÷ 4",
    "project_batch_x4": "project `predict_proba`, batch × 4",
    "pipeline_default_batch": "`pipeline` at its default batch size (1)",
}


def to_markdown(report: dict) -> str:
    """The report as markdown: header, training table, inference table, ratios vs goals."""
    info, s, a = report["machine"], report["summary"], report["args"]
    load = f"{info['load_before'][0]:.2f} before, {info['load_after'][0]:.2f} after (1-minute load average)"
    lines = [
        "# Fine-tuning and inference speed: project vs 🤗 Trainer / pipeline", "",
        f"- **Machine**: {info['cpu']}, {info['cores']} cores, torch threads {report['torch_threads']}, "
        f"native bf16: {'yes' if info['native_bf16'] else 'no'}; load {load}",
        f"- **Date**: {info['date']}; Python {info['python']}, "
        + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
        f"- **Command**: `{info['command']}`",
        f"- **Setup**: all-MiniLM-L6-v2, {a['train_rows']} SST-2 training rows "
        f"(subset seed {a['data_seed']}), "
        f"batch {a['batch_size']}, lr {a['lr']:g}, linear schedule with warm-up {a['warmup_ratio']:g}, "
        f"weight decay {a['weight_decay']:g}, {a['epochs']} epoch(s), max length {a['max_length']}, "
        f"seeds {a['seeds']}; project precision `{report['precision']}`, Trainer at its defaults (fp32, "
        f"fused AdamW); dev accuracy on {report['dev_rows']} validation rows",
        "", "## Fine-tuning", "",
        "| method | examples/s | × Trainer default | examples per CPU-s | real tokens | peak RSS (MiB) "
        "| dev accuracy (mean) | per seed |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    base = s["methods"].get("trainer", {}).get("examples_per_second")
    for m, v in s["methods"].items():
        ratio = f"{v['examples_per_second'] / base:.2f}×" if base else "–"
        seeds = ", ".join(f"{x:.3f}" for x in v["dev_accuracies"])
        lines.append(f"| {LABELS[m]} | {v['examples_per_second']:.1f} ± {v['examples_per_second_sd']:.1f} "
                     f"| {ratio} | {v['examples_per_cpu_second']:.1f} | {100 * v['real_fraction']:.1f} % "
                     f"| {v['peak_rss_mb']:.0f} | {v['dev_accuracy']:.4f} | {seeds} |")
    if report.get("inference"):
        inf = report["inference"]
        lines += ["", "## Inference (validation split)", "",
                  f"{inf['sentences']} sentences, batch size {inf['batch_size']}, project in its default precision "
                  "(bf16 autocast where the CPU has native bf16) unless stated, "
                  f"best of {a['repeats']} passes; peak RSS {inf['peak_rss_mb']:.0f} MiB (all paths, one "
                  "process).",
                  "", "| method | sentences/s | × pipeline | real tokens | same label as project |",
                  "|---|---:|---:|---:|---:|"]
        pipe = inf["inference"]["pipeline"]["sentences_per_second"]
        for m, v in inf["inference"].items():
            lines.append(f"| {INFER_LABELS[m]} | {v['sentences_per_second']:.1f} "
                         f"| {v['sentences_per_second'] / pipe:.2f}× | {100 * v['real_fraction']:.1f} % "
                         f"| {100 * v['agreement_with_project']:.1f} % |")
    lines += ["", "## Ratios vs goals", "", "| measure | value | goal | met |", "|---|---:|---:|:---:|"]
    for name, value, goal, ok in report["goals"]:
        lines.append(f"| {name} | {value} | {goal} | {'yes' if ok else 'no'} |")
    return "\n".join(lines) + "\n"


def check_goals(report: dict) -> list[tuple[str, str, str, bool]]:
    """The issue's goals, each as (measure, value, goal, met)."""
    s, goals = report["summary"], []
    r = s["ratios"]
    if "throughput project / trainer" in r:
        v = r["throughput project / trainer"]
        goals.append(("fine-tune throughput, project / Trainer default", f"{v:.2f}×", "≥ 3.0×", v >= 3.0))
    if "throughput project / trainer_grouped" in r:
        v = r["throughput project / trainer_grouped"]
        goals.append(("fine-tune throughput, project / Trainer grouped", f"{v:.2f}×", "≥ 1.2×", v >= 1.2))
    if "accuracy project - trainer (points)" in r:
        v = r["accuracy project - trainer (points)"]
        n = len(s["methods"]["project"]["seeds"])
        goals.append((f"dev accuracy, project − Trainer default (mean of {n} seed(s))", f"{v:+.2f} points",
                      "≥ −0.5 points", v >= -0.5))
    if "project" in s["methods"]:
        v = s["methods"]["project"]["real_fraction"]
        goals.append(("real (non-padding) tokens, project training", f"{100 * v:.1f} %", "≥ 90 %", v >= 0.9))
    if report.get("inference"):
        inf = report["inference"]["inference"]
        v = inf["project"]["sentences_per_second"] / inf["pipeline"]["sentences_per_second"]
        goals.append(("inference, project / pipeline", f"{v:.2f}×", "≥ 2.0×", v >= 2.0))
    return goals


def main(argv: list[str] | None = None, log=print) -> dict:
    """Run the benchmark; return the report (and write it when --out is given)."""
    args = parse_args(argv)
    if args.worker:
        _worker_main(args.worker)
        return {}
    from llm_transfer.hardware import resolve_precision

    info = machine_info(args, argv)
    precision = resolve_precision(args.precision, "cpu")
    base = {k: getattr(args, k) for k in ("train_rows", "dev_rows", "batch_size", "lr", "warmup_ratio",
                                          "weight_decay", "epochs", "max_length", "threads",
                                          "data_seed", "infer_batch_size", "repeats")}
    base["precision"] = precision
    runs: list[dict] = []
    inference = None
    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as tmpdir:
        tmp = Path(tmpdir)
        ckpt = tmp / "checkpoint"
        for seed in args.seeds:  # interleaved: every method once per seed, so background load hits all alike
            for method in args.methods:
                save = not args.no_inference and not ckpt.exists() and method == args.methods[0]
                spec = {**base, "kind": "train", "method": method, "seed": seed,
                        "save_to": str(ckpt) if save else None}
                r = _spawn(spec, tmp)
                runs.append(r)
                if args.out is not None:  # keep what was measured even if a later step fails
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.with_suffix(".partial.json").write_text(json.dumps(runs, indent=1))
                log(f"seed {seed} {method:>20}: {r['examples_per_second']:6.1f} ex/s "
                    f"({r['examples_per_cpu_second']:5.1f} per CPU-s) | real tokens "
                    f"{100 * r['real_fraction']:5.1f} % "
                    f"| dev acc {r['dev_accuracy']:.4f} | peak {r['peak_rss_mb']:.0f} MiB | "
                    f"{r['wall_seconds']:.0f} s wall | load {os.getloadavg()[0]:.1f}")
        if not args.no_inference:
            inference = _spawn({**base, "kind": "infer", "checkpoint": str(ckpt),
                                "inference_levers": args.inference_levers}, tmp)
            log("inference: " + " | ".join(f"{k} {v['sentences_per_second']:.0f} sent/s"
                                           for k, v in inference["inference"].items()))
    info["load_after"] = os.getloadavg()
    report = {"machine": info, "args": {**vars(args), "out": str(args.out) if args.out else None},
              "precision": precision, "torch_threads": runs[0]["torch_threads"],
              "dev_rows": runs[0]["dev_rows"], "runs": runs, "summary": summarize(runs, args.methods),
              "inference": inference}
    report["goals"] = check_goals(report)
    md = to_markdown(report)
    log("\n" + md)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".md").write_text(md)
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
        args.out.with_suffix(".partial.json").unlink(missing_ok=True)
        log(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.json')}")
    return report


if __name__ == "__main__":
    main()
