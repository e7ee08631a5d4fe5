"""The training loop on a CUDA GPU: every precision and device spelling in one process (skipped without a GPU).

Self-contained (a hand-made WordPiece vocabulary and a synthetic task), so it runs on a GPU machine that has
neither the bundled model nor the SST-2 folder: `pytest tests/test_cuda.py`.
"""

from __future__ import annotations

import math
import random

import pytest
import torch

from llm_transfer.training import TrainConfig, evaluate, fine_tune, predict_proba

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
QUIET = {"log": lambda *a, **k: None, "progress": False}
POS, NEG = ["good", "great", "fine", "superb"], ["bad", "awful", "poor", "dull"]


@pytest.fixture(scope="module")
def tok():
    """A WordPiece tokenizer over the synthetic task's words."""
    from transformers import BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "movie", "film", "plot", "was", "very", *POS, *NEG]
    return BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)


@pytest.fixture(scope="module")
def task(tok):
    """Sentences whose sentiment word gives the label, tokenized: (train, dev)."""
    from datasets import ClassLabel, Dataset, Features, Value

    rng = random.Random(0)
    rows = []
    for i in range(320):
        y = i % 2
        noun = rng.choice(["movie", "film", "plot"])
        rows.append({"sentence": f"the {noun} was {'very ' * rng.randint(0, 4)}{rng.choice(POS if y else NEG)}",
                     "label": y})
    feats = Features({"sentence": Value("string"), "label": ClassLabel(names=["negative", "positive"])})
    ds = Dataset.from_list(rows, features=feats).map(lambda b: tok(b["sentence"]), batched=True)
    return ds.select(range(256)), ds.select(range(256, 320))


def tiny_bert(vocab_size: int):
    """A 2-layer, 64-wide BERT classifier with random weights."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2,
                                                    num_attention_heads=2, intermediate_size=128,
                                                    max_position_embeddings=64, num_labels=2))


def test_every_precision_and_device_spelling_in_one_process(tok, task):
    """auto -> no -> bf16 -> fp16 -> auto on cuda / cuda:N in one process (Accelerate keeps one state per process)."""
    from llm_transfer.hardware import resolve_precision

    train, dev = task
    last = torch.cuda.device_count() - 1
    plan = [("auto", "cuda"), ("no", "cuda:0"), ("bf16", "cuda"), ("fp16", f"cuda:{last}"), ("auto", "cuda")]
    for mp, device in plan:
        model = tiny_bert(len(tok))
        cfg = TrainConfig(epochs=4, batch_size=32, lr=2e-3, max_length=32, mixed_precision=mp, seed=0)
        res = fine_tune(model, tok, train, dev, cfg, device=device, **QUIET)
        p = next(model.parameters())
        assert p.device == torch.device(device if ":" in device else "cuda:0"), (mp, device, p.device)
        assert p.dtype == torch.float32, "weights stay fp32 under mixed precision"
        assert res.history[-1]["precision"] == resolve_precision(mp, device)
        assert all(math.isfinite(x) for x in res.step_losses), (mp, device)
        assert res.best["eval_accuracy"] >= 0.95, (mp, device, res.history)  # the word gives the label
        ev = evaluate(model, dev, tok, device=device, precision=res.history[-1]["precision"])
        assert ev["loss"] == pytest.approx(res.history[-1]["eval_loss"], rel=1e-4)
        probs = predict_proba(model, tok, ["the film was superb", "the plot was dull"])
        assert probs[0, 1] > 0.5 > probs[1, 1], probs


def test_auto_precision_on_this_gpu():
    """bf16 on Ampere and newer, fp16 (with loss scaling) before."""
    from llm_transfer.hardware import resolve_precision

    major = torch.cuda.get_device_capability(0)[0]
    assert resolve_precision("auto", "cuda") == ("bf16" if major >= 8 else "fp16")
