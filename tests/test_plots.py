"""The shared figures draw what they are given (titles, labels, one line per run and per seed mean)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from llm_transfer import plots  # noqa: E402


def _hist(accs):
    return [{"epoch": i + 1, "eval_accuracy": a} for i, a in enumerate(accs)]


def test_epoch_curves_draw_each_seed_and_their_mean():
    fig = plots.plot_epoch_curves({"one run": _hist([0.5, 0.7]),
                                   "three seeds": [_hist([0.6, 0.8]), _hist([0.7, 0.9]), _hist([0.5, 0.7])]},
                                  baseline=0.51, title="t")
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.lines]
    assert "one run" in labels and "three seeds, mean of 3 seeds" in labels
    mean = ax.lines[labels.index("three seeds, mean of 3 seeds")]
    assert np.allclose(mean.get_ydata(), [0.6, 0.8])  # the mean of the seeds, epoch by epoch
    assert len(ax.lines) == 1 + 3 + 1 + 1  # one run, 3 thin seed lines, their mean, the baseline
    assert ax.get_title() == "t" and ax.get_xlabel() == "epoch" and list(ax.get_xticks()) == [1, 2]


def test_finish_keeps_the_default_title_size_unless_asked():
    default = plots.plot_scale_sweep([0.0, 1.0], [0.5, 0.9], baseline=0.5).axes[0]
    small = plots.plot_learning_curve([10, 100], {"pretrained": [0.6, 0.8]}).axes[0]
    assert default.title.get_fontsize() > small.title.get_fontsize() == 10
    assert default.get_legend() is not None and default.get_xlabel() == "λ (scale of δ)"


def test_paired_comparison_shows_both_intervals_and_the_table():
    cis = {"A": {"value": 0.8, "low": 0.75, "high": 0.85}, "B": {"value": 0.9, "low": 0.86, "high": 0.94}}
    counts = {"both": 70, "a_only": 10, "b_only": 20, "neither": 0}
    fig = plots.plot_paired_comparison(cis, counts)
    a1, a2 = fig.axes[:2]
    assert [t.get_text() for t in a1.get_xticklabels()] == ["A", "B"]
    texts = sorted(t.get_text() for t in a2.texts)
    assert texts == ["0", "10", "20", "70"]
    assert a2.images[0].get_array()[0, 1] == 10 and a2.images[0].get_array()[1, 0] == 20  # A only / B only
    with pytest.raises(ValueError, match="two models"):
        plots.plot_paired_comparison({"A": cis["A"]}, counts)


def test_reliability_with_counts_writes_each_bins_rows_and_draws_the_histogram():
    rng = np.random.default_rng(0)
    conf = 0.5 + 0.5 * rng.random(400)
    probs = np.stack([1 - conf, conf], axis=1)
    labels = (rng.random(400) < conf).astype(int)
    fig = plots.plot_reliability_with_counts(probs, labels, n_bins=15)
    top, bottom = fig.axes
    count = np.histogram(conf, bins=np.linspace(0, 1, 16))[0]
    assert sorted(int(t.get_text()) for t in top.texts) == sorted(count[count > 0].tolist())  # one count per bar
    assert [p.get_height() for p in bottom.patches] == count.tolist() and sum(count) == 400
    assert "8 of 15 bins" in top.get_title() and bottom.get_xlabel().startswith("confidence")
