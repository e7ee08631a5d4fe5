"""Inference speed and accuracy on SST-2 dev: `predict_proba` (fp32, bf16 autocast, bf16 weights, int8) vs `pipeline`.

One process, one torch thread (default), every path timed in turn and the order reversed every other repeat
(so background load hits all alike); the median of `--repeats` passes over all dev sentences is reported, per
wall second and per CPU-second of the process (steadier on a shared machine). The pipeline is timed at several
batch sizes, in fp32 and under bf16 autocast, and "pipeline at its best" is its fastest configuration; the
pipeline is also given the project's levers (bf16 weights, int8) to show what they do for it.

    python benchmarks/bench_inference.py --checkpoint artifacts/bench/sst2-20k/best \
        --out benchmarks/results/inference.md
    python benchmarks/bench_inference.py --rows 64 --repeats 1 --pipeline-batches 8 --project-batches 16   # smoke
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one thread for the tokenizer too, like the model

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = ROOT / "artifacts" / "quick" / "sst2-finetune" / "best"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, help="a fine-tuned checkpoint folder")
    p.add_argument("--data", type=Path, default=None,
                   help="labelled TSV (sentence<TAB>label); default: dev.tsv of the project's SST-2 folder")
    p.add_argument("--rows", type=int, default=None, help="first N rows only (default: all)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes per path (median reported)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--pipeline-batches", type=int, nargs="+", default=[1, 8, 16, 32, 64])
    p.add_argument("--project-batches", type=int, nargs="+", default=[32, 16, 64],
                   help="batch sizes of predict_proba; the first one's fp32 labels are the reference")
    p.add_argument("--peer-lever-batches", type=int, nargs="*", default=[16, 32],
                   help="batch sizes at which the pipeline is also given bf16 weights and int8")
    p.add_argument("--compile", action="store_true",
                   help="also time torch.compile (inductor, dynamic shapes, frozen weights) of the bf16-weights model")
    p.add_argument("--out", type=Path, default=None, help="write a markdown table here (and .json beside it)")
    a = p.parse_args(argv)
    if a.repeats < 1 or a.threads < 1:
        p.error("--repeats and --threads must be at least 1")
    return a


def build_paths(model, tokenizer, texts: list[str], a: argparse.Namespace) -> dict:
    """name -> (label, family, zero-argument function returning predicted labels)."""
    import numpy as np
    import torch
    from transformers import pipeline

    from llm_transfer.hardware import native_bf16
    from llm_transfer.quantize import quantize_int8, to_bf16
    from llm_transfer.training import predict_proba

    L = a.max_length
    int8_model = quantize_int8(model)
    bf16_model = to_bf16(model) if native_bf16("cpu") else None  # elsewhere bf16 weights are slower than fp32

    def project(m, b: int, bf16: bool):
        return lambda: predict_proba(m, tokenizer, texts, max_length=L, batch_size=b, bf16=bf16).argmax(-1)

    def hf(m, b: int, bf16: bool):
        pipe = pipeline("text-classification", model=m, tokenizer=tokenizer, device="cpu")

        def run():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = pipe(texts, batch_size=b, truncation=True, max_length=L)
            return np.array([model.config.label2id[r["label"]] for r in out])
        return run

    paths = {}
    for b in a.pipeline_batches:
        paths[f"pipeline_fp32_b{b}"] = (f"`pipeline`, fp32, batch {b}", "pipeline", hf(model, b, False))
        paths[f"pipeline_bf16_b{b}"] = (f"`pipeline` + bf16 autocast, batch {b}", "pipeline", hf(model, b, True))
    for b in a.project_batches:
        paths[f"project_fp32_b{b}"] = (f"`predict_proba`, fp32 (`bf16=False`), batch {b}", "project",
                                       project(model, b, False))
        paths[f"project_bf16_b{b}"] = (f"`predict_proba`, bf16 autocast (its default here), batch {b}", "project",
                                       project(model, b, True))
        if bf16_model is not None:
            paths[f"project_bf16w_b{b}"] = (f"`predict_proba`, bf16 weights (`quantize.to_bf16`), batch {b}",
                                            "project", project(bf16_model, b, False))
        paths[f"project_int8_b{b}"] = (f"`predict_proba`, int8 linears (`quantize.quantize_int8`), batch {b}",
                                       "project", project(int8_model, b, False))
    b = a.project_batches[0]
    paths[f"project_int8ac_b{b}"] = (f"`predict_proba`, int8 linears under its default bf16 autocast, batch {b}",
                                     "project", project(int8_model, b, True))
    if a.compile and bf16_model is not None:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True  # constant weights: oneDNN pre-packing
        compiled = to_bf16(model)
        compiled.forward = torch.compile(compiled.forward, dynamic=True)
        t0, c0 = time.perf_counter(), time.process_time()
        project(compiled, b, False)()
        compile_s = (time.perf_counter() - t0, time.process_time() - c0)
        paths[f"project_compiled_bf16w_b{b}"] = (
            f"`predict_proba`, bf16 weights + `torch.compile` (first pass {compile_s[0]:.0f} s wall, "
            f"{compile_s[1]:.0f} CPU-s of this process, not counted), batch {b}", "project",
            project(compiled, b, False))
    for b in a.peer_lever_batches:
        if bf16_model is not None:
            paths[f"pipeline_bf16w_b{b}"] = (f"`pipeline`, bf16 weights (lever given to the peer), batch {b}",
                                             "peer_levers", hf(bf16_model, b, False))
        paths[f"pipeline_int8_b{b}"] = (f"`pipeline`, int8 linears (lever given to the peer), batch {b}",
                                        "peer_levers", hf(int8_model, b, False))
    return paths


def measure(paths: dict, repeats: int, log=print) -> dict:
    """Time every path `repeats` times, interleaved (order reversed every other repeat); keep the last labels."""
    wall = {k: [] for k in paths}
    cpu = {k: [] for k in paths}
    labels = {}
    for r in range(repeats):
        order = list(paths) if r % 2 == 0 else list(reversed(paths))
        for name in order:
            t0, c0 = time.perf_counter(), time.process_time()
            labels[name] = paths[name][2]()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
        log(f"repeat {r + 1}/{repeats} done")
    return {"wall": wall, "cpu": cpu, "labels": labels}


def summarise(paths: dict, m: dict, gold, reference: str) -> dict:
    """Per path: median sentences/s (wall, CPU), accuracy, agreement with the reference; the peer's best."""
    n = len(gold)
    rows = {}
    for name, (label, family, _) in paths.items():
        pred = m["labels"][name]
        rows[name] = {"label": label, "family": family,
                      "sentences_per_second": n / statistics.median(m["wall"][name]),
                      "sentences_per_cpu_second": n / statistics.median(m["cpu"][name]),
                      "wall_seconds": m["wall"][name], "cpu_seconds": m["cpu"][name],
                      "accuracy": float((pred == gold).mean()),
                      "agreement_with_fp32": float((pred == m["labels"][reference]).mean())}
    peer = [k for k, v in rows.items() if v["family"] == "pipeline"]
    best = {key: max(peer, key=lambda k: rows[k][key]) for key in ("sentences_per_second", "sentences_per_cpu_second")}
    for v in rows.values():
        v["x_pipeline_best"] = v["sentences_per_second"] / rows[best["sentences_per_second"]]["sentences_per_second"]
        v["x_pipeline_best_cpu"] = (v["sentences_per_cpu_second"]
                                    / rows[best["sentences_per_cpu_second"]]["sentences_per_cpu_second"])
    return {"rows": rows, "pipeline_best": best}


