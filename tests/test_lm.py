"""The small language models: causal mask, masking rule, classifier head, and the pretrained-LM artefact."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llm_transfer import lm
from llm_transfer.masking import IGNORE_INDEX, mask_tokens, masking_stats

V = 60


def tiny(causal: bool = True, arch=lm.TinyGPT) -> torch.nn.Module:
    """A 1-layer, 32-wide model on a 60-token vocabulary, dropout off."""
    torch.manual_seed(0)
    return arch(lm.LMConfig(vocab_size=V, block_size=16, n_layer=1, n_head=2, d_model=32, dropout=0.0,
                            causal=causal)).eval()


def logits_after_changing_last(model, t: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of a sentence and of the same sentence with token t replaced."""
    x = torch.randint(5, V, (2, 10), generator=torch.Generator().manual_seed(1))
    y = x.clone()
    y[:, t] = (x[:, t] + 1) % V
    with torch.no_grad():
        return model(x), model(y)


@pytest.mark.parametrize("arch", [lm.TinyGPT, lm.LSTMLM])
def test_causal_model_earlier_positions_ignore_later_tokens(arch):
    a, b = logits_after_changing_last(tiny(True, arch), t=7)
    assert torch.equal(a[:, :7], b[:, :7])  # positions before the change: bit-identical
    assert not torch.allclose(a[:, 7:], b[:, 7:])  # from the change on: different


def test_bidirectional_model_earlier_positions_see_later_tokens():
    a, b = logits_after_changing_last(tiny(False), t=7)
    assert not torch.allclose(a[:, :7], b[:, :7], atol=1e-6)


def test_padding_does_not_change_real_positions():
    model = tiny(False)
    x = torch.randint(5, V, (1, 6))
    padded = torch.cat([x, torch.zeros(1, 4, dtype=torch.long)], 1)
    mask = torch.cat([torch.ones(1, 6), torch.zeros(1, 4)], 1).long()
    with torch.no_grad():
        assert torch.allclose(model(x), model(padded, mask)[:, :6], atol=1e-5)


def test_causal_loss_is_the_chain_rule():
    model = tiny()
    x = torch.randint(5, V, (1, 9))
    loss, n = lm.causal_lm_loss(model, x, torch.ones_like(x))
    with torch.no_grad():
        logp = F.log_softmax(model(x)[0], -1)
    by_hand = sum(logp[t - 1, x[0, t]] for t in range(1, 9))
    assert n == 8 and torch.allclose(-loss * n, by_hand, atol=1e-4)


def test_masking_proportions_on_a_large_batch():
    specials, pad, mask_id = [0, 1, 2, 3], 0, 3
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 1000, (400, 128), generator=g)
    ids[:, 0], ids[:, -1] = 1, 2  # [CLS] ... [SEP]
    attn = torch.ones_like(ids)
    attn[:200, 100:] = 0  # half the rows padded at the end
    ids[attn == 0] = pad
    corrupted, labels = mask_tokens(ids, mask_id, specials, torch.arange(4, 1000), attn, generator=g)
    maskable = ~torch.isin(ids, torch.tensor(specials)) & attn.bool()
    st = masking_stats(ids, corrupted, labels, mask_id, maskable)
    assert st["special_or_pad_picked"] == 0
    assert abs(st["picked_frac"] - 0.15) < 0.005
    assert abs(st["mask_frac"] - 0.8) < 0.01
    assert abs(st["random_frac"] - 0.1) < 0.01 and abs(st["unchanged_frac"] - 0.1) < 0.01
    assert torch.equal(corrupted[labels == IGNORE_INDEX], ids[labels == IGNORE_INDEX])  # the rest untouched
    assert torch.equal(labels[labels != IGNORE_INDEX], ids[labels != IGNORE_INDEX])


