"""Fine-tuning and inference speed of the project's loop vs 🤗 `Trainer` and `pipeline`, side by side.

One run fine-tunes the same model on the same SST-2 subset with the same hyper-parameters several ways
(`--methods`: by default the project's `fine_tune`, the same with the levers of issue 12, `Trainer` at its best
= length grouping + bf16, and `Trainer` at its defaults), each in its own subprocess (so peak memory is per
method), interleaved per seed (so background load hits all alike); then times inference on the validation
split: `training.predict_proba` vs `pipeline` (in fp32 and with bf16 autocast at a few batch sizes), and a
square matmul (`--matmul-size`, 2048 by default) for the hardware's achievable rate next to its peak from
/proc/cpuinfo.

    python benchmarks/bench_finetune.py --threads 1          # the default run
    python benchmarks/bench_finetune.py --out benchmarks/results/latest.md
    python benchmarks/bench_finetune.py --train-rows 256 --seeds 0 --dev-rows 128   # a smoke test
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
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

# name -> (runner, options). DEFAULT_METHODS are the comparison; the others isolate one lever each.
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
    # levers against the strongest peer (issue 12); the frozen table is now a TrainConfig option
    "project_freeze_emb": ("project", {"freeze_word_embeddings": True}),
    "project_b64": ("project", {"batch_scale": 2}),
    "project_fast": ("project", {"freeze_word_embeddings": True, "batch_scale": 2}),
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
    "project_freeze_emb": "project, word embeddings frozen",
    "project_b64": "project, batch × 2, lr × √2",
    "project_fast": "project, word embeddings frozen + batch × 2, lr × √2",
}
# The headline: the project today, the project with the levers of issue 12, Trainer at its best (length
# grouping + bf16) and Trainer at its defaults.
DEFAULT_METHODS = ["project", "project_freeze_emb", "project_fast", "trainer_grouped_bf16", "trainer"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--train-rows", type=int, default=4000, help="SST-2 training rows (a fixed random subset)")
    p.add_argument("--dev-rows", type=int, default=None,
                   help="validation rows for accuracy and inference (default: all 872)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="training seeds, one run per method each")
    p.add_argument("--repeats", type=int, default=2, help="timed inference passes per method")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--precision", choices=["auto", "no", "bf16"], default="auto",
                   help="mixed precision of the project's methods (Trainer methods set their own); "
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
    p.add_argument("--matmul-size", type=int, default=2048,
                   help="side of the square matmuls that measure the achievable rate (a bf16 one takes about a "
                        "minute at 2048 on a CPU without native bf16)")
    p.add_argument("--out", type=Path, default=None,
                   help="write the table here (.md) and the raw results next to it (.json)")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one measurement from a JSON spec
    args = p.parse_args(argv)
    for name in ("train_rows", "batch_size", "epochs", "max_length", "repeats", "infer_batch_size", "matmul_size"):
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


def non_embedding_parameters(model) -> int:
    """Parameters outside the embedding tables (and their LayerNorm): the N of the 6·N FLOPs per token."""
    return sum(p.numel() for name, p in model.named_parameters() if ".embeddings." not in f".{name}")


def training_flops(n_params: int, n_layers: int, hidden: int, length: int) -> int:
    """Model FLOPs to train on one sequence of `length` tokens: forward + backward = 3 × forward.

    Forward: 2·N per token for the weight matmuls, plus 4·L·d per token and layer for the attention matmuls
    (Q·Kᵀ and scores·V); so 6·N·L + 12·layers·d·L² per sequence (embedding look-ups, softmax, LayerNorm,
    GELU and the optimizer are left out, as in the usual model-FLOPs accounting).
    """
    return 6 * n_params * length + 12 * n_layers * hidden * length * length


class TokenCounter:
    """Forward pre-hook counting real (attention_mask) vs processed (numel) tokens of each batch, and the model
    FLOPs (`training_flops`) of the real tokens (padding excluded) and of all processed tokens."""

    def __init__(self, model, training_only: bool):
        self.real = self.processed = self.batches = 0
        self.model_flops = self.processed_flops = 0
        self.first_cpu = None  # process CPU time at the first counted forward: the training loop starts
        self.training_only = training_only
        cfg = model.config
        self.shape = (non_embedding_parameters(model), cfg.num_hidden_layers, cfg.hidden_size)
        self.handle = model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        """Count one forward call's tokens."""
        if self.training_only and not module.training:
            return None
        mask = kwargs.get("attention_mask")
        if mask is not None:
            if self.first_cpu is None:
                self.first_cpu = time.process_time()
            self.real += int(mask.sum())
            self.processed += mask.numel()
            self.batches += 1
            self.model_flops += sum(training_flops(*self.shape, int(n)) for n in mask.sum(1))
            self.processed_flops += mask.shape[0] * training_flops(*self.shape, mask.shape[1])
        return None

    def result(self) -> dict:
        """Totals and the real fraction."""
        return {"real_tokens": self.real, "processed_tokens": self.processed, "batches": self.batches,
                "real_fraction": self.real / self.processed if self.processed else float("nan"),
                "model_flops": self.model_flops, "processed_flops": self.processed_flops,
                "non_embedding_parameters": self.shape[0]}


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

        def patched(self, lengths, batch_size, seed=0, group=True, mega_batch_mult=50, drop_last=False, **kw):
            init(self, lengths, batch_size, seed, group, mult, drop_last, **kw)

        batching.LengthGroupedBatchSampler.__init__ = patched
    scale = opts.get("batch_scale", 1)  # bigger batches, learning rate scaled by the square root
    cfg = TrainConfig(epochs=spec["epochs"], batch_size=spec["batch_size"] * scale, lr=spec["lr"] * scale ** 0.5,
                      weight_decay=spec["weight_decay"], warmup_ratio=spec["warmup_ratio"],
                      max_length=spec["max_length"], group_by_length=opts.get("group_by_length", True),
                      mixed_precision=opts.get("precision", spec["precision"]), seed=spec["seed"],
                      freeze_word_embeddings=opts.get("freeze_word_embeddings", False))  # the 30,522 x 384 table
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
    loop_cpu_seconds = time.process_time() - counter.first_cpu  # from the first training forward on
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
            "loop_cpu_seconds": loop_cpu_seconds, "examples_per_loop_cpu_second": examples / loop_cpu_seconds,
            "model_flops_per_second": counter.model_flops / seconds,
            "model_flops_per_cpu_second": counter.model_flops / loop_cpu_seconds,
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

    def hf_pipeline(batch_size: int | None = bs, bf16: bool = False):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = pipe(texts, batch_size=batch_size, truncation=True, max_length=L)
        return np.array([pipe.model.config.label2id[r["label"]] for r in out])

    methods = {"project": project, "pipeline": hf_pipeline}
    if spec.get("inference_levers"):
        methods["project_fp32"] = lambda: project(bf16=False)
        methods["project_batch_div4"] = lambda: project(batch_size=max(1, bs // 4))
        methods["project_batch_x4"] = lambda: project(batch_size=4 * bs)
        methods["pipeline_default_batch"] = lambda: hf_pipeline(None)  # the pipeline's default: one at a time
        for b in PIPELINE_BF16_BATCHES:  # the pipeline at its best: bf16 autocast, a few batch sizes
            methods[f"pipeline_bf16_b{b}"] = functools.partial(hf_pipeline, b, bf16=True)
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


def _gemm_worker(spec: dict) -> dict:
    """The achievable matmul rate on this machine: best of 3 square matmuls (n = spec's matmul_size), bf16 and fp32;
    per wall second and per CPU-second of the process (the rate of the cores while they run: steadier on a shared
    machine, and with one thread the rate of one core)."""
    import torch

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    n = spec["matmul_size"]
    out = {"torch_threads": torch.get_num_threads(), "size": n}
    for dtype in (torch.bfloat16, torch.float32):
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        a @ b  # warm-up
        best, best_cpu = float("inf"), float("inf")
        for _ in range(3):
            t0, c0 = time.perf_counter(), time.process_time()
            a @ b
            best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
        out[str(dtype).removeprefix("torch.")] = 2 * n ** 3 / best
        out[str(dtype).removeprefix("torch.") + "_per_cpu_second"] = 2 * n ** 3 / best_cpu
    return out


def _worker_main(spec_json: str) -> None:
    """Entry point of a worker subprocess: run the spec, write JSON to spec['result']."""
    spec = json.loads(spec_json)
    kinds = {"infer": _infer_worker, "gemm": _gemm_worker, "train": _train_worker}
    result = kinds[spec["kind"]](spec)
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


def _cpu_clock_mhz(cpuinfo: str) -> tuple[float | None, str]:
    """The clock the peak is computed at, and where it came from (the highest found, as boost raises it)."""
    mhz = [float(line.split(":")[1]) for line in cpuinfo.splitlines() if line.startswith("cpu MHz")]
    try:
        max_khz = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()
        return int(max_khz) / 1000, "cpufreq cpuinfo_max_freq"
    except (OSError, ValueError):
        pass
    if mhz:
        return max(mhz), "/proc/cpuinfo 'cpu MHz'"
    bogo = [float(line.split(":")[1]) for line in cpuinfo.splitlines() if line.lower().startswith("bogomips")]
    if bogo:  # x86 Linux calibrates BogoMIPS at 2 × the TSC (base) clock
        return bogo[0] / 2, "BogoMIPS / 2 (the TSC base clock: boost clocks run higher)"
    return None, "unknown"


def cpu_peak_flops(threads: int | None, cpuinfo: str | None = None) -> dict:
    """Peak FLOP/s of the CPU for its instruction set, from /proc/cpuinfo: cores × clock × FLOP per cycle.

    FLOP per cycle and core assumes two FMA pipes: fp32 = 2 pipes × (vector bits / 32) lanes × 2. Vector bits:
    512 with avx512f, except AMD family 25 (Zen 4), which runs AVX-512 on 256-bit pipes; 256 with AVX2+FMA.
    bf16: the AMX tile unit (amx_bf16) 1,024 FLOP per cycle and core; AVX512-BF16 dot products (avx512_bf16)
    2 × the fp32 rate (two bf16 products per fp32 lane); otherwise no native bf16 (= the fp32 rate).
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    vendor, family = fields.get("vendor_id", "?"), fields.get("cpu family", "?")
    if "avx512f" in flags:
        bits = 256 if vendor == "AuthenticAMD" and family == "25" else 512
    elif {"avx2", "fma"} <= flags:
        bits = 256
    else:
        bits = 128
    fp32 = 2 * (bits // 32) * 2
    if "amx_bf16" in flags:
        bf16, bf16_how = 1024, "AMX tiles"
    elif "avx512_bf16" in flags:
        bf16, bf16_how = 2 * fp32, "AVX512-BF16 dot products"
    else:
        bf16, bf16_how = fp32, "no native bf16"
    mhz, clock_from = _cpu_clock_mhz(cpuinfo)
    cores = os.cpu_count() or 1
    used = min(threads or cores, cores)
    per_core = {k: v * mhz * 1e6 if mhz else float("nan") for k, v in (("fp32", fp32), ("bf16", bf16))}
    return {"vendor": vendor, "family": family, "vector_bits": bits, "fp32_flop_per_cycle": fp32,
            "bf16_flop_per_cycle": bf16, "bf16_unit": bf16_how, "clock_mhz": mhz, "clock_from": clock_from,
            "cores": cores, "cores_used": used, "peak_per_core": per_core,
            "peak_cores_used": {k: v * used for k, v in per_core.items()},
            "assumption": f"{used} core(s) × {mhz:.0f} MHz ({clock_from}) × {bf16} bf16 / {fp32} fp32 FLOP per "
                          f"cycle ({bits}-bit vectors, 2 FMA pipes; bf16 by {bf16_how})" if mhz else "clock unknown"}


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
                  "examples_per_loop_cpu_second": _mean([r.get("examples_per_loop_cpu_second", float("nan"))
                                                         for r in rs]),
                  "real_fraction": real / max(processed, 1),
                  "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
                  "dev_accuracy": _mean([r["dev_accuracy"] for r in rs]),
                  "dev_accuracies": [r["dev_accuracy"] for r in rs],
                  "train_seconds": _mean([r["train_seconds"] for r in rs]), "seeds": [r["seed"] for r in rs],
                  "model_flops_per_second": _mean([r.get("model_flops_per_second", float("nan")) for r in rs]),
                  "model_flops_per_cpu_second": _mean([r.get("model_flops_per_cpu_second", float("nan"))
                                                       for r in rs])}
    ratios = {}
    peer = strongest_peer(per)
    if peer is not None:  # every project variant against Trainer at its best in this run
        for m in methods:
            if METHODS[m][0] == "project":
                ratios[f"throughput {m} / {peer}"] = per[m]["examples_per_second"] / per[peer]["examples_per_second"]
                ratios[f"CPU throughput {m} / {peer}"] = (per[m]["examples_per_loop_cpu_second"]
                                                          / per[peer]["examples_per_loop_cpu_second"])
                ratios[f"accuracy {m} - {peer} (points)"] = 100 * (per[m]["dev_accuracy"]
                                                                    - per[peer]["dev_accuracy"])
    if "project" in per:
        for other in methods:
            if other != "project":
                ratios[f"throughput project / {other}"] = (per["project"]["examples_per_second"]
                                                          / per[other]["examples_per_second"])
                ratios[f"accuracy project - {other} (points)"] = 100 * (per["project"]["dev_accuracy"]
                                                                        - per[other]["dev_accuracy"])
    return {"methods": per, "ratios": ratios, "peer": peer}


def strongest_peer(per: dict) -> str | None:
    """The fastest `Trainer` configuration measured (mean examples/s): the peer at its best in this run."""
    trainers = [m for m in per if METHODS[m][0] == "trainer"]
    return max(trainers, key=lambda m: per[m]["examples_per_second"]) if trainers else None


INFER_LABELS = {
    "project": "project `predict_proba` (length-sorted batches, bf16 where native)",
    "pipeline": "`pipeline(\"text-classification\")`, same batch size",
    "project_fp32": "project `predict_proba` in fp32 (`bf16=False`)",
    "project_batch_div4": "project `predict_proba`, batch ÷ 4",
    "project_batch_x4": "project `predict_proba`, batch × 4",
    "pipeline_default_batch": "`pipeline` at its default batch size (1)",
}


PIPELINE_BF16_BATCHES = [1, 8, 32, 128]


def infer_label(name: str) -> str:
    """A readable name for an inference method."""
    if name.startswith("pipeline_bf16_b"):
        return f"`pipeline` + bf16 autocast, batch {name.removeprefix('pipeline_bf16_b')}"
    return INFER_LABELS[name]


def best_inference(inf: dict, prefix: str) -> tuple[str, float]:
    """The fastest inference method whose name starts with `prefix` and its sentences/s."""
    name = max((m for m in inf if m.startswith(prefix)), key=lambda m: inf[m]["sentences_per_second"])
    return name, inf[name]["sentences_per_second"]


def _flops(x: float) -> str:
    return f"{x / 1e9:.1f} GFLOP/s" if x == x else "–"


def to_markdown(report: dict) -> str:
    """The report as markdown: header, training table, inference table, ratios vs goals."""
    info, s, a = report["machine"], report["summary"], report["args"]
    load = f"{info['load_before'][0]:.2f} before, {info['load_after'][0]:.2f} after (1-minute load average)"
    peak, gemm = report.get("peak") or {}, report.get("gemm") or {}
    peer = s.get("peer")
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
        f"seeds {a['seeds']} (interleaved: every method once per seed); project precision "
        f"`{report['precision']}`; dev accuracy on {report['dev_rows']} validation rows",
    ]
    if peak:
        lines.append(
            f"- **Hardware limit**: peak {_flops(peak['peak_cores_used']['bf16'])} bf16 / "
            f"{_flops(peak['peak_cores_used']['fp32'])} fp32 for the {peak['cores_used']} core(s) the torch "
            f"threads can use ({peak['assumption']}); measured {gemm.get('size', 2048)}³ matmul on the same threads "
            f"(best of before and after training): {_flops(gemm.get('bfloat16', float('nan')))} bf16, "
            f"{_flops(gemm.get('float32', float('nan')))} fp32 per wall second; per CPU-second "
            f"{_flops(gemm.get('bfloat16_per_cpu_second', float('nan')))} bf16, "
            f"{_flops(gemm.get('float32_per_cpu_second', float('nan')))} fp32")
    lines += [
        "- **examples per CPU-s**: training rows / process CPU seconds from the first training forward to the end "
        "of the training call (setup excluded); steadier than examples/s when other jobs share the CPU",
        "- **Model FLOPs** = 6 · N · L + 12 · layers · d · L² per training sequence of L real tokens (N = "
        f"{report['runs'][0].get('non_embedding_parameters', 0) / 1e6:.2f} M non-embedding parameters, "
        "padding not counted), per CPU-second of the training loop (with one thread: the rate of the core while it "
        "runs; per wall second in the JSON, `model_flops_per_second`)",
        "", "## Fine-tuning", "",
        f"Strongest peer in this run: **{LABELS.get(peer, peer)}** (the fastest `Trainer` configuration).", "",
        "| method | examples/s | × strongest peer | × Trainer default | examples per CPU-s (× peer) | real tokens "
        "| model FLOP per CPU-s (% of a core's bf16 peak / of its matmul rate) | peak RSS (MiB) "
        "| dev accuracy (mean) | per seed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    base = s["methods"].get("trainer", {}).get("examples_per_second")
    top = s["methods"].get(peer, {}).get("examples_per_second")
    top_cpu = s["methods"].get(peer, {}).get("examples_per_loop_cpu_second")
    for m, v in s["methods"].items():
        ratio = f"{v['examples_per_second'] / base:.2f}×" if base else "–"
        vs_peer = f"**{v['examples_per_second'] / top:.2f}×**" if top else "–"
        seeds = ", ".join(f"{x:.3f}" for x in v["dev_accuracies"])
        cpu = v["examples_per_loop_cpu_second"]
        fl = v.get("model_flops_per_cpu_second", float("nan"))
        pk = peak.get("peak_per_core", {}).get("bf16", float("nan")) if peak else float("nan")
        mm = gemm.get("bfloat16_per_cpu_second", float("nan"))
        flops = f"{fl / 1e9:.1f} G ({100 * fl / pk:.0f} % / {100 * fl / mm:.0f} %)" if fl == fl else "–"
        lines.append(f"| {LABELS[m]} | {v['examples_per_second']:.1f} ± {v['examples_per_second_sd']:.1f} "
                     f"| {vs_peer} | {ratio} | {cpu:.1f} ({cpu / top_cpu:.2f}×) | {100 * v['real_fraction']:.1f} % "
                     f"| {flops} | {v['peak_rss_mb']:.0f} | {v['dev_accuracy']:.4f} | {seeds} |")
    if report.get("inference"):
        inf = report["inference"]
        res = inf["inference"]
        best_pipe, best_pipe_v = best_inference(res, "pipeline")
        lines += ["", "## Inference (validation split)", "",
                  f"{inf['sentences']} sentences, batch size {inf['batch_size']} unless stated, project in its "
                  "default precision (bf16 autocast where the CPU has native bf16) unless stated, "
                  f"best of {a['repeats']} passes; peak RSS {inf['peak_rss_mb']:.0f} MiB (all paths, one "
                  f"process). Strongest peer: **{infer_label(best_pipe)}**.",
                  "", "| method | sentences/s | × strongest pipeline | × pipeline (same batch, fp32) | real tokens "
                  "| same label as project |",
                  "|---|---:|---:|---:|---:|---:|"]
        pipe = res["pipeline"]["sentences_per_second"]
        for m, v in res.items():
            lines.append(f"| {infer_label(m)} | {v['sentences_per_second']:.1f} "
                         f"| {v['sentences_per_second'] / best_pipe_v:.2f}× "
                         f"| {v['sentences_per_second'] / pipe:.2f}× | {100 * v['real_fraction']:.1f} % "
                         f"| {100 * v['agreement_with_project']:.1f} % |")
    lines += ["", "## Ratios vs goals", "", "| measure | value | goal | met |", "|---|---:|---:|:---:|"]
    for name, value, goal, ok in report["goals"]:
        lines.append(f"| {name} | {value} | {goal} | {'yes' if ok else 'no'} |")
    return "\n".join(lines) + "\n"


def check_goals(report: dict) -> list[tuple[str, str, str, bool]]:
    """The issue's goals, each as (measure, value, goal, met): the headline against the strongest peer first."""
    s, goals = report["summary"], []
    r, peer, per = s["ratios"], s.get("peer"), s["methods"]
    n = len(per["project"]["seeds"]) if "project" in per else 0
    if peer is not None:
        for m in per:
            if METHODS[m][0] != "project":
                continue
            v, acc = r[f"throughput {m} / {peer}"], r[f"accuracy {m} - {peer} (points)"]
            cpu = r[f"CPU throughput {m} / {peer}"]
            ok = v >= 1.5 and acc >= -0.5
            goals.append((f"{LABELS[m]} / {LABELS[peer]}: examples/s (per CPU-s), dev accuracy (mean of {n} "
                          "seed(s))", f"**{v:.2f}×** ({cpu:.2f}×), {acc:+.2f} points", "≥ 1.5× at ≥ −0.5 points",
                          ok))
    if "throughput project / trainer" in r:
        v = r["throughput project / trainer"]
        goals.append(("fine-tune throughput, project / Trainer default", f"{v:.2f}×", "≥ 3.0×", v >= 3.0))
    if "accuracy project - trainer (points)" in r:
        v = r["accuracy project - trainer (points)"]
        goals.append((f"dev accuracy, project − Trainer default (mean of {n} seed(s))", f"{v:+.2f} points",
                      "≥ −0.5 points", v >= -0.5))
    if "project" in per:
        v = per["project"]["real_fraction"]
        goals.append(("real (non-padding) tokens, project training", f"{100 * v:.1f} %", "≥ 90 %", v >= 0.9))
    if report.get("inference"):
        inf = report["inference"]["inference"]
        best_proj, pv = best_inference(inf, "project")
        best_pipe, qv = best_inference(inf, "pipeline")
        goals.append((f"inference, {infer_label(best_proj)} / {infer_label(best_pipe)} (each at its best)",
                      f"{pv / qv:.2f}×", "≥ 2.0×", pv / qv >= 2.0))
        v = inf["project"]["sentences_per_second"] / inf["pipeline"]["sentences_per_second"]
        goals.append(("inference, project / pipeline (same batch size, pipeline in fp32)", f"{v:.2f}×", "≥ 2.0×",
                      v >= 2.0))
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
                                          "data_seed", "infer_batch_size", "repeats", "matmul_size")}
    base["precision"] = precision
    runs: list[dict] = []
    inference = None
    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as tmpdir:
        tmp = Path(tmpdir)
        ckpt = tmp / "checkpoint"
        gemm = _spawn({**base, "kind": "gemm"}, tmp)  # before and after training: the better of the two is kept
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
                    f"({r['examples_per_loop_cpu_second']:5.1f} per CPU-s) | real tokens "
                    f"{100 * r['real_fraction']:5.1f} % "
                    f"| dev acc {r['dev_accuracy']:.4f} | peak {r['peak_rss_mb']:.0f} MiB | "
                    f"{r['wall_seconds']:.0f} s wall | load {os.getloadavg()[0]:.1f}")
        after = _spawn({**base, "kind": "gemm"}, tmp)
        gemm = {k: max(v, after[k]) if isinstance(v, float) else v for k, v in gemm.items()}
        if not args.no_inference:
            inference = _spawn({**base, "kind": "infer", "checkpoint": str(ckpt),
                                "inference_levers": args.inference_levers}, tmp)
            log("inference: " + " | ".join(f"{k} {v['sentences_per_second']:.0f} sent/s"
                                           for k, v in inference["inference"].items()))
    info["load_after"] = os.getloadavg()
    report = {"machine": info, "args": {**vars(args), "out": str(args.out) if args.out else None},
              "precision": precision, "torch_threads": runs[0]["torch_threads"],
              "dev_rows": runs[0]["dev_rows"], "runs": runs, "summary": summarize(runs, args.methods),
              "inference": inference, "gemm": gemm, "peak": cpu_peak_flops(runs[0]["torch_threads"])}
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
