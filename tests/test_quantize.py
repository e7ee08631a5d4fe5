"""int8 and bf16 inference weights: the same predictions as fp32, the CLI's --int8 / --bf16-weights, one-line errors."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from llm_transfer import quantize
from llm_transfer.checkpoints import load_checkpoint
from llm_transfer.cli import main
from llm_transfer.hardware import native_bf16
from llm_transfer.quantize import inference_weights, int8_engine, quantize_int8, to_bf16
from llm_transfer.training import predict_proba

SENTENCES = ["a gorgeous, witty, seductive movie.", "the plot is dull and the acting is worse.",
             "it is not a bad film at all.", "an utterly forgettable two hours.", "moving and funny",
             "I wanted to walk out after twenty minutes."]
BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_inference.py"


def run(argv, capsys) -> tuple[int, str, str]:
    """main(argv) in-process: (exit status, stdout, stderr); argparse's usage errors count as status 2."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """best/ of a tiny CLI run on the bundled model (64 rows, 1 epoch, max length 32)."""
    out = tmp_path_factory.mktemp("quantize") / "run"
    code = main(["train", "--quick", "--train-rows", "64", "--eval-rows", "32", "--epochs", "1", "--max-length", "32",
                 "--batch-size", "16", "--output", str(out)])
    assert code == 0
    return out / "best"


@pytest.fixture(scope="module")
def loaded(checkpoint):
    """(model, tokenizer) of the tiny checkpoint and its fp32 probabilities on SENTENCES."""
    model, tokenizer = load_checkpoint(checkpoint)
    return model, tokenizer, predict_proba(model, tokenizer, SENTENCES, bf16=False)


def test_int8_predicts_like_fp32_and_leaves_the_model_alone(loaded):
    model, tokenizer, ref = loaded
    q = quantize_int8(model)
    assert torch.backends.quantized.engine == int8_engine()
    assert not any(isinstance(m, torch.nn.Linear) for m in q.modules())  # every linear layer is int8
    assert isinstance(model.classifier, torch.nn.Linear)  # the fp32 model is untouched
    assert all(p.dtype == torch.float32 for p in model.parameters())
    for bf16 in (False, True):  # under bf16 autocast too (predict_proba's default where the CPU has bf16)
        p = predict_proba(q, tokenizer, SENTENCES, bf16=bf16)
        assert np.abs(p - ref).max() < 0.03, bf16
        confident = np.abs(ref[:, 1] - 0.5) > 0.05
        assert (p.argmax(-1) == ref.argmax(-1))[confident].all(), bf16
    assert np.allclose(predict_proba(model, tokenizer, SENTENCES, bf16=False), ref)


@pytest.mark.skipif(not native_bf16("cpu"), reason="bf16 weights need a CPU with native bf16")
def test_bf16_weights_predict_like_fp32(loaded):
    model, tokenizer, ref = loaded
    b = to_bf16(model)
    assert all(p.dtype == torch.bfloat16 for p in b.parameters())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    p = predict_proba(b, tokenizer, SENTENCES, bf16=False)
    assert np.abs(p - ref).max() < 0.03


def test_bad_inputs_are_one_line_errors(loaded, tiny_bert, monkeypatch):
    model, _, _ = loaded
    with pytest.raises(ValueError, match="no torch.nn.Linear layer to quantise") as e:
        quantize_int8(quantize_int8(tiny_bert()))  # twice
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="needs fp32 weights"):
        quantize_int8(tiny_bert().to(torch.bfloat16))
    with pytest.raises(ValueError, match="runs on the CPU only; the model is on meta"):
        quantize_int8(tiny_bert().to("meta"))
    with pytest.raises(ValueError, match="engine='nope' is not in this torch build"):
        quantize_int8(tiny_bert(), engine="nope")
    with pytest.raises(ValueError, match="weights='fp16': choose one of fp32, bf16, int8"):
        inference_weights(model, "fp16")
    assert inference_weights(model, "fp32") is model
    monkeypatch.setattr(quantize, "native_bf16", lambda device: False)
    with pytest.raises(ValueError, match="cpu has no native bf16") as e:
        to_bf16(model)
    assert "\n" not in str(e.value)


def test_cli_int8_flags(checkpoint, loaded, sst2_dir, tmp_path, capsys, monkeypatch):
    _, _, ref = loaded
    code, out, _ = run(["predict", "--checkpoint", checkpoint, "--json", "--int8", *SENTENCES], capsys)
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in rows] == SENTENCES
    assert np.abs(np.array([r["p_positive"] for r in rows]) - ref[:, 1]).max() < 0.03
    data = tmp_path / "dev.tsv"
    data.write_text("\n".join((sst2_dir / "dev.tsv").read_text().splitlines()[:41]) + "\n")  # header + 40 rows
    results = {}
    for flag in ([], ["--int8"]):
        code, out, _ = run(["evaluate", "--checkpoint", checkpoint, "--data", data, *flag], capsys)
        assert code == 0
        results[tuple(flag)] = json.loads(out)
    assert results[("--int8",)]["n"] == 40
    assert abs(results[("--int8",)]["accuracy"] - results[()]["accuracy"]) <= 0.05  # at most 2 of 40 labels
    for cmd in (["predict", "x"], ["evaluate", "--data", data]):
        code, _, err = run([cmd[0], "--checkpoint", checkpoint, *cmd[1:], "--int8", "--bf16-weights"], capsys)
        assert code == 2 and "not allowed with argument --int8" in err
    monkeypatch.setattr(quantize, "native_bf16", lambda device: False)
    code, out, err = run(["predict", "--checkpoint", checkpoint, "--bf16-weights", "fine"], capsys)
    assert code == 1 and out == ""
    assert err.startswith("llm-transfer: error: --bf16-weights: cpu has no native bf16") and err.count("\n") == 1
    code, out, _ = run(["predict", "--help"], capsys)
    assert code == 0 and "--int8" in out and "--bf16-weights" in out


def test_inference_benchmark_smoke(checkpoint, tmp_path):
    spec = importlib.util.spec_from_file_location("bench_inference", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "inference.md"
    report = bench.main(["--checkpoint", str(checkpoint), "--rows", "16", "--repeats", "1", "--pipeline-batches", "8",
                         "--project-batches", "8", "--peer-lever-batches", "--out", str(out)], log=lambda *a: None)
    rows = report["rows"]
    assert {"pipeline_fp32_b8", "pipeline_bf16_b8", "project_fp32_b8", "project_int8_b8"} <= set(rows)
    assert report["pipeline_best"]["sentences_per_second"] in ("pipeline_fp32_b8", "pipeline_bf16_b8")
    for name, v in rows.items():
        assert v["sentences_per_second"] > 0 and math.isfinite(v["x_pipeline_best"]), name
        assert 0 <= v["accuracy"] <= 1 and 0 <= v["agreement_with_fp32"] <= 1, name
        if "int8" not in name:  # bf16 changes a label only where the tiny model is undecided
            assert v["agreement_with_fp32"] >= 0.8, name
    assert rows["project_fp32_b8"]["agreement_with_fp32"] == 1.0
    md = out.read_text()
    assert "× pipeline best" in md and "python benchmarks/bench_inference.py --checkpoint" in md
    assert json.loads(out.with_suffix(".json").read_text())["sentences"] == 16
