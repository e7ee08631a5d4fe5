"""The series' source-domain language model: TinyGPT pretrained on Wikipedia, held out by whole article.

Jobs, in file order: the budget per mode; the corpus (articles split by a stable coin, a WordPiece vocabulary learnt
on the training articles, the first `train_tokens` tokens of the shuffled training articles packed into blocks,
held-out blocks from the held-out articles); the cached artefact (`get_pretrained_lm` trains it once, notebook 03
reuses it). Notebook 02 shows every step; the target domain (SST-2, IMDb reviews) is never trained on here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .checkpoints import atomic_dir, recover, run_lock
from .corpora import CORPORA, iter_documents
from .identity import describe_mismatch, differences, rows_fingerprint, run_identity
from .lm import evaluate_lm, load_lm, new_lm, read_lm_meta, save_lm, train_lm
from .packing import load_wordpiece, pack_blocks, paragraphs, take_tokens, train_wordpiece
from .settings import Settings, display_path
from .splits import split_documents

PRETRAIN_RUN = "tiny-lm-wiki"  # artifacts/<mode>/tiny-lm-wiki/{model.safetensors, config.json, tokenizer files}
TOKENIZER_RUN = "wiki-wordpiece"
HELDOUT_FRAC = 0.05  # of the articles, by a stable coin on each article's first line


def pretrain_budget(settings: Settings) -> dict:
    """Sizes of the pretraining run for the settings' mode (notebook 02 shows it; notebook 03 reuses the model)."""
    if settings.quick:  # about a minute on 2 CPU cores
        return dict(articles=400, vocab_size=4096, train_tokens=400_000, block_size=128, batch_size=32, lr=2e-3,
                    n_layer=2, n_head=4, d_model=128, dropout=0.0, tie_embeddings=True, eval_every=25,
                    heldout_blocks=100)
    # 5 M tokens: 1,220 steps of 32 x 128 tokens, about 15 minutes at the ~6,000 tokens/s of 2 CPU cores in bf16
    return dict(articles=None, vocab_size=8192, train_tokens=5_000_000, block_size=128, batch_size=32, lr=2e-3,
                n_layer=4, n_head=4, d_model=256, dropout=0.0, tie_embeddings=True, eval_every=100,
                heldout_blocks=400)


