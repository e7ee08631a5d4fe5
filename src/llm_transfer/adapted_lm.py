"""θ_s continued on target-domain text: the Wikipedia TinyGPT trained further on IMDb reviews, held out by review.

ULMFiT's second step (Howard & Ruder 2018) and Gururangan et al. 2020's domain-adaptive pretraining: the source
model reads unlabelled text of the target domain (movie reviews) before it sees a label. The tokenizer stays the
one learnt on Wikipedia, so the three starts of notebook 03 share every token id. Cached like the source model:
`get_adapted_lm` reuses run_dir('tiny-lm-wiki-imdb') when its identity (the base model's, the reviews, the budget)
is the same, and trains it otherwise.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .checkpoints import recover, run_lock
from .corpora import CORPORA, iter_documents
from .identity import describe_mismatch, differences, rows_fingerprint
from .lm import evaluate_lm, load_lm, read_lm_meta, save_lm, train_lm
from .packing import pack_blocks, take_tokens
from .settings import Settings, display_path
from .source_lm import PRETRAIN_RUN
from .splits import split_documents

ADAPT_RUN = "tiny-lm-wiki-imdb"
HELDOUT_FRAC = 0.05  # of the reviews read, by a stable coin on each review's text


def adapt_budget(settings: Settings) -> dict:
    """Sizes of the continued pretraining for the settings' mode (a fifth of the source run's tokens in full mode)."""
    if settings.quick:
        return dict(reviews=3_000, train_tokens=150_000, batch_size=32, lr=1e-3, eval_every=20, heldout_blocks=50)
    return dict(reviews=12_000, train_tokens=1_000_000, batch_size=32, lr=1e-3, eval_every=50, heldout_blocks=200)


@dataclass
class TargetCorpus:
    """IMDb reviews as packed blocks of the source tokenizer's ids: training and held-out (whole reviews)."""

    train_blocks: torch.Tensor
    heldout_blocks: torch.Tensor
    train_texts: list[str]  # the reviews the training blocks were cut from
    heldout_reviews: list[str]
    reviews_read: int

    def line(self) -> str:
        """One printable line."""
        return (f"{self.reviews_read:,} IMDb reviews read: {len(self.train_texts):,} trained on "
                f"({self.train_blocks.numel():,} tokens in {len(self.train_blocks):,} blocks), "
                f"{len(self.heldout_reviews):,} held out ({self.heldout_blocks.numel():,} tokens scored)")


def target_corpus(settings: Settings, tokenizer, block_size: int = 128) -> TargetCorpus:
    """The first `reviews` IMDb reviews split by a stable coin, shuffled, tokenized by the source tokenizer, packed."""
    b = adapt_budget(settings)
    train, held = split_documents(iter_documents("imdb", limit=b["reviews"]), HELDOUT_FRAC, settings.seed)
    order = np.random.default_rng(settings.seed).permutation(len(train))  # reviews come grouped by film
    used, stream = take_tokens((train[i] for i in order), tokenizer, b["train_tokens"])
    _, held_stream = take_tokens(held, tokenizer, b["heldout_blocks"] * block_size)
    if len(stream) < block_size * b["batch_size"] or len(held_stream) < block_size:
        raise ValueError(f"{b['reviews']} reviews give {len(stream):,} training and {len(held_stream):,} held-out "
                         "tokens: too few for one batch and one held-out block; raise the budget's 'reviews'.")
    return TargetCorpus(pack_blocks(stream, block_size, b["train_tokens"]), pack_blocks(held_stream, block_size),
                        used, held, len(train) + len(held))


def adapted_identity(settings: Settings, base_identity: dict, corpus: TargetCorpus) -> dict:
    """What the adapted model is: this base model, then these IMDb blocks with this budget and seed."""
    return {"base": base_identity, "corpus": f"IMDb unlabelled ({CORPORA['imdb'].sha256[:12]}), held out by review",
            "train_rows": len(corpus.train_blocks), "train_fingerprint": rows_fingerprint(corpus.train_blocks),
            "seed": settings.seed, "budget": adapt_budget(settings)}


def get_adapted_lm(settings: Settings, base: torch.nn.Module, tokenizer, corpus: TargetCorpus | None = None,
                   log: Callable = print) -> tuple[torch.nn.Module, dict]:
    """(θ_s continued on IMDb, its record: held-out IMDb loss before and after, history), reused when identical.

    Holds the run folder's lock while it checks and trains: a second process waits, then reuses the result.
    """
    b = adapt_budget(settings)
    corpus = corpus or target_corpus(settings, tokenizer, base.cfg.block_size)
    base_identity = read_lm_meta(settings.run_dir(PRETRAIN_RUN))["identity"]
    now = adapted_identity(settings, base_identity, corpus)
    folder = settings.run_dir(ADAPT_RUN)
    with run_lock(folder, log=log):  # notebooks 03 and 07 side by side: the second waits, then reuses it
        if recover(folder, marker="config.json") is not None:
            meta = read_lm_meta(folder)
            diffs = differences(meta["identity"], now) if isinstance(meta.get("identity"), dict) else ["no identity"]
            if not diffs:
                log(f"reusing the IMDb-adapted TinyGPT in {display_path(folder)}")
                return load_lm(folder, settings.device), meta["record"]
            log(f"{describe_mismatch(folder, diffs, 'an adapted TinyGPT')}: replacing it")
        pad = tokenizer.pad_token_id
        before = evaluate_lm(base, corpus.heldout_blocks, pad_id=pad)
        model = copy.deepcopy(base).train()
        steps = max(1, len(corpus.train_blocks) // b["batch_size"])
        log(f"continuing TinyGPT's pretraining on IMDb reviews: {corpus.train_blocks.numel():,} tokens, {steps} steps")
        history = train_lm(model, corpus.train_blocks, corpus.heldout_blocks[:100], steps, b["batch_size"], b["lr"],
                           eval_every=b["eval_every"], seed=settings.seed, pad_id=pad, log=log)
        after = evaluate_lm(model, corpus.heldout_blocks, pad_id=pad)
        record = {"heldout_before": before, "heldout_after": after, "history": history, "steps": steps}
        save_lm(model, folder, {"identity": now, "record": record})
        return model.eval(), record
