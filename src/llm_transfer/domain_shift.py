"""Movies → products: product reviews split by product, a label pool kept apart from them, continued masked-LM
pretraining of an encoder on product text, and few-label fine-tunes cached by what they trained on."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset

from .checkpoints import atomic_dir, recover, run_lock, verify_manifest
from .corpora import iter_documents, labelled_rows
from .data import tokenize
from .hardware import bf16_autocast
from .identity import weights_sha256
from .jobs import quiet_job, run_cached
from .masking import IGNORE_INDEX, mask_tokens
from .models import _from_pretrained, load_classifier
from .overlap import OverlapIndex
from .settings import display_path, seed_everything
from .strategies import prepare, trainable_summary
from .training import TrainConfig, fine_tune, predict_logits, recipe_fields

SPLIT_SALT = "llm-transfer/products"
MLM_VERSION = 1  # bump when continue_mlm's loop changes: cached encoders of an older loop are retrained


def texts_sha256(texts) -> str:
    """SHA-256 of texts (or rows of values) in order."""
    return hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode()).hexdigest()


@functools.lru_cache(maxsize=64)
def _weights_hash(folder: str, stamp: tuple) -> str | None:
    return weights_sha256(folder)


def folder_weights_sha256(folder: str | Path) -> str | None:
    """weights_sha256 of a folder, hashed once per version of its files (a rewrite changes their size or mtime)."""
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(Path(folder).glob("*.safetensors")))
    return _weights_hash(str(folder), stamp)


def norm_text(text: str) -> str:
    """Lower-cased words and digits only: how two texts are compared for overlap across casing and tokenization."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def product_split(products: Sequence[str], val_share: float = 0.3) -> tuple[list[str], list[str]]:
    """(validation, test) products: whole products in a stable hash order, until `val_share` of the rows is reached."""
    counts = Counter(products)
    order = sorted(counts, key=lambda p: hashlib.sha256(f"{SPLIT_SALT}:{p}".encode()).hexdigest())
    val, n = [], 0
    for p in order:
        if n >= val_share * len(products):
            break
        val.append(p)
        n += counts[p]
    return sorted(val), sorted(set(counts) - set(val))


@dataclass
class ProductData:
    """The product domain: labelled sentences by product (validation / test), a label pool, unlabelled text."""

    val: list[dict]
    test: list[dict]
    val_products: list[str]
    test_products: list[str]
    pool: list[dict]  # pros / cons snippets: distinct texts, none equal to a review sentence
    unlabelled: list[str]  # review sentences without an opinion tag, none equal to a labelled one
    dropped: dict[str, int]

    def line(self) -> str:
        """One printable line."""
        pos = lambda rows: sum(r["label"] for r in rows) / len(rows)  # noqa: E731
        return (f"validation: {len(self.val):,} sentences of {len(self.val_products)} products ({pos(self.val):.1%} "
                f"positive) | test: {len(self.test):,} of {len(self.test_products)} ({pos(self.test):.1%} positive) | "
                f"label pool: {len(self.pool):,} distinct pros/cons snippets | unlabelled: {len(self.unlabelled):,}")


def load_products(root=None, val_share: float = 0.3, other_training_text: Iterable[str] = ()) -> ProductData:
    """reviews.tsv split by product, pros_cons.tsv de-duplicated (conflicting labels dropped), the unlabelled lines.

    A snippet or unlabelled line whose words equal a labelled review sentence's is dropped, so that no evaluation
    sentence is ever trained on, with or without its label; so is a review sentence found whole in
    `other_training_text` (e.g. SST-2's training rows, which hold phrases such as "enjoy ." and "flawless .").
    """
    reviews = labelled_rows("product_reviews", root)
    index = OverlapIndex().add(other_training_text)
    elsewhere = [r for r in reviews if index.texts and index.check([r["sentence"]]).whole]
    reviews = [r for r in reviews if r not in elsewhere]
    val_p, test_p = product_split([r["product"] for r in reviews], val_share)
    held = {norm_text(r["sentence"]) for r in reviews}
    by_text: dict[str, dict] = {}
    labels: dict[str, set] = {}
    dropped = Counter({"review sentence found whole in the other training text": len(elsewhere)})
    for r in labelled_rows("pros_cons", root):
        k = norm_text(r["sentence"])
        if not k or k in held:
            dropped["snippet empty or equal to a review sentence"] += 1
            continue
        dropped["snippet repeated"] += k in by_text
        by_text.setdefault(k, {"sentence": r["sentence"], "label": r["label"]})
        labels.setdefault(k, set()).add(r["label"])
    conflicting = {k for k, s in labels.items() if len(s) > 1}
    dropped["snippet with both labels"] = len(conflicting)
    pool = [r for k, r in by_text.items() if k not in conflicting]
    unlabelled = []
    for t in iter_documents("product_sentences", root):
        if norm_text(t) in held:
            dropped["unlabelled line equal to a review sentence"] += 1
        else:
            unlabelled.append(t)
    return ProductData([r for r in reviews if r["product"] in val_p], [r for r in reviews if r["product"] in test_p],
                       val_p, test_p, pool, unlabelled, dict(dropped))


