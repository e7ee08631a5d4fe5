"""What a mid-epoch checkpoint costs: time one `last/` save of the bundled model against the training step time.

    python scripts/checkpoint_cost.py [--saves 3] [--steps 10]

Prints the seconds per save (weights, optimizer state, RNG, manifest, fsync, renames), per training step
(notebook 04's quick recipe: batch 32, max length 64) and the overhead of the default interval
(resume.DEFAULT_CHECKPOINT_MINUTES) as a share of training time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from llm_transfer import hardware
from llm_transfer.checkpoints import save_checkpoint
from llm_transfer.data import load_sst2, subsample, tokenize
from llm_transfer.identity import data_identity, model_identity
from llm_transfer.models import load_classifier, load_tokenizer
from llm_transfer.resume import DEFAULT_CHECKPOINT_MINUTES, rng_state
from llm_transfer.settings import get_settings, quiet_libraries
from llm_transfer.training import TrainConfig, fine_tune


def main() -> None:
    """Measure and print."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--saves", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    a = p.parse_args()
    quiet_libraries()
    S = get_settings()
    hardware.set_threads(S.threads)
    tok = load_tokenizer(S.model)
    cfg = TrainConfig(epochs=1, batch_size=32, lr=1e-4, max_length=64, mixed_precision="no", seed=0)
    train = tokenize(subsample(load_sst2(S.data)["train"], 32 * a.steps, 0), tok, 64)
    model = load_classifier(S.model)
    t0 = time.perf_counter()
    ident = {"model": model_identity(model), "data": data_identity(train, train)}
    t_ident = time.perf_counter() - t0
    res = fine_tune(model, tok, train, train.select(range(32)), cfg, device="cpu", progress=False, log=lambda *m: None)
    step = res.train_seconds / len(res.step_losses)
    # an optimizer with full AdamW state, as mid-run
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    model(**tok(["a fine film"], return_tensors="pt"), labels=torch.tensor([1])).loss.backward()
    opt.step()
    times = []
    with tempfile.TemporaryDirectory() as d:
        for _ in range(a.saves):
            t0 = time.perf_counter()
            save_checkpoint(Path(d) / "last", model, tok, {"history": []}, {}, opt, None,
                            {"epoch": 0, "step": 1, "history": [], "rng": rng_state()}, identity=ident)
            times.append(time.perf_counter() - t0)
    save = min(times)
    every = 60 * DEFAULT_CHECKPOINT_MINUTES
    print(f"identity at the start of a run: {t_ident:.2f} s (weights SHA-256 once per process, row fingerprints)")
    print(f"one last/ save: {save:.2f} s (min of {', '.join(f'{t:.2f}' for t in times)})")
    print(f"one training step (batch 32, max length 64, fp32, {torch.get_num_threads()} thread(s)): {step:.3f} s")
    print(f"default interval {DEFAULT_CHECKPOINT_MINUTES:g} min: overhead {100 * save / every:.2f} % of training time; "
          f"a save every {max(1, round(save / step / 0.03))} steps would cost 3 %")


if __name__ == "__main__":
    main()
