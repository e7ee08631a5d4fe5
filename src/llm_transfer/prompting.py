"""δ = 0: classification by prompting a causal LM, and δ low-rank: the same read-out trained with LoRA.

A prompt is a text with one place for the sentence; the model's next-token log-probabilities of each label word
(its first token, or the whole word by the chain rule) after the prompt are the class scores. Everything a prompt
shares across sentences (instruction, demonstrations) is its `prefix`: run once, its keys and values cached and
reused for every batch, so a 16-shot prompt costs little more than a zero-shot one. Batches are padded on the
right and each row is read at its own last real token (in a causal model no real token sees the padding after it).
Contextual calibration follows Zhao et al. (2021), "Calibrate Before Use".
"""

from __future__ import annotations

import copy
import inspect
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache

from .lora import LoRALinear, inject_lora

LABEL_WORDS = ("negative", "positive")  # SST-2's label names, in label order (0 = negative)
CONTENT_FREE = ("N/A", "", "[MASK]")  # Zhao et al.'s content-free inputs
PLAIN_TEMPLATE = "Review: {sentence}\nSentiment:"
CHAT_INSTRUCTION = "Is the sentiment of this movie review positive or negative? Answer with one word."
PLACE = "{sentence}"

# SST's tokenizer split clitics and punctuation off with spaces and lower-cased everything; undo the spacing
_SST_RULES = [
    (re.compile(r" n't\b"), "n't"),  # does n't -> doesn't, ca n't -> can't, wo n't -> won't
    (re.compile(r" '(s|re|ve|ll|d|m)\b"), r"'\1"),  # it 's -> it's
    (re.compile(r"\b(gon|wan) na\b"), r"\1na"),  # gon na -> gonna
    (re.compile(r"`` ?"), '"'), (re.compile(r" ?''"), '"'),  # `` quoted '' -> "quoted"
    (re.compile(r"` "), "'"), (re.compile(r" '(?=\s|$)"), "'"),  # ` quoted ' -> 'quoted'
    (re.compile(r" ([.,!?;:%)\]}]|\.\.\.)"), r"\1"),  # no space before closing punctuation
    (re.compile(r"([(\[{$]) "), r"\1"),  # nor after opening punctuation
    (re.compile(r"\s+"), " "),
]
_I = re.compile(r"\bi\b")


def detokenize_sst(text: str, capitalize: bool = False) -> str:
    """SST's space-tokenised text as ordinary text: "it 's a film that does n't , " -> "it's a film that doesn't,"
    (capitalize=True also upper-cases the first letter and the word "i")."""
    text = text.strip()
    for pattern, repl in _SST_RULES:
        text = pattern.sub(repl, text)
    text = text.strip()
    if capitalize and text:
        text = _I.sub("I", text)
        text = re.sub(r"[A-Za-z]", lambda m: m.group(0).upper(), text, count=1)
    return text


@dataclass(frozen=True)
class Prompt:
    """A prompt split around its sentence: prefix (shared, cached) + lead + sentence + suffix, then the label word."""

    prefix: str
    suffix: str
    lead: str = ""  # a space moved from the prefix's end to the sentence's start, where the tokenizer expects it
    label_lead: str = ""  # put before each label word: " " when the answer continues a line ("Sentiment: positive")

    def render(self, sentence: str) -> str:
        """The whole prompt text for one sentence."""
        return self.prefix + self.rest(sentence)

    def rest(self, sentence: str) -> str:
        """The part after the shared prefix."""
        return self.lead + sentence + self.suffix


def split_template(text: str, label_lead: str = "") -> Prompt:
    """A Prompt from a text holding {sentence} once; a space before {sentence} moves to the sentence's side."""
    if text.count(PLACE) != 1:
        raise ValueError(f"a template needs {PLACE} exactly once, got {text.count(PLACE)} in {text!r}.")
    prefix, suffix = text.split(PLACE)
    lead = " " if prefix.endswith(" ") else ""
    return Prompt(prefix[:-1] if lead else prefix, suffix, lead, label_lead)


