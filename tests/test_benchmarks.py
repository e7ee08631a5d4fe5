"""The fine-tuning / inference benchmark runs end to end on a tiny subset and reports every method."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_finetune.py"


def _load_bench():
    """Import benchmarks/bench_finetune.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_finetune", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bench():
    return _load_bench()


def test_tiny_run_reports_every_method(bench, tmp_path):
    out = tmp_path / "bench.md"
    argv = ["--train-rows", "64", "--seeds", "0", "--max-length", "32", "--dev-rows", "48", "--repeats", "1",
            "--infer-batch-size", "16", "--no-inference-levers", "--methods", "project", "trainer",
            "trainer_grouped", "--matmul-size", "128", "--out", str(out)]
    report = bench.main(argv, log=lambda *a: None)
    methods = report["summary"]["methods"]
    assert list(methods) == ["project", "trainer", "trainer_grouped"]
    for name, m in methods.items():
        assert 0 < m["real_fraction"] <= 1, name
        assert 0 <= m["dev_accuracy"] <= 1, name
        assert m["examples_per_second"] > 0 and m["peak_rss_mb"] > 100, name
    for run in report["runs"]:
        assert run["dev_rows"] == 48 and run["examples"] == 64 and run["batches"] == 2
    # length grouping can only remove padding: the project never pads more than random batches
    assert methods["project"]["real_fraction"] >= methods["trainer"]["real_fraction"]
    inf = report["inference"]["inference"]
    assert set(inf) == {"project", "pipeline"}
    assert report["inference"]["sentences"] == 48
    for name, v in inf.items():
        assert v["sentences_per_second"] > 0 and 0 < v["real_fraction"] <= 1, name
        assert v["agreement_with_project"] >= 0.95, name  # the same checkpoint: (almost) the same labels
    # sorted batches pad less than the pipeline's input-order batches
    assert inf["project"]["real_fraction"] >= inf["pipeline"]["real_fraction"]
    ratios = report["summary"]["ratios"]
    assert {"throughput project / trainer", "throughput project / trainer_grouped"} <= set(ratios)
    assert all(math.isfinite(v) for v in ratios.values())
    md = out.read_text()
    assert "| measure | value | goal | met |" in md and "Trainer" in md and "pipeline" in md
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["gemm"]["size"] == 128  # the size asked for, not the default 2048
    assert "measured 128³ matmul" in md or not saved["peak"]  # the line is written where the peak is known
    assert saved["summary"]["methods"].keys() == methods.keys()


def test_bad_option_is_refused(bench):
    with pytest.raises(SystemExit):
        bench.parse_args(["--train-rows", "0"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--methods", "nonsense"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--matmul-size", "0"])


