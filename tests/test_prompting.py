"""Prompting a causal LM: SST detokenisation, prompts, label-word scores (cached prefix = whole prompt), the chain
rule for whole label words, contextual calibration, demonstration draws and a LoRA label-word classifier; a tiny
random Llama with a word-level tokenizer, then SmolLM2 itself once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from llm_transfer import prompting as P
from llm_transfer.llama import token_log_probs
from llm_transfer.lora import LoRALinear

WORDS = ("review sentiment positive negative very quite good bad film movie a the is was it not great dull fun "
         "and of this plot acting boring lovely N/A [MASK] Is answer with one word ? Answer : . , ! user assistant "
         "system").split()
SPECIAL = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def tok():
    """A word-level tokenizer over WORDS (case-insensitive words, punctuation split off) with a chat template."""
    words = SPECIAL + [w.lower() for w in WORDS if w not in ("N/A", "[MASK]")] + ["n", "/", "[", "]", "mask", "\n"]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}  # each word once: ids 0..len - 1
    t = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split("\n", "isolated"), pre_tokenizers.Whitespace()])
    t.normalizer = normalizers.Lowercase()
    fast = PreTrainedTokenizerFast(tokenizer_object=t, pad_token="<pad>", unk_token="<unk>",
                                   additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    fast.chat_template = CHAT
    return fast


@pytest.fixture(scope="module")
def lm(tok):
    """A 2-layer random Llama over the tokenizer's vocabulary, weights large enough for logits far from uniform."""
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=True, rope_theta=1000.0, initializer_range=0.3)
    return LlamaForCausalLM(cfg).eval()


SENTENCES = ["a good film", "the plot was dull and boring and not fun", "great", "it is a lovely movie"]


def whole_prompt_log_probs(lm, tok, prompt, sentence):
    """log softmax of the next token after the whole prompt, one sentence, no cache and no padding."""
    prefix, rest = P._encode(tok, prompt, [sentence])
    with torch.no_grad():
        return lm(torch.tensor([prefix + rest[0]])).logits[0, -1].log_softmax(-1)


def test_detokenize_sst():
    cases = {"it 's a charming and often affecting journey . ": "it's a charming and often affecting journey.",
             "the movie does n't work , and i ca n't say why .": "the movie doesn't work, and i can't say why.",
             "`` the ring '' is ( mostly ) fun ... and ` smart ' !": "\"the ring\" is (mostly) fun... and 'smart'!",
             "you 're gon na love it ; i 'd say": "you're gonna love it; i'd say"}
    for sst, text in cases.items():
        assert P.detokenize_sst(sst) == text
    assert P.detokenize_sst("`` i loved it ''", capitalize=True) == '"I loved it"'


def test_plain_prompt_text_and_where_the_sentence_goes():
    prompt = P.plain_prompt([("a good film", 1), ("dull", 0)])
    assert prompt.render("fun") == ("Review: a good film\nSentiment: positive\n\nReview: dull\nSentiment: negative"
                                    "\n\nReview: fun\nSentiment:")
    assert prompt.prefix.endswith("Review:") and prompt.lead == " " and prompt.label_lead == " "
    with pytest.raises(ValueError, match="exactly once"):
        P.split_template("no place here")
    with pytest.raises(ValueError, match="labels must be 0..1"):
        P.plain_prompt([("x", 2)])


def test_chat_prompt_is_the_chat_template_of_the_whole_conversation(tok):
    demos = [("a good film", 1)]
    prompt = P.chat_prompt(tok, demos, instruction="Answer with one word.")
    turn = "Answer with one word.\nReview: "
    messages = [{"role": "user", "content": turn + "a good film"}, {"role": "assistant", "content": "positive"},
                {"role": "user", "content": turn + "dull"}]
    assert prompt.render("dull") == tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt.render("dull").endswith("<|im_start|>assistant\n") and prompt.label_lead == ""


