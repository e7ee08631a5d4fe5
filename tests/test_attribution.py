"""Token attributions: occlusion = a slow one-at-a-time loop, hand IG = captum's, IG completeness, deletion curves."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from llm_transfer import attribution as A

SENTENCE = "a gripping, funny and deeply moving film"


@pytest.fixture
def bert(tiny_bert):
    """The tiny random BERT with 2-D weights drawn at std 0.3: at the default 0.02 every effect is float noise."""
    model = tiny_bert(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
    return model.eval()


def _keep_special(enc: A.Encoded) -> torch.Tensor:
    """True at [CLS]/[SEP]: the baseline keeps their word embeddings."""
    keep = torch.ones(enc.input_ids.shape[1], dtype=torch.bool)
    keep[enc.positions] = False
    return keep


def test_word_embeddings_path_equals_ids_path(bert, tokenizer):
    """inputs_embeds = word embeddings only: the model still adds position and token-type embeddings."""
    enc = A.encode(tokenizer, SENTENCE)
    with torch.no_grad():
        by_ids = bert(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
        by_embeds = bert(inputs_embeds=bert.get_input_embeddings()(enc.input_ids),
                         attention_mask=enc.attention_mask).logits
    torch.testing.assert_close(by_embeds, by_ids, rtol=0, atol=1e-6)


@pytest.mark.parametrize("replace", ["[MASK]", "pad"])
def test_occlusion_equals_a_slow_loop(bert, tokenizer, replace):
    occ = A.occlusion(bert, tokenizer, SENTENCE, replace=replace)
    enc = A.encode(tokenizer, SENTENCE)
    rid = tokenizer.mask_token_id if replace == "[MASK]" else tokenizer.pad_token_id
    with torch.no_grad():
        p0 = bert(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits.softmax(-1)[0]
        slow = []
        for pos in enc.positions:
            ids = enc.input_ids.clone()
            ids[0, pos] = rid
            slow.append(float(p0[occ.target] - bert(input_ids=ids, attention_mask=enc.attention_mask)
                              .logits.softmax(-1)[0, occ.target]))
    assert occ.tokens == enc.tokens and "[CLS]" not in occ.tokens and "[SEP]" not in occ.tokens
    assert occ.target == int(p0.argmax()) and occ.prob == pytest.approx(float(p0[occ.target]), abs=1e-6)
    np.testing.assert_allclose(occ.drops, slow, rtol=0, atol=1e-6)
    other = A.occlusion(bert, tokenizer, SENTENCE, target=1 - occ.target, replace=replace)
    np.testing.assert_allclose(other.drops, -occ.drops, rtol=0, atol=1e-6)  # two classes: p0 + p1 = 1


def test_hand_ig_equals_captum_layer_ig_on_word_embeddings(bert, tokenizer):
    """[PAD] baseline ([CLS]/[SEP] kept), 16 midpoint steps on both sides; agreement to 1e-6 (float32)."""
    from captum.attr import LayerIntegratedGradients

    enc = A.encode(tokenizer, SENTENCE)
    keep = _keep_special(enc)
    hand = A.integrated_gradients(bert, enc.input_ids, enc.attention_mask, target=1, steps=16, keep=keep)
    ref_ids = torch.where(keep[None], enc.input_ids, torch.full_like(enc.input_ids, tokenizer.pad_token_id))
    lig = LayerIntegratedGradients(lambda ids, mask: bert(input_ids=ids, attention_mask=mask).logits[:, 1],
                                   bert.get_input_embeddings())
    theirs = lig.attribute(enc.input_ids, baselines=ref_ids, additional_forward_args=(enc.attention_mask,),
                           n_steps=16, method="riemann_middle")
    np.testing.assert_allclose(hand.attributions, theirs.sum(-1)[0].double().numpy(), rtol=0, atol=1e-6)
    assert np.all(hand.attributions[keep.numpy()] == 0)  # x - baseline is zero there


def test_hand_ig_equals_captum_ig_with_zero_baseline(bert, tokenizer):
    from captum.attr import IntegratedGradients

    enc = A.encode(tokenizer, SENTENCE)
    hand = A.integrated_gradients(bert, enc.input_ids, enc.attention_mask, target=0, steps=16, baseline="zeros")
    x = bert.get_input_embeddings()(enc.input_ids).detach()
    ig = IntegratedGradients(lambda e, mask: bert(inputs_embeds=e, attention_mask=mask).logits[:, 0])
    theirs = ig.attribute(x, baselines=torch.zeros_like(x), additional_forward_args=(enc.attention_mask,),
                          n_steps=16, method="riemann_middle")
    np.testing.assert_allclose(hand.attributions, theirs.sum(-1)[0].double().numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("baseline", ["pad", "zeros"])
def test_ig_completeness_gap_shrinks_with_steps(bert, tokenizer, baseline):
    enc = A.encode(tokenizer, SENTENCE)
    coarse, fine = (A.integrated_gradients(bert, enc.input_ids, enc.attention_mask, steps=n, baseline=baseline,
                                           keep=_keep_special(enc)) for n in (8, 128))
    assert coarse.f_x - coarse.f_baseline == pytest.approx(fine.f_x - fine.f_baseline)
    assert abs(fine.f_x - fine.f_baseline) > 0.1  # a real difference to explain
    assert abs(fine.gap) < abs(coarse.gap) / 10 and abs(fine.gap) < 1e-4  # midpoint rule: error ~ 1/steps^2


class BagOfWords(torch.nn.Module):
    """An additive classifier: logit_1 - logit_0 = the sum of per-token weights ([MASK] and specials weigh 0)."""

    def __init__(self, weights: dict[int, float], vocab_size: int = 30522):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(vocab_size))
        with torch.no_grad():
            for token_id, w in weights.items():
                self.w[token_id] = w
        self.config = SimpleNamespace(num_labels=2)

    def forward(self, input_ids, attention_mask, **_):
        s = (self.w[input_ids] * attention_mask).sum(-1)
        return SimpleNamespace(logits=torch.stack([torch.zeros_like(s), s], -1))


def test_deletion_curve_by_occlusion_on_an_additive_model(tokenizer):
    """Additive logit: masking the top-k by occlusion removes the largest k weights, so its curve falls while the
    removed weights are positive, rises after, and lies under every other ranking's curve at every k."""
    enc = A.encode(tokenizer, SENTENCE)
    ids = enc.input_ids[0, enc.positions].tolist()
    assert len(set(ids)) == len(ids)
    weights = [0.9, -0.4, 0.1, 1.5, -0.2, 0.6, 0.3, 0.05]
    model = BagOfWords(dict(zip(ids, weights, strict=True)))
    occ = A.occlusion(model, tokenizer, SENTENCE)
    assert occ.target == 1 and list(A.rank(occ.drops)) == list(A.rank(weights))
    ks = range(len(ids) + 1)
    curve = A.deletion_curve(model, tokenizer, SENTENCE, A.rank(occ.drops), ks)
    assert curve[0] == pytest.approx(occ.prob) and curve[-1] == pytest.approx(0.5)  # all masked: logit 0
    n_pos = sum(w > 0 for w in weights)
    assert np.all(np.diff(curve[: n_pos + 1]) < 0) and np.all(np.diff(curve[n_pos:]) > 0)
    for seed in range(5):
        other = A.deletion_curve(model, tokenizer, SENTENCE, A.random_ranking(len(ids), seed), ks)
        assert np.all(curve <= other + 1e-7)