def _check_demos(demos: Sequence[tuple[str, int]], label_words: Sequence[str]) -> None:
    bad = [y for _, y in demos if not 0 <= int(y) < len(label_words)]
    if bad:
        raise ValueError(f"demonstration labels must be 0..{len(label_words) - 1}, got {bad[:3]}.")


def plain_prompt(demos: Sequence[tuple[str, int]] = (), template: str = PLAIN_TEMPLATE,
                 label_words: Sequence[str] = LABEL_WORDS, sep: str = "\n\n") -> Prompt:
    """A plain-text prompt: each demonstration is the template filled in and answered, then the sentence's turn."""
    _check_demos(demos, label_words)
    shots = "".join(template.replace(PLACE, s) + " " + label_words[int(y)] + sep for s, y in demos)
    return split_template(shots + template, label_lead=" ")


def chat_prompt(tokenizer, demos: Sequence[tuple[str, int]] = (), instruction: str = CHAT_INSTRUCTION,
                label_words: Sequence[str] = LABEL_WORDS, system: str | None = None) -> Prompt:
    """A chat prompt (tokenizer.apply_chat_template): one user turn per sentence, demonstrations answered by the
    assistant; the label word is the assistant's first word."""
    _check_demos(demos, label_words)
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("this tokenizer has no chat template; use plain_prompt instead.")
    turn = (instruction + "\nReview: " + PLACE) if instruction else PLACE
    messages = [{"role": "system", "content": system}] if system else []
    for s, y in demos:
        messages += [{"role": "user", "content": turn.replace(PLACE, s)},
                     {"role": "assistant", "content": label_words[int(y)]}]
    messages.append({"role": "user", "content": turn})
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return split_template(text)


def label_token_ids(tokenizer, prompt: Prompt, label_words: Sequence[str] = LABEL_WORDS) -> list[list[int]]:
    """Each label word's token ids as it follows the prompt (label_lead before it); first tokens must differ."""
    ids = [tokenizer(prompt.label_lead + w, add_special_tokens=False)["input_ids"] for w in label_words]
    firsts = [t[0] if t else None for t in ids]
    if None in firsts or len(set(firsts)) < len(firsts):
        raise ValueError(f"label words {list(label_words)} must be non-empty with different first tokens, got "
                         f"{firsts}; score whole words (full_word=True) only after choosing words that differ.")
    return ids


def _encode(tokenizer, prompt: Prompt, sentences: Sequence[str]) -> tuple[list[int], list[list[int]]]:
    """(prefix ids, each sentence's rest ids): tokenised apart, so the prefix's tokens are the same for every row."""
    prefix = tokenizer(prompt.prefix)["input_ids"] if prompt.prefix else []  # special tokens (BOS) go here
    rest = [tokenizer(prompt.rest(s), add_special_tokens=False)["input_ids"] for s in sentences]
    if any(not r for r in rest):
        raise ValueError("a prompt's part after the prefix tokenised to nothing; the template needs text there.")
    return prefix, rest