def markdown(report: dict) -> str:
    """The results as a markdown page."""
    rows, best = report["rows"], report["pipeline_best"]
    ref_acc = rows[report["reference"]]["accuracy"]
    lines = ["# Inference on SST-2 dev: `predict_proba` levers vs `pipeline(\"text-classification\")` at its best", "",
             f"- **Date**: {report['date']}",
             f"- **Machine**: {report['cpu']}; torch threads {report['threads']} (tokenizer parallelism off); "
             f"native bf16: {report['native_bf16']}; 1-minute load {report['load_before']:.2f} before, "
             f"{report['load_after']:.2f} after",
             f"- **Versions**: Python {report['python']}, torch {report['torch']}, "
             f"transformers {report['transformers']}",
             f"- **Command**: `{report['command']}`",
             f"- **Checkpoint**: `{report['checkpoint']}` (fp32 dev accuracy {ref_acc:.4f})",
             f"- **Data**: {report['sentences']} sentences of `{report['data']}`, max length {report['max_length']}; "
             f"median of {report['repeats']} passes per path, paths interleaved",
             f"- **Pipeline at its best**: {rows[best['sentences_per_second']]['label']} per wall second, "
             f"{rows[best['sentences_per_cpu_second']]['label']} per CPU-second (the fastest of fp32 and bf16 "
             "autocast at every batch size timed)", "",
             "| path | sentences/s | × pipeline best | sentences per CPU-s | × pipeline best (CPU) | dev accuracy "
             "| Δ vs fp32 (points) | same label as fp32 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for family in ("pipeline", "project", "peer_levers"):
        for v in (v for v in rows.values() if v["family"] == family):
            lines.append(f"| {v['label']} | {v['sentences_per_second']:.1f} | {v['x_pipeline_best']:.2f}× | "
                         f"{v['sentences_per_cpu_second']:.1f} | {v['x_pipeline_best_cpu']:.2f}× | "
                         f"{v['accuracy']:.4f} | {100 * (v['accuracy'] - ref_acc):+.2f} | "
                         f"{100 * v['agreement_with_fp32']:.1f} % |")
    lines += ["", "Reference for Δ and agreement: " + rows[report["reference"]]["label"] + ". "
              "Goal (issue 19): ≥ 2× the pipeline at its best within ±0.3 points of dev accuracy.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None, log=print) -> dict:
    """Run the benchmark; print the table; write it with --out; return the report."""
    a = parse_args(argv)
    import numpy as np
    import torch
    import transformers

    from llm_transfer.checkpoints import load_checkpoint
    from llm_transfer.data import read_glue_tsv
    from llm_transfer.hardware import cpu_model, native_bf16
    from llm_transfer.settings import get_settings, quiet_libraries

    torch.set_num_threads(a.threads)
    quiet_libraries()
    if a.data is None:
        a.data = Path(get_settings().data) / "dev.tsv"
    ds = read_glue_tsv(a.data, "validation")
    if a.rows is not None:
        ds = ds.select(range(min(a.rows, len(ds))))
    texts, gold = list(ds["sentence"]), np.asarray(ds["label"])
    model, tokenizer = load_checkpoint(a.checkpoint)
    load_before = os.getloadavg()[0]
    paths = build_paths(model, tokenizer, texts, a)
    reference = f"project_fp32_b{a.project_batches[0]}"
    for name, (_, _, fn) in paths.items():  # warm-up: allocator, oneDNN kernels, pipeline set-up
        fn()
        log(f"warm-up {name} done")
    m = measure(paths, a.repeats, log=log)
    report = summarise(paths, m, gold, reference)
    report.update(date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), cpu=cpu_model(),
                  threads=torch.get_num_threads(), native_bf16=native_bf16("cpu"), load_before=load_before,
                  load_after=os.getloadavg()[0], python=platform.python_version(), torch=torch.__version__,
                  transformers=transformers.__version__,
                  command="python benchmarks/bench_inference.py " + shlex.join(sys.argv[1:] if argv is None else argv),
                  checkpoint=str(a.checkpoint), data=str(a.data), sentences=len(texts), max_length=a.max_length,
                  repeats=a.repeats, reference=reference)
    md = markdown(report)
    log(md)
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(md)
        a.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