def test_full_data_script_runs_a_tiny_recipe_with_mean_pooling(sst2_dir, monkeypatch, capsys):
    import torch

    spec = importlib.util.spec_from_file_location("full_data", SCRIPT.with_name("full_data.py"))
    full_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(full_data)
    monkeypatch.setenv("LLM_TRANSFER_DATA", str(sst2_dir))
    out = full_data.main(["--train-rows", "32", "--epochs", "1", "--max-length", "32", "--pooling", "mean"])
    assert len(out["dev_accuracy"]) == 1 and 0 <= out["dev_accuracy"][0] <= 1
    assert out["recipe"]["train_rows"] == 32 and json.loads(capsys.readouterr().out)["recipe"]["pooling"] == "mean"

    from llm_transfer.features import mean_pool
    from llm_transfer.models import load_classifier

    model = load_classifier("bundled").eval()
    full_data.use_mean_pooling(model)
    ids = torch.tensor([[101, 2023, 3185, 2003, 2307, 102, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        by_hand = model.classifier(mean_pool(model.bert(input_ids=ids, attention_mask=mask).last_hidden_state, mask))
        assert torch.allclose(model(input_ids=ids, attention_mask=mask).logits, by_hand, atol=1e-6)


def test_cpu_peak_follows_the_instruction_set(bench):
    zen4 = ("vendor_id\t: AuthenticAMD\ncpu family\t: 25\ncpu MHz\t\t: 2600.000\n"
            "flags\t\t: fma avx2 avx512f avx512_bf16\n")
    peak = bench.cpu_peak_flops(1, zen4)
    assert (peak["vector_bits"], peak["fp32_flop_per_cycle"], peak["bf16_flop_per_cycle"]) == (256, 32, 64)
    assert peak["cores_used"] == 1
    assert math.isclose(peak["peak_cores_used"]["bf16"], 64 * peak["clock_mhz"] * 1e6)
    spr = "vendor_id\t: GenuineIntel\ncpu family\t: 6\ncpu MHz\t\t: 2000.000\nflags\t\t: fma avx2 avx512f amx_bf16\n"
    peak = bench.cpu_peak_flops(None, spr)
    assert (peak["vector_bits"], peak["fp32_flop_per_cycle"], peak["bf16_flop_per_cycle"]) == (512, 64, 1024)
    avx2 = "vendor_id\t: GenuineIntel\ncpu family\t: 6\ncpu MHz\t\t: 3000.000\nflags\t\t: fma avx2\n"
    peak = bench.cpu_peak_flops(1, avx2)
    assert peak["fp32_flop_per_cycle"] == peak["bf16_flop_per_cycle"] == 32 and "no native" in peak["bf16_unit"]


def test_training_flops_formula(bench):
    # 6·N per token for the weight matmuls + 12·layers·d·L² for attention, per sequence
    assert bench.training_flops(10, 2, 4, 3) == 6 * 10 * 3 + 12 * 2 * 4 * 9


def test_pretrain_benchmark_tiny_run(tmp_path):
    """bench_pretrain.py times both vocabularies and writes its table; the FLOP count follows the formula."""
    spec = importlib.util.spec_from_file_location("bench_pretrain", SCRIPT.with_name("bench_pretrain.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "pretrain.md"
    res = mod.main(["--steps", "2", "--repeats", "1", "--layers", "1", "--width", "32", "--block", "16",
                    "--batch", "2", "--threads", "1", "--matmul-size", "128", "--out", str(out)])
    assert len(res["rows"]) == 2 and all(r[1] > 0 for r in res["rows"])
    text = out.read_text()
    assert "learnt WordPiece (8,192)" in text and "128³ bf16 matmul" in text and out.with_suffix(".json").is_file()
    with pytest.raises(SystemExit):
        mod.main(["--steps", "0"])
    from llm_transfer.tinylm import LMConfig, TinyGPT

    m = TinyGPT(LMConfig(vocab_size=100, block_size=16, n_layer=1, n_head=2, d_model=8, dropout=0.0))
    body = sum(p.numel() for n, p in m.named_parameters() if n not in ("tok_emb.weight", "pos_emb.weight"))
    assert mod.model_flops_per_token(m, 16) == 6 * (body + 100 * 8) + 12 * 1 * 8 * 16


def test_frozen_table_report_pairs_the_arms_by_seed():
    spec = importlib.util.spec_from_file_location("frozen_table", SCRIPT.with_name("frozen_table.py"))
    ft = importlib.util.module_from_spec(spec)
    sys.modules["frozen_table"] = ft  # its dataclass looks its module up
    spec.loader.exec_module(ft)
    labels = np.array([1, 0] * 50)

    def rec(arm, seed, wrong):  # `wrong` dev rows predicted wrongly
        pred = labels.copy()
        pred[:wrong] = 1 - pred[:wrong]
        return {"arm": arm, "seed": seed, "dev_accuracy": [0.5, 1 - wrong / 100], "best_epoch": 2,
                "pred_last": "".join(map(str, pred)), "examples_per_second": 100.0 if arm == "current" else 115.0,
                "examples_per_cpu_second": None, "train_seconds": 60.0, "machine": "test"}

    recs = [rec("current", 0, 10), rec("current", 1, 12), rec("frozen", 0, 11), rec("frozen", 1, 12)]
    rep = ft.report(recs, labels)
    assert rep["diff_of_means"]["value"] == pytest.approx(-0.005)  # (89 + 88) / 2 - (90 + 88) / 2 points / 100
    lo, hi = rep["diff_of_means"]["ci95"]
    assert lo <= -0.005 <= hi
    assert rep["frozen_within_rule"]  # -0.5 points is the edge of the rule: within
    assert [p["only_current_right"] for p in rep["paired"]] == [1, 0]
    assert rep["paired"][0]["speed_ratio"] == pytest.approx(1.15)
    assert not ft.report([rec("current", 0, 10), rec("frozen", 0, 20)], labels)["frozen_within_rule"]
    assert "within the 0.5-point rule" in ft.to_markdown(rep, recs, "cmd")
