"""The fine-tuning / inference benchmark runs end to end on a tiny subset and reports every method."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

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
            "trainer_grouped", "--out", str(out)]
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
    assert saved["summary"]["methods"].keys() == methods.keys()


def test_bad_option_is_refused(bench):
    with pytest.raises(SystemExit):
        bench.parse_args(["--train-rows", "0"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--methods", "nonsense"])