def _right_pad(rows: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros(len(rows), T, dtype=torch.long, device=device)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.as_tensor(r, device=device)
        mask[i, : len(r)] = 1
    return ids, mask


def _prefix_cache(model: nn.Module, prefix: Sequence[int]):
    """The prefix's keys and values (a transformers Cache, batch 1), or None for an empty prefix."""
    if not prefix:
        return None
    ids = torch.tensor([list(prefix)], device=model.device)
    cache = DynamicCache(config=model.config)
    model.model(input_ids=ids, use_cache=True, **{_cache_arg(model): cache})  # fills the cache in place
    return cache


def _cache_arg(model: nn.Module) -> str:
    """The forward's name for the cache: `cache` from transformers 5.24 on, `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(model.model.forward).parameters else "past_key_values"


def _hidden_at(model: nn.Module, rows: Sequence[Sequence[int]], at: Sequence[Sequence[int]], cache,
               pad_id: int) -> torch.Tensor:
    """Last-layer hidden states (len(rows), len(at[0]), d) of each row at positions `at` (relative to the row),
    after the cached prefix when there is one."""
    ids, mask = _right_pad(rows, pad_id, model.device)
    kwargs = {}
    if cache is not None:
        cache = copy.deepcopy(cache)  # the forward appends to it
        cache.batch_repeat_interleave(len(rows))
        P = cache.get_seq_length()
        mask = torch.cat([torch.ones(len(rows), P, dtype=mask.dtype, device=mask.device), mask], 1)
        kwargs = {_cache_arg(model): cache, "use_cache": True}
    h = model.model(input_ids=ids, attention_mask=mask, **kwargs).last_hidden_state
    where = torch.as_tensor(at, device=h.device)
    return h[torch.arange(len(rows), device=h.device)[:, None], where]


def _head(model: nn.Module, h: torch.Tensor, rows: Sequence[int] | None = None) -> torch.Tensor:
    """Output-layer logits in fp32 even under bf16 autocast (logits near 20 have a bf16 step of 0.125)."""
    weight = model.lm_head.weight if rows is None else model.lm_head.weight[list(rows)]
    with torch.autocast(h.device.type, enabled=False):
        return F.linear(h.float(), weight.float())


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)


@torch.no_grad()
def label_log_probs(model: nn.Module, tokenizer, prompt: Prompt, sentences: Sequence[str],
                    label_words: Sequence[str] = LABEL_WORDS, batch_size: int = 16,
                    full_word: bool = False) -> np.ndarray:
    """log P(label word | prompt with the sentence) for each sentence and word, shape (n, len(label_words)): of the
    word's first token, or (full_word=True) of all its tokens by the chain rule. `model`: a transformers causal LM
    with .model and .lm_head (LlamaForCausalLM)."""
    words = label_token_ids(tokenizer, prompt, label_words)
    prefix, rest = _encode(tokenizer, prompt, sentences)
    cache, pad = _prefix_cache(model, prefix), _pad_id(tokenizer)
    out = np.zeros((len(rest), len(words)), dtype=np.float64)
    order = np.argsort([len(r) for r in rest], kind="stable")  # similar lengths together: less padding
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        rows = [rest[i] for i in batch]
        if not full_word:
            h = _hidden_at(model, rows, [[len(r) - 1] for r in rows], cache, pad)[:, 0]
            lp = _head(model, h).log_softmax(-1)
            out[batch] = lp[:, [w[0] for w in words]].double().cpu().numpy()
            continue
        for j, w in enumerate(words):  # the word's tokens appended; read the predictions of each in turn
            ext = [r + w[:-1] for r in rows]
            at = [list(range(len(r) - 1, len(r) - 1 + len(w))) for r in rows]
            lp = _head(model, _hidden_at(model, ext, at, cache, pad)).log_softmax(-1)
            picked = lp.gather(-1, torch.tensor(w, device=lp.device).expand(len(rows), -1)[..., None])
            out[batch, j] = picked.sum((1, 2)).double().cpu().numpy()
    return out


@torch.no_grad()
def text_log_probs(model: nn.Module, tokenizer, texts: Sequence[str], batch_size: int = 16,
                   start_token: str | None = "<|endoftext|>") -> tuple[np.ndarray, np.ndarray]:
    """log P(x) of each text by the chain rule, sum over t of log P(x_t | x_<t), and how many tokens were predicted;
    every token is predicted when `start_token` (the document separator) is put before the text as its context."""
    start = [] if start_token is None else [tokenizer.convert_tokens_to_ids(start_token)]
    if start and (start[0] is None or tokenizer.convert_ids_to_tokens(start[0]) != start_token):  # not [UNK]
        raise ValueError(f"start_token {start_token!r} is not a token of this tokenizer; pass start_token=None.")
    rows = [start + tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    if any(len(r) < 2 for r in rows):
        raise ValueError("every text needs a token to predict (with start_token=None: at least two tokens).")
    total, count = np.zeros(len(rows)), np.array([len(r) - 1 for r in rows])
    for i in range(0, len(rows), batch_size):
        ids, mask = _right_pad(rows[i:i + batch_size], _pad_id(tokenizer), model.device)
        logits = _head(model, model.model(input_ids=ids, attention_mask=mask).last_hidden_state)
        lp = logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1) * mask[:, 1:]
        total[i:i + batch_size] = lp.sum(1).double().cpu().numpy()
    return total, count


def label_probs(log_probs: np.ndarray) -> np.ndarray:
    """Label-word log-probabilities renormalised over the label words: p(label | prompt), rows sum to 1."""
    lp = np.asarray(log_probs, dtype=np.float64)
    return np.exp(lp - np.logaddexp.reduce(lp, axis=1, keepdims=True))


def content_free_probs(model: nn.Module, tokenizer, prompt: Prompt, label_words: Sequence[str] = LABEL_WORDS,
                       inputs: Sequence[str] = CONTENT_FREE, full_word: bool = False) -> np.ndarray:
    """Mean renormalised label probabilities when the sentence is content-free ("N/A", "", "[MASK]"): the bias."""
    return label_probs(label_log_probs(model, tokenizer, prompt, list(inputs), label_words,
                                       full_word=full_word)).mean(0)


def calibrate(probs: np.ndarray, p_cf: np.ndarray) -> np.ndarray:
    """Contextual calibration: softmax(W p) with W = diag(p_cf)^-1 (Zhao et al. 2021, b = 0); the predicted class
    is the arg-max of p / p_cf, so a label the prompt favours for content-free input must earn its lead."""
    probs, p_cf = np.asarray(probs, np.float64), np.asarray(p_cf, np.float64)
    if probs.ndim != 2 or p_cf.shape != probs.shape[1:] or (p_cf <= 0).any():
        raise ValueError(f"calibrate needs probs (n, c) and positive p_cf (c,), got {probs.shape} and {p_cf.shape}.")
    z = probs / p_cf
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def sample_demos(texts: Sequence[str], labels: Sequence[int], k: int, seed: int = 0,
                 balanced: bool = True) -> list[tuple[str, int]]:
    """k (text, label) demonstrations drawn without replacement, in random order; balanced: k // 2 of each of two
    classes (the odd one from a class chosen by the seed), else drawn regardless of label."""
    labels = np.asarray(labels)
    if k < 0 or k > len(texts) or len(texts) != len(labels):
        raise ValueError(f"cannot draw k={k} demonstrations from {len(texts)} texts with {len(labels)} labels.")
    rng = np.random.default_rng(seed)
    if balanced and k:
        classes = np.unique(labels)
        if len(classes) != 2:
            raise ValueError(f"balanced draws need two classes, got {classes.tolist()}.")
        extra = rng.integers(2)
        picks = []
        for c_i, c in enumerate(classes):
            pool = np.flatnonzero(labels == c)
            n = k // 2 + (k % 2 if c_i == extra else 0)
            if n > len(pool):
                raise ValueError(f"class {c} has {len(pool)} texts, fewer than the {n} a balanced draw needs.")
            picks.append(rng.choice(pool, n, replace=False))
        idx = rng.permutation(np.concatenate(picks))
    else:
        idx = rng.choice(len(texts), k, replace=False)
    return [(texts[i], int(labels[i])) for i in idx]


class LabelWordClassifier(nn.Module):
    """A causal LM read as a classifier: logits of the label words' first tokens after the prompt (no new head)."""

    def __init__(self, lm: nn.Module, tokenizer, prompt: Prompt, label_words: Sequence[str] = LABEL_WORDS):
        super().__init__()
        self.lm, self.tokenizer, self.prompt = lm, tokenizer, prompt
        self.word_ids = [w[0] for w in label_token_ids(tokenizer, prompt, label_words)]

    def encode(self, sentences: Sequence[str]) -> list[list[int]]:
        """Whole prompts as token ids (prefix tokenised apart, as label_log_probs does)."""
        prefix, rest = _encode(self.tokenizer, self.prompt, sentences)
        return [prefix + r for r in rest]

    def forward(self, rows: Sequence[Sequence[int]]) -> torch.Tensor:
        """(B, n_labels) label-word logits at each prompt's last token."""
        h = _hidden_at(self.lm, rows, [[len(r) - 1] for r in rows], None, _pad_id(self.tokenizer))[:, 0]
        return _head(self.lm, h, self.word_ids)  # only the label words' rows of the output layer

    @torch.no_grad()
    def predict_proba(self, sentences: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """p(label | sentence) from the label-word logits, (n, n_labels)."""
        was = self.training
        self.eval()
        rows = self.encode(sentences)
        out = [self(rows[i:i + batch_size]).float().softmax(-1) for i in range(0, len(rows), batch_size)]
        self.train(was)
        return torch.cat(out).double().cpu().numpy()


def add_lora(lm: nn.Module, r: int = 8, alpha: float = 16, targets: tuple[str, ...] = ("q_proj", "v_proj")) -> int:
    """Freeze the LM and wrap its attention projections in lora.LoRALinear (in place); returns trainable weights."""
    inject_lora(lm, r=r, alpha=alpha, targets=targets)
    trainable = [(n, p) for n, p in lm.named_parameters() if p.requires_grad]
    stray = [n for n, _ in trainable if not n.endswith((".A", ".B"))]
    if stray:
        raise ValueError(f"add_lora: parameters other than LoRA's A and B are trainable: {stray[:3]}.")
    return sum(p.numel() for _, p in trainable)


@torch.no_grad()
def reset_lora(lm: nn.Module, seed: int = 0) -> None:
    """Draw every LoRALinear's A afresh (seeded) and zero its B: the LM computes exactly what it did before LoRA."""
    torch.manual_seed(seed)
    layers = [m for m in lm.modules() if isinstance(m, LoRALinear)]
    if not layers:
        raise ValueError("the model has no LoRALinear layers: call add_lora first.")
    for m in layers:
        nn.init.kaiming_uniform_(m.A, a=math.sqrt(5))
        m.B.zero_()


def train_classifier(clf: LabelWordClassifier, texts: Sequence[str], labels: Sequence[int], epochs: int = 1,
                     lr: float = 1e-3, batch_size: int = 16, seed: int = 0, log=None) -> list[float]:
    """Train the trainable weights (LoRA's) with cross-entropy on the label-word logits; returns each step's loss."""
    if len(texts) != len(labels) or not len(texts):
        raise ValueError(f"train_classifier needs equal non-zero numbers of texts and labels, got "
                         f"{len(texts)} and {len(labels)}.")
    params = [p for p in clf.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the classifier has no trainable weights: call add_lora on its LM first.")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    rows, y = clf.encode(texts), torch.as_tensor(np.asarray(labels), dtype=torch.long)
    rng, losses = np.random.default_rng(seed), []
    steps = epochs * -(-len(rows) // batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)  # linear decay to 0
    clf.train()
    for _ in range(epochs):
        order = rng.permutation(len(rows))
        for start in range(0, len(order), batch_size):
            b = order[start:start + batch_size]
            loss = F.cross_entropy(clf([rows[i] for i in b]).float(), y[b].to(clf.lm.device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            if log is not None:
                log(len(losses), steps, losses[-1])
    clf.eval()
    return losses