@pytest.mark.parametrize("kind", ["plain", "chat"])
def test_batched_scores_with_a_cached_prefix_equal_each_whole_prompt(lm, tok, kind):
    demos = [("a good film", 1), ("dull and boring", 0)]
    prompt = P.plain_prompt(demos) if kind == "plain" else P.chat_prompt(tok, demos)
    got = P.label_log_probs(lm, tok, prompt, SENTENCES, batch_size=3)  # lengths differ: padding inside a batch
    ids = [t[0] for t in P.label_token_ids(tok, prompt)]
    want = np.stack([whole_prompt_log_probs(lm, tok, prompt, s)[ids].numpy() for s in SENTENCES])
    print(f"{kind}: max |cached, batched - whole prompt| = {np.abs(got - want).max():.1e}")
    assert np.abs(got - want).max() < 1e-4
    assert np.ptp(got[:, 1] - got[:, 0]) > 0.1  # the sentences change the scores: a mixed-up row order would show
    assert P.label_log_probs(lm, tok, P.plain_prompt(), SENTENCES).shape == (4, 2)  # zero-shot prefix too


def test_full_word_scores_follow_the_chain_rule(lm, tok):
    prompt, words = P.plain_prompt(), ("very negative", "quite positive")
    got = P.label_log_probs(lm, tok, prompt, SENTENCES[:3], label_words=words, full_word=True, batch_size=2)
    for i, s in enumerate(SENTENCES[:3]):
        prefix, rest = P._encode(tok, prompt, [s])
        for j, w in enumerate(P.label_token_ids(tok, prompt, words)):
            assert len(w) == 2
            ids = torch.tensor([prefix + rest[0] + w])
            with torch.no_grad():
                terms = token_log_probs(lm(ids).logits, ids)[0, -len(w):]
            assert abs(got[i, j] - terms.sum().item()) < 1e-4
    first = P.label_log_probs(lm, tok, prompt, SENTENCES[:3], full_word=True)  # one-token words: same as first
    assert np.allclose(first, P.label_log_probs(lm, tok, prompt, SENTENCES[:3]), atol=1e-5)


def test_text_log_probs_sum_the_chain_rule_terms(lm, tok):
    total, count = P.text_log_probs(lm, tok, SENTENCES, batch_size=3, start_token="<|im_start|>")
    for s, got, n in zip(SENTENCES, total, count, strict=True):
        ids = torch.tensor([[tok.convert_tokens_to_ids("<|im_start|>")] + tok(s)["input_ids"]])
        with torch.no_grad():
            want = token_log_probs(lm(ids).logits, ids).sum().item()
        assert n == ids.shape[1] - 1 and abs(got - want) < 1e-4
    without, n_without = P.text_log_probs(lm, tok, SENTENCES[:2], start_token=None)
    assert (n_without == count[:2] - 1).all() and (without > total[:2]).all()  # one term fewer, each term < 0
    with pytest.raises(ValueError, match="not a token"):
        P.text_log_probs(lm, tok, SENTENCES, start_token="<|endoftext|>")


def test_label_words_must_start_differently(tok):
    with pytest.raises(ValueError, match="different first tokens"):
        P.label_token_ids(tok, P.plain_prompt(), ("very good", "very bad"))


def test_contextual_calibration(lm, tok):
    prompt = P.plain_prompt()
    p_cf = P.content_free_probs(lm, tok, prompt)
    lp = P.label_log_probs(lm, tok, prompt, list(P.CONTENT_FREE))
    assert np.allclose(p_cf, P.label_probs(lp).mean(0)) and np.isclose(p_cf.sum(), 1)
    assert np.allclose(P.calibrate(p_cf[None], p_cf), 0.5)  # the content-free input becomes 50 / 50
    probs = np.array([[0.3, 0.7], [0.2, 0.8]])
    cal = P.calibrate(probs, np.array([0.25, 0.75]))  # a prompt that favours "positive": 0.7 is no longer enough
    assert cal.argmax(1).tolist() == [0, 1] and probs.argmax(1).tolist() == [1, 1]  # 0.7/0.75 < 0.3/0.25
    assert np.allclose(cal.sum(1), 1)
    with pytest.raises(ValueError, match="positive p_cf"):
        P.calibrate(probs, np.array([0.0, 1.0]))