def as_dataset(rows: Sequence[dict]) -> Dataset:
    """Rows with 'sentence' and 'label' as a datasets.Dataset (what data.tokenize takes)."""
    return Dataset.from_dict({"sentence": [r["sentence"] for r in rows], "label": [int(r["label"]) for r in rows]})


def draw_rows(pool: Sequence[dict], n: int, seed: int) -> list[dict]:
    """n rows of the pool, drawn without replacement by `seed` (the same n and seed always give the same rows)."""
    if n > len(pool):
        raise ValueError(f"asked for {n:,} labelled rows; the pool has {len(pool):,}.")
    idx = np.random.default_rng(seed).choice(len(pool), n, replace=False)
    return [pool[i] for i in sorted(idx)]


# ---------------------------------------------------------------------------------------------------------------
# Continued masked-LM pretraining (domain-adaptive pretraining, Gururangan et al. 2020) of a BERT-style encoder


def _mlm_batches(tokenizer, texts: Sequence[str], batch_size: int, max_length: int, seed: int):
    """Endless shuffled batches of encoded texts (padding to the batch's longest)."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(texts))
        for i in range(0, len(order) - batch_size + 1, batch_size):
            yield tokenizer([texts[j] for j in order[i:i + batch_size]], truncation=True, max_length=max_length,
                            padding=True, return_tensors="pt")


def _masked(tokenizer, enc, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's 15 % / 80-10-10 corruption of a batch (masking.mask_tokens, notebook 02's)."""
    specials = tokenizer.all_special_ids
    random_ids = [i for i in range(len(tokenizer)) if i not in set(specials)]
    return mask_tokens(enc["input_ids"], tokenizer.mask_token_id, specials, random_ids, enc["attention_mask"],
                       generator=generator)


@torch.no_grad()
def mlm_loss(model, tokenizer, texts: Sequence[str], max_length: int = 64, seed: int = 0,
             batch_size: int = 64) -> float:
    """Mean masked-token cross-entropy on `texts` under one fixed masking (the same for every model scored)."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(list(texts[i:i + batch_size]), truncation=True, max_length=max_length, padding=True,
                        return_tensors="pt")
        ids, labels = _masked(tokenizer, enc, g)
        with bf16_autocast("cpu"):
            total += _masked_loss(model, ids, enc["attention_mask"], labels, "sum").item()
        count += int((labels != IGNORE_INDEX).sum())
    return total / max(count, 1)


def _masked_loss(model, ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                 reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy at the picked positions only: the 30,522-way output layer runs on ~15 % of the tokens."""
    hidden = model.bert(input_ids=ids, attention_mask=attention_mask).last_hidden_state
    keep = labels != IGNORE_INDEX
    logits = model.cls(hidden[keep]).float()
    return torch.nn.functional.cross_entropy(logits, labels[keep], reduction=reduction)