def test_deletion_curve_on_bert_agrees_with_model_and_occlusion(bert, tokenizer):
    enc = A.encode(tokenizer, SENTENCE)
    with torch.no_grad():
        p = bert(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits.softmax(-1)[0]
    occ = A.occlusion(bert, tokenizer, SENTENCE)
    ranking = A.rank(occ.drops)
    curve = A.deletion_curve(bert, tokenizer, SENTENCE, ranking, [0, 1, len(ranking)])
    assert curve[0] == pytest.approx(float(p.max()), abs=1e-6)
    assert curve[1] == pytest.approx(occ.prob - occ.drops[ranking[0]], abs=1e-6)


def test_rankings(bert, tokenizer):
    n = len(A.encode(tokenizer, SENTENCE).tokens)
    assert sorted(A.random_ranking(n, 3)) == list(range(n))
    assert list(A.random_ranking(n, 3)) == list(A.random_ranking(n, 3))
    assert list(A.rank([0.1, 0.5, 0.5, -1.0])) == [1, 2, 0, 3]
    before = bert.config._attn_implementation
    att = A.attention_ranking(bert, tokenizer, SENTENCE)
    assert sorted(att) == list(range(n)) and bert.config._attn_implementation == before


def test_bad_input_is_refused(bert, tokenizer):
    enc = A.encode(tokenizer, SENTENCE)
    n = len(enc.tokens)
    for sentence in ("", "   "):
        with pytest.raises(ValueError, match="non-empty sentence"):
            A.occlusion(bert, tokenizer, sentence)
        with pytest.raises(ValueError, match="non-empty sentence"):
            A.deletion_curve(bert, tokenizer, sentence, [], [0])
    with pytest.raises(ValueError, match="target must be a class"):
        A.occlusion(bert, tokenizer, SENTENCE, target=2)
    for target in (-1, 2):
        with pytest.raises(ValueError, match="target must be a class"):
            A.integrated_gradients(bert, enc.input_ids, enc.attention_mask, target=target)
    with pytest.raises(ValueError, match="baseline"):
        A.integrated_gradients(bert, enc.input_ids, enc.attention_mask, baseline="unk")
    with pytest.raises(ValueError, match="steps"):
        A.integrated_gradients(bert, enc.input_ids, enc.attention_mask, steps=0)
    with pytest.raises(ValueError, match="one non-empty sentence"):
        A.integrated_gradients(bert, enc.input_ids.repeat(2, 1), enc.attention_mask.repeat(2, 1))
    with pytest.raises(ValueError, match="not in the tokenizer's vocabulary"):
        A.occlusion(bert, tokenizer, SENTENCE, replace="[NOPE]")
    with pytest.raises(ValueError, match="ranking must order"):
        A.deletion_curve(bert, tokenizer, SENTENCE, [0, 0, 1], [1])
    with pytest.raises(ValueError, match="each k"):
        A.deletion_curve(bert, tokenizer, SENTENCE, range(n), [n + 1])