def test_sample_demos_draws_balanced_reproducible_sets():
    texts, labels = [f"t{i}" for i in range(40)], [int(i < 10) for i in range(40)]  # 10 positive, 30 negative
    d = P.sample_demos(texts, labels, 8, seed=1)
    assert sorted(y for _, y in d) == [0] * 4 + [1] * 4 and len({t for t, _ in d}) == 8
    assert d == P.sample_demos(texts, labels, 8, seed=1) != P.sample_demos(texts, labels, 8, seed=2)
    assert all(texts.index(t) < 10 for t, y in d if y == 1)  # each text keeps its own label
    assert sorted(y for _, y in P.sample_demos(texts, labels, 5, seed=0)).count(1) in (2, 3)
    assert P.sample_demos(texts, labels, 0) == []
    assert len(P.sample_demos(texts, labels, 30, seed=0, balanced=False)) == 30
    with pytest.raises(ValueError, match="fewer than"):
        P.sample_demos(texts, labels, 24)


def test_lora_label_word_classifier_starts_as_the_lm_and_learns(tok):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True, initializer_range=0.3)
    model = LlamaForCausalLM(cfg).eval()
    prompt, texts = P.plain_prompt(), ["good film", "great fun", "lovely acting", "bad plot", "dull film", "boring"]
    labels = [1, 1, 1, 0, 0, 0]
    before = P.label_log_probs(model, tok, prompt, texts)
    frozen = {n: p.clone() for n, p in model.named_parameters()}
    n_trainable = P.add_lora(model, r=4, alpha=8)
    assert n_trainable == 2 * (4 * (32 + 32) + 4 * (32 + 16))  # 2 layers x (q: 32 -> 32, v: 32 -> 2 x 8)
    assert sum(isinstance(m, LoRALinear) for m in model.modules()) == 4
    clf = P.LabelWordClassifier(model, tok, prompt)
    # B = 0 at first: the classifier's 2-way softmax is the renormalised label-word probability of the plain LM
    assert np.allclose(clf.predict_proba(texts), P.label_probs(before), atol=1e-5)
    losses = P.train_classifier(clf, texts, labels, epochs=30, lr=1e-2, batch_size=6, seed=0)
    print(f"LoRA classifier loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    assert losses[-1] < 0.5 * losses[0] and (clf.predict_proba(texts).argmax(1) == labels).all()
    changed = [n for n, p in model.named_parameters() if n.replace(".base", "") in frozen and
               not torch.equal(p, frozen[n.replace(".base", "")])]
    assert changed == []  # only A and B moved
    with pytest.raises(ValueError, match="equal non-zero"):
        P.train_classifier(clf, texts, labels[:2])
    P.reset_lora(model, seed=1)  # B = 0 again: back to the LM before LoRA
    assert np.allclose(clf.predict_proba(texts), P.label_probs(before), atol=1e-5)


@pytest.fixture(scope="module")
def smollm(smollm_hf):
    return smollm_hf  # conftest's: one load for this module and test_llama.py


def test_smollm2_zero_shot_and_the_chat_prompt_split(smollm):
    model, tok = smollm
    prompt = P.chat_prompt(tok)
    sentences = [P.detokenize_sst(s) for s in ["a gripping , beautifully acted film that i loved .",
                                               "a dull , lifeless mess that does n't work ."]]
    for s in sentences:  # tokenising the prefix apart gives the tokens of the whole text (the split is at a boundary)
        prefix, rest = P._encode(tok, prompt, [s])
        assert prefix + rest[0] == tok(prompt.render(s))["input_ids"]
    lp = P.label_log_probs(model, tok, prompt, sentences)
    want = whole_prompt_log_probs(model, tok, prompt, sentences[1])[[t[0] for t in P.label_token_ids(tok, prompt)]]
    assert np.abs(lp[1] - want.numpy()).max() < 1e-3
    print("SmolLM2 margins log P(positive) - log P(negative):", (lp[:, 1] - lp[:, 0]).round(2))
    assert lp[0, 1] > lp[0, 0] and lp[1, 0] > lp[1, 1]