def _train_mlm(model, tokenizer, batches, steps: int, lr: float, params, seed: int) -> list[float]:
    """`steps` AdamW steps (warm-up 10 %, linear decay, clipping at 1.0, bf16 autocast) on `params`."""
    from transformers import get_linear_schedule_with_warmup

    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, max(1, steps // 10), steps)
    g = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    for _ in range(steps):
        enc = next(batches)
        ids, labels = _masked(tokenizer, enc, g)
        with torch.enable_grad(), bf16_autocast("cpu"):
            loss = _masked_loss(model, ids, enc["attention_mask"], labels)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    return losses


def continue_mlm(source: str | Path, texts: Sequence[str], heldout: Sequence[str], out: str | Path, budget: dict,
                 seed: int = 0, log: Callable = print) -> dict:
    """The encoder of `source` trained further with the masked-LM objective on `texts`; cached in `out` by identity.

    all-MiniLM-L6-v2 ships no masked-LM head, so a new one is trained alone first (`head_steps`, encoder frozen:
    what the unchanged encoder's features allow), then everything (`steps`). The held-out loss after each phase
    says what the encoder's own update bought. The saved folder is `source` with only the encoder replaced (a
    classifier keeps its head and pooler), so `load_classifier(out)` starts from it as from `source`.
    Returns the record (losses, seconds, identity) that dapt.json in `out` keeps. Holds `out`'s run lock while it
    checks and trains: a second process waits, then reuses the result.
    """
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer, BertForMaskedLM

    out = Path(out)
    identity = {"source": folder_weights_sha256(source), "texts": texts_sha256(texts),
                "heldout": texts_sha256(heldout), "budget": budget, "seed": seed, "version": MLM_VERSION}
    with run_lock(out, log=log):  # a second run of the same folder waits, then reuses it
        if (done := recover(out, marker="dapt.json")) is not None:
            rec = json.loads((done / "dapt.json").read_text())
            if rec.get("identity") == identity and verify_manifest(done):
                log(f"reusing the product-adapted encoder {display_path(done)}")
                return rec
            log(f"{display_path(done)} holds another continued pretraining: training it again")
        t0 = time.perf_counter()
        seed_everything(seed)
        tok = AutoTokenizer.from_pretrained(source)
        mlm = _from_pretrained(BertForMaskedLM, str(source))  # the head's weights are new: see the docstring
        ml = budget["max_length"]
        batches = _mlm_batches(tok, list(texts), budget["batch_size"], ml, seed)
        rec = {"identity": identity, "texts": len(texts), "heldout_sentences": len(heldout)}
        head = [p for n, p in mlm.named_parameters() if n.startswith("cls.")]
        rec["head_losses"] = _train_mlm(mlm, tok, batches, budget["head_steps"], budget["head_lr"], head, seed)
        rec["heldout_loss_head_only"] = mlm_loss(mlm, tok, heldout, ml, seed)
        rec["losses"] = _train_mlm(mlm, tok, batches, budget["steps"], budget["lr"], list(mlm.parameters()), seed + 1)
        rec["heldout_loss_adapted"] = mlm_loss(mlm, tok, heldout, ml, seed)
        archs = AutoConfig.from_pretrained(source).architectures or []
        loader = AutoModelForSequenceClassification if any("SequenceClassification" in a for a in archs) else AutoModel
        full = _from_pretrained(loader, str(source))
        body = full.base_model  # BertModel: the encoder whose weights the MLM run changed
        missing, unexpected = body.load_state_dict(mlm.bert.state_dict(), strict=False)
        if unexpected or any(not k.startswith("pooler.") for k in missing):
            raise RuntimeError(f"encoder weights do not fit {source}: missing {missing}, unexpected {unexpected}")
        rec["seconds"] = round(time.perf_counter() - t0, 1)

        def write(folder: Path) -> None:
            full.save_pretrained(folder)
            tok.save_pretrained(folder)
            (folder / "dapt.json").write_text(json.dumps(rec, indent=1))

        atomic_dir(out, write, manifest=True)
        return rec


# ---------------------------------------------------------------------------------------------------------------
# Few-label fine-tunes of a BERT-style classifier, cached in a JSON-lines file by start, rows and recipe


@dataclass(frozen=True)
class FewLabelJob:
    """One fine-tune: a start (folder of weights), training rows, a recipe; scored on the named evaluation sets."""

    start: str  # a label for tables ("θ_s", "SST-2 classifier", ...)
    folder: str
    rows: tuple  # ((sentence, label), ...)
    cfg: TrainConfig
    tag: str = ""
    random_init: bool = False  # the folder's architecture with fresh random weights (seeded by cfg.seed)
    strategy: str = "full"  # strategies.prepare's name: 'full', 'head-only', 'bitfit', 'lora'
    strategy_args: tuple = ()  # ((name, value), ...) for strategies.prepare, e.g. LoRA's r and alpha

    def key(self) -> str:
        """What the result depends on: the start's weights (or random_init), the rows, the recipe, the strategy."""
        parts = [folder_weights_sha256(self.folder), texts_sha256(self.rows), recipe_fields(self.cfg)]
        if self.random_init:  # appended only when set: the keys of earlier jobs stay as they were
            parts.append("random_init")
        if self.strategy != "full" or self.strategy_args:
            parts.append(["strategy", self.strategy, [list(a) for a in self.strategy_args]])
        blob = json.dumps(parts, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]


def few_label_job(start: str, folder: str | Path, rows: Sequence[dict], cfg: TrainConfig, tag: str = "",
                  random_init: bool = False, strategy: str = "full", **strategy_args) -> FewLabelJob:
    """A job from row dicts; `strategy` and its keyword arguments go to strategies.prepare."""
    return FewLabelJob(start, str(folder), tuple((r["sentence"], int(r["label"])) for r in rows), cfg, tag,
                       random_init, strategy, tuple(sorted(strategy_args.items())))


def epochs_for_steps(n: int, batch_size: int, min_steps: int, lo: int = 2, hi: int = 40) -> int:
    """Epochs giving at least `min_steps` optimizer steps on n rows (within [lo, hi])."""
    return int(min(hi, max(lo, np.ceil(min_steps / np.ceil(n / batch_size)))))


def _train_job(job: FewLabelJob, toks: dict, tokenizer, eval_sha: dict | None = None) -> dict:
    """One fine-tune, scored on every evaluation set: the record run_few_label caches."""
    with quiet_job(job.cfg.seed):
        model = load_classifier(job.folder, random_init=job.random_init)
        if job.strategy != "full" or job.strategy_args:
            model = prepare(model, job.strategy, **dict(job.strategy_args))
        rows = as_dataset([{"sentence": s, "label": y} for s, y in job.rows])
        train = tokenize(rows, tokenizer, job.cfg.max_length)
        res = fine_tune(model, tokenizer, train, train.select(range(min(16, len(train)))), job.cfg,
                        progress=False, log=lambda *a: None)
    rec = {"key": job.key(), "start": job.start, "n": len(job.rows), "lr": job.cfg.lr, "epochs": job.cfg.epochs,
           "seed": job.cfg.seed, "tag": job.tag, "train_seconds": round(res.train_seconds, 1),
           "steps": len(res.step_losses), "strategy": job.strategy,
           "trainable": trainable_summary(model)["trainable"]}
    for name, ds in toks.items():
        rec[name] = "".join(map(str, predict_logits(model, tokenizer, ds).argmax(1).tolist()))
    rec["eval_sha"] = eval_sha or {}
    return rec


def run_few_label(jobs: Sequence[FewLabelJob], evals: dict[str, Dataset], cache: str | Path, tokenizer,
                  log: Callable = print, workers: int = 1) -> list[dict]:
    """Each job's predictions on every evaluation set (string of 0/1 per set), reused from `cache` or trained now.

    A cached record is reused only if it was scored on every evaluation set by these very sentences (their hashes
    match). `workers` > 1: that many processes of one thread each train side by side (jobs.run_cached); each
    finished job is appended to `cache` as it arrives.
    """
    toks = {name: tokenize(ds, tokenizer, 128) for name, ds in evals.items()}
    sha = {name: texts_sha256(ds["sentence"]) for name, ds in evals.items()}

    def is_done(rec: dict) -> bool:
        return all(name in rec and rec.get("eval_sha", {}).get(name) == h for name, h in sha.items())

    return run_cached(jobs, cache, _train_job, (toks, tokenizer, sha), log=log, workers=workers, is_done=is_done)


def accuracy_of(rec: dict, name: str, labels: Sequence[int]) -> float:
    """Accuracy of a cached record's predictions on the named evaluation set."""
    return float((decode(rec[name]) == np.asarray(labels)).mean())


def decode(pred: str) -> np.ndarray:
    """A cached prediction string back to an int array."""
    return np.frombuffer(pred.encode(), dtype=np.uint8) - ord("0")


def shift_ci(correct_source: Sequence[bool], correct_target: Sequence[bool], n_resamples: int = 2000,
             level: float = 0.95, seed: int = 0) -> dict:
    """Accuracy on the target set minus on the source set, each resampled on its own (two independent samples)."""
    a, b = np.asarray(correct_source, float), np.asarray(correct_target, float)
    rng = np.random.default_rng(seed)
    diffs = (b[rng.integers(0, len(b), (n_resamples, len(b)))].mean(1)
             - a[rng.integers(0, len(a), (n_resamples, len(a)))].mean(1))
    lo, hi = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return {"source": float(a.mean()), "target": float(b.mean()), "shift": float(b.mean() - a.mean()),
            "low": float(lo), "high": float(hi)}