def test_masking_rejects_bad_fractions():
    with pytest.raises(ValueError, match="mask_frac"):
        mask_tokens(torch.ones(2, 3, dtype=torch.long), 3, [0], [5], mask_frac=0.95, random_frac=0.1)


def test_vocab_maps_unseen_ids_to_unk_and_back():
    keep = lm.build_vocab([[101, 7, 7, 9, 102]], special_ids=[0, 100, 101, 102, 103])
    assert keep[:5] == [0, 100, 101, 102, 103] and keep[5] == 7  # specials first, then by frequency
    vocab = lm.Vocab(len(keep), source_vocab_size=200).fit(keep, unk_id=100)
    compact = vocab(torch.tensor([7, 9, 55]))
    assert compact.tolist() == [5, 6, 1] and vocab.to_source[compact].tolist() == [7, 9, 100]
    with pytest.raises(ValueError, match="outside this model's vocabulary"):
        vocab(torch.tensor([250]))


def test_classifier_shapes_and_a_few_steps_lower_the_loss():
    clf = lm.LMClassifier(tiny(), num_labels=2, dropout=0.0)
    ids = torch.randint(5, V, (8, 10), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[::2, 6:] = 0  # right padding on half the rows
    labels = torch.tensor([0, 1] * 4)
    out = clf(input_ids=ids, attention_mask=mask, labels=labels)
    assert out.logits.shape == (8, 2) and out.loss.ndim == 0
    assert clf(ids, mask).loss is None
    opt = torch.optim.AdamW(clf.parameters(), lr=1e-2)
    first = out.loss.item()
    for _ in range(10):
        loss = clf(ids, mask, labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert clf(ids, mask, labels).loss.item() < 0.5 * first


def test_classifier_pools_the_last_real_token():
    clf = lm.LMClassifier(tiny(), dropout=0.0).eval()
    x = torch.randint(5, V, (1, 6))
    padded = torch.cat([x, torch.zeros(1, 3, dtype=torch.long)], 1)
    mask = torch.cat([torch.ones(1, 6), torch.zeros(1, 3)], 1).long()
    with torch.no_grad():
        assert torch.allclose(clf(x).logits, clf(padded, mask).logits, atol=1e-5)


def test_classifier_trains_with_the_series_fine_tune_loop(tokenizer, sst2):
    from llm_transfer.data import tokenize
    from llm_transfer.training import TrainConfig, evaluate, fine_tune

    rows = sst2["train"].select(range(64))
    train_ids = tokenizer(list(rows["sentence"]))["input_ids"]
    body = lm.new_lm(train_ids, tokenizer, n_layer=1, n_head=2, d_model=32, dropout=0.0)
    tok_ds = tokenize(rows, tokenizer, max_length=64)
    clf = lm.LMClassifier(body)
    cfg = TrainConfig(epochs=1, batch_size=16, lr=1e-3)
    res = fine_tune(clf, tokenizer, tok_ds, tok_ds, cfg, device="cpu", log=lambda *a: None)
    ev = evaluate(clf, tok_ds, tokenizer)
    assert len(res.history) == 1 and ev["n"] == 64 and 0.0 <= ev["accuracy"] <= 1.0


TINY_BUDGET = dict(articles=30, vocab_size=300, train_tokens=2048, block_size=32, batch_size=8, lr=1e-3, n_layer=1,
                   n_head=2, d_model=32, dropout=0.0, tie_embeddings=False, eval_every=4, heldout_blocks=4)


@pytest.fixture
def tiny_source(monkeypatch):
    """source_lm with a budget of a few Wikipedia articles and steps (skipped without the shared corpus)."""
    from llm_transfer import corpora, source_lm

    if corpora.find_shared_data() is None:
        pytest.skip("no shared data folder (../shared/data)")
    monkeypatch.setattr(source_lm, "pretrain_budget", lambda settings: dict(TINY_BUDGET))
    return source_lm


def test_pretrained_lm_artefact_round_trip(tiny_source, tmp_path):
    from llm_transfer.settings import get_settings

    S = get_settings(mode="quick", artifacts=tmp_path, device="cpu")
    logs: list[str] = []
    model, tok = lm.get_pretrained_lm(S, log=logs.append)
    assert (S.run_dir(lm.PRETRAIN_RUN) / "model.safetensors").is_file() and len(tok) <= 300
    again, _ = lm.get_pretrained_lm(S, log=logs.append)
    assert logs[-1].startswith("reusing")
    ids = tok(["a gripping , funny film", "dull"], padding=True, return_tensors="pt")
    with torch.no_grad():
        a = model(ids["input_ids"], ids["attention_mask"])
        b = again(ids["input_ids"], ids["attention_mask"])
    assert torch.equal(a, b)
    meta = lm.read_lm_meta(S.run_dir(lm.PRETRAIN_RUN))
    assert meta["budget"] == TINY_BUDGET and len(meta["history"]) == 2  # 8 steps, a row every 4
    assert meta["history"][-1]["targets"] == 8 * 8 * 31  # 8 steps x 8 blocks x 31 predicted tokens per block
    assert model.head.weight is not model.tok_emb.weight  # the budget's tie_embeddings=False reached the model


def test_source_corpus_holds_out_whole_articles(tiny_source, tmp_path):
    from llm_transfer.overlap import overlap
    from llm_transfer.settings import get_settings

    c = tiny_source.source_corpus(get_settings(mode="quick", artifacts=tmp_path, device="cpu"), log=lambda *a: None)
    assert c.train_articles + c.heldout_articles == 30 and c.heldout_articles >= 1
    assert c.train_blocks.shape == (2048 // 32, 32) and int(c.train_blocks.max()) < len(c.tokenizer)
    decoded = c.tokenizer.decode(c.train_blocks[0].tolist(), skip_special_tokens=True)
    assert decoded.split()[0] in c.train_texts[0].lower()  # blocks are cut from the training paragraphs, in order
    held = [p for d in c.heldout_docs for p in d.split("\n") if len(p.split()) >= 8]
    assert overlap(c.train_texts, held).whole == 0


def test_pretrained_lm_of_another_budget_is_replaced(tiny_source, tmp_path, monkeypatch):
    from llm_transfer.settings import get_settings

    S = get_settings(mode="quick", artifacts=tmp_path, device="cpu")
    lm.get_pretrained_lm(S, log=lambda *a: None)
    monkeypatch.setattr(tiny_source, "pretrain_budget", lambda settings: {**TINY_BUDGET, "lr": 2e-3})
    logs: list[str] = []
    lm.get_pretrained_lm(S, log=logs.append)
    said = [m for m in logs if "replacing it" in m]
    assert len(said) == 1 and str(tmp_path) not in said[0]  # no absolute path in the message


def test_packed_blocks_train_on_whole_blocks_in_random_order():
    blocks = torch.randint(5, V, (10, 12))
    model = tiny()
    losses: list[float] = []
    hist = lm.train_lm(model, blocks, blocks[:2], steps=6, batch_size=4, lr=1e-3, eval_every=3, log=lambda *a: None,
                       step_losses=losses)
    assert len(losses) == 6 and hist[-1]["targets"] == 6 * 4 * 11
    seen = torch.cat([b for _, b in zip(range(5), lm.block_batches(10, 4, seed=0), strict=False)])
    assert sorted(seen[:8].tolist()) == sorted(set(seen[:8].tolist()))  # no block twice within a pass
    again = [b for _, b in zip(range(5), lm.block_batches(10, 4, seed=0), strict=False)]
    assert torch.equal(torch.cat(again), seen)


def test_load_lm_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="get_pretrained_lm"):
        lm.load_lm(tmp_path / "nothing")


def test_generate_and_fill_mask_on_a_tiny_model(tokenizer):
    ids = tokenizer(["a gripping , funny film", "a dull , lifeless film", "the film is funny"])["input_ids"]
    torch.manual_seed(0)
    gpt = lm.new_lm(ids, tokenizer, n_layer=1, n_head=2, d_model=32)
    text = lm.generate(gpt, tokenizer, "the film", max_new_tokens=5, generator=torch.Generator().manual_seed(0))
    assert text.startswith("the film") and len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= 7
    mlm = lm.new_lm(ids, tokenizer, "bidirectional", n_layer=1, n_head=2, d_model=32)
    top = lm.fill_mask(mlm, tokenizer, "a [MASK] film", k=5)
    assert len(top) == 1 and len(top[0]) == 5
    assert not {w for w, _ in top[0]} & set(tokenizer.all_special_tokens)  # words only, never [SEP] or [MASK]
    with pytest.raises(ValueError, match="no \\[MASK\\]"):
        lm.fill_mask(mlm, tokenizer, "a film")


def test_untied_output_layer_is_its_own_matrix_and_round_trips(tmp_path):
    cfg = dict(vocab_size=V, block_size=16, n_layer=1, n_head=2, d_model=32, dropout=0.0)
    tied, untied = lm.TinyGPT(lm.LMConfig(**cfg)), lm.TinyGPT(lm.LMConfig(**cfg, tie_embeddings=False))
    assert tied.head.weight is tied.tok_emb.weight and untied.head.weight is not untied.tok_emb.weight
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(untied) - n(tied) == V * 32  # one more word table ...
    assert lm.count_body_parameters(untied) == lm.count_body_parameters(tied)  # ... and the same body
    lm.save_lm(untied.eval(), tmp_path / "lm")
    back = lm.load_lm(tmp_path / "lm")
    x = torch.randint(5, V, (2, 7))
    with torch.no_grad():
        assert back.head.weight is not back.tok_emb.weight and torch.equal(back(x), untied(x))


def test_classifier_mean_pooling_averages_real_tokens_only():
    clf = lm.LMClassifier(tiny(), dropout=0.0, pooling="mean").eval()
    x = torch.randint(5, V, (1, 6))
    padded = torch.cat([x, torch.zeros(1, 3, dtype=torch.long)], 1)
    mask = torch.cat([torch.ones(1, 6), torch.zeros(1, 3)], 1).long()
    with torch.no_grad():
        by_hand = clf.classifier(clf.body.hidden(x).mean(1))
        assert torch.allclose(clf(x).logits, by_hand, atol=1e-6)
        assert torch.allclose(clf(padded, mask).logits, by_hand, atol=1e-5)
    with pytest.raises(ValueError, match="pooling"):
        lm.LMClassifier(tiny(), pooling="max")


def test_a_pretraining_started_beside_another_waits_and_reuses_it(tiny_source, tmp_path, lock_holder):
    """Notebooks 02 and 03 side by side: the second must not train TinyGPT again into the same folder."""
    import shutil

    from llm_transfer.settings import get_settings
    from llm_transfer.source_lm import TOKENIZER_RUN

    staged = get_settings(mode="quick", artifacts=tmp_path / "staged", device="cpu")
    lm.get_pretrained_lm(staged, log=lambda *a: None)
    S = get_settings(mode="quick", artifacts=tmp_path / "main", device="cpu")
    # the vocabulary as notebook 02 left it: on count ties the trainer can pick other pieces
    shutil.copytree(staged.run_dir(TOKENIZER_RUN), S.run_dir(TOKENIZER_RUN))
    lock_holder(staged.run_dir(lm.PRETRAIN_RUN), S.run_dir(lm.PRETRAIN_RUN))
    logs: list[str] = []
    lm.get_pretrained_lm(S, log=logs.append)
    waited = [m for m in logs if "another process is training" in m]
    assert len(waited) == 1 and logs[-1].startswith("reusing") and not any("pretraining" in m for m in logs), logs