def steps_of(budget: dict) -> int:
    """Optimizer steps: one pass over the training blocks."""
    return max(1, budget["train_tokens"] // (budget["block_size"] * budget["batch_size"]))


@dataclass
class SourceCorpus:
    """What TinyGPT is pretrained and measured on: tokenizer, packed blocks, and the texts behind them."""

    tokenizer: object
    train_blocks: torch.Tensor  # (n, block_size) token ids, no padding
    heldout_blocks: torch.Tensor
    train_texts: list[str]  # the paragraphs the training blocks were cut from
    heldout_docs: list[str]  # whole held-out articles
    train_articles: int
    heldout_articles: int

    def line(self) -> str:
        """One printable line."""
        return (f"{self.train_articles:,} training articles ({len(self.train_texts):,} paragraphs used: "
                f"{self.train_blocks.numel():,} tokens in {len(self.train_blocks):,} blocks), "
                f"{self.heldout_articles:,} held-out articles ({self.heldout_blocks.numel():,} tokens scored)")


def _tokenizer(settings: Settings, budget: dict, train_docs: list[str], log: Callable):
    """The WordPiece vocabulary learnt on the training articles: reused from run_dir('wiki-wordpiece') or learnt."""
    folder = settings.run_dir(TOKENIZER_RUN)
    ident = {"corpus": CORPORA["wikipedia"].sha256, "articles": budget["articles"], "seed": settings.seed,
             "vocab_size": budget["vocab_size"], "heldout_frac": HELDOUT_FRAC}
    with run_lock(folder, log=log):  # two notebooks side by side share one vocabulary, learnt once
        if recover(folder, marker="identity.json") is not None and \
                json.loads((folder / "identity.json").read_text()) == ident:
            return load_wordpiece(folder)
        log(f"learning a {budget['vocab_size']:,}-piece WordPiece vocabulary on {len(train_docs):,} training articles")
        tok = train_wordpiece(paragraphs(train_docs), budget["vocab_size"])

        def write(tmp):
            tok.save_pretrained(str(tmp))
            (tmp / "identity.json").write_text(json.dumps(ident))

        atomic_dir(folder, write)
        return load_wordpiece(folder)


def source_corpus(settings: Settings, log: Callable = print) -> SourceCorpus:
    """Wikipedia split by article, the tokenizer, the training and held-out blocks of this mode's budget."""
    b = pretrain_budget(settings)
    train_docs, held_docs = split_documents(iter_documents("wikipedia", limit=b["articles"]), HELDOUT_FRAC,
                                            settings.seed)
    tok = _tokenizer(settings, b, train_docs, log)
    order = np.random.default_rng(settings.seed).permutation(len(train_docs))  # articles in random order
    used, stream = take_tokens(paragraphs(train_docs[i] for i in order), tok, b["train_tokens"])
    _, held_stream = take_tokens(paragraphs(held_docs), tok, b["heldout_blocks"] * b["block_size"])
    if len(held_stream) < b["block_size"] or len(stream) < b["block_size"] * b["batch_size"]:
        raise ValueError(f"{b['articles']} articles give {len(stream):,} training and {len(held_stream):,} held-out "
                         "tokens: too few for one batch and one held-out block; raise the budget's 'articles'.")
    return SourceCorpus(tok, pack_blocks(stream, b["block_size"], b["train_tokens"]),
                        pack_blocks(held_stream, b["block_size"]), used, held_docs, len(train_docs), len(held_docs))


def pretrained_lm_identity(settings: Settings, budget: dict, corpus: SourceCorpus) -> dict:
    """What the series' TinyGPT is: trained from scratch on these Wikipedia blocks with this budget and seed."""
    return run_identity({"name": "TinyGPT from scratch, WordPiece learnt on Wikipedia", "sha256": None},
                        {"source": f"Wikipedia ({CORPORA['wikipedia'].sha256[:12]}), held out by article",
                         "train_rows": len(corpus.train_blocks),
                         "train_fingerprint": rows_fingerprint(corpus.train_blocks),
                         "eval_rows": len(corpus.heldout_blocks),
                         "eval_fingerprint": rows_fingerprint(corpus.heldout_blocks)}, settings.seed, budget)


def get_pretrained_lm(settings: Settings, log: Callable = print, corpus: SourceCorpus | None = None):
    """(TinyGPT, tokenizer) pretrained on Wikipedia: reused from run_dir('tiny-lm-wiki') when of the same identity.

    Holds the run folder's lock while it checks and trains: a second process waits, then reuses the result.
    """
    budget = pretrain_budget(settings)
    corpus = corpus or source_corpus(settings, log)
    folder = settings.run_dir(PRETRAIN_RUN)
    now = pretrained_lm_identity(settings, budget, corpus)
    with run_lock(folder, log=log):  # a notebook started beside one that is pretraining waits, then reuses it
        if recover(folder, marker="config.json") is not None:
            meta = read_lm_meta(folder)
            diffs = differences(meta["identity"], now) if isinstance(meta.get("identity"), dict) else ["no identity"]
            if not diffs:
                log(f"reusing the pretrained TinyGPT in {display_path(folder)}")
                return load_lm(folder, settings.device), corpus.tokenizer
            log(f"{describe_mismatch(folder, diffs, 'a TinyGPT')}: replacing it")
        torch.manual_seed(settings.seed)
        sizes = {k: budget[k] for k in ("n_layer", "n_head", "d_model", "dropout", "tie_embeddings")}
        model = new_lm(corpus.train_blocks, corpus.tokenizer, "gpt", compact=False, block_size=budget["block_size"],
                       **sizes).to(settings.device)
        steps = steps_of(budget)
        log(f"pretraining TinyGPT ({settings.mode} mode): {corpus.train_blocks.numel():,} tokens, {steps} steps")
        history = train_lm(model, corpus.train_blocks, corpus.heldout_blocks[:100], steps, budget["batch_size"],
                           budget["lr"], eval_every=budget["eval_every"], seed=settings.seed,
                           pad_id=corpus.tokenizer.pad_token_id, log=log)
        final = evaluate_lm(model, corpus.heldout_blocks, pad_id=corpus.tokenizer.pad_token_id)
        save_lm(model, folder, {"identity": now, "budget": budget, "seed": settings.seed, "history": history,
                                "heldout": final, "train_blocks": len(corpus.train_blocks)})
        return model.eval(), corpus.tokenizer
