"""Settings: arguments first, then environment variables, then defaults."""

from __future__ import annotations

import pytest

from llm_transfer.settings import SettingsError, get_settings, pick_device


def test_arguments_beat_environment_beat_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("LLM_TRANSFER_MODE", raising=False)
    monkeypatch.delenv("LLM_TRANSFER_SEED", raising=False)
    assert get_settings().mode == "quick" and get_settings().seed == 0
    monkeypatch.setenv("LLM_TRANSFER_MODE", "full")
    monkeypatch.setenv("LLM_TRANSFER_SEED", "7")
    monkeypatch.setenv("LLM_TRANSFER_ARTIFACTS", str(tmp_path))
    s = get_settings()
    assert (s.mode, s.seed, s.artifacts) == ("full", 7, tmp_path.resolve())
    assert s.run_dir("x") == tmp_path.resolve() / "full" / "x"
    s = get_settings(mode="quick", seed=1, data="hub", model="bert-base-uncased")
    assert (s.mode, s.seed, s.data, s.model) == ("quick", 1, "hub", "bert-base-uncased")
    line = s.summary()
    assert "mode = quick" in line and "bert-base-uncased" in line and "hub" in line and "\n" not in line


def test_default_data_is_the_shared_folder(sst2_dir, monkeypatch):
    monkeypatch.delenv("LLM_TRANSFER_DATA", raising=False)
    assert get_settings().data == str(sst2_dir)


def test_bad_values_are_refused(monkeypatch):
    with pytest.raises(SettingsError, match="quick or full"):
        get_settings(mode="fast")
    monkeypatch.setenv("LLM_TRANSFER_SEED", "abc")
    with pytest.raises(SettingsError, match="not an integer"):
        get_settings()
    with pytest.raises(SettingsError, match="not one of"):
        pick_device("tpu")


def test_device_auto_falls_back_to_cpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("auto") == "cpu"
    with pytest.raises(SettingsError, match="no CUDA GPU"):
        pick_device("cuda")


def _policy_after_import(env_value: str | None) -> str:
    """OMP_WAIT_POLICY as a fresh process sees it after `import llm_transfer`."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_value is not None:
        env["OMP_WAIT_POLICY"] = env_value
    code = "import sys, os, llm_transfer; print(os.environ.get('OMP_WAIT_POLICY'))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_importing_the_package_sets_a_passive_wait_policy_unless_one_is_set():
    """Spin-waiting OpenMP threads slowed a busy 2-core machine 3-30x; the package must default to PASSIVE."""
    assert _policy_after_import(None) == "PASSIVE"
    assert _policy_after_import("ACTIVE") == "ACTIVE"


def test_threads_setting(monkeypatch):
    monkeypatch.setenv("LLM_TRANSFER_THREADS", "1")
    assert get_settings().threads == 1
    assert get_settings(threads=2).threads == 2
    monkeypatch.setenv("LLM_TRANSFER_THREADS", "zero")
    with pytest.raises(SettingsError, match="LLM_TRANSFER_THREADS"):
        get_settings()
    monkeypatch.delenv("LLM_TRANSFER_THREADS")
    assert get_settings().threads is None


def test_summary_shows_no_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.delenv("LLM_TRANSFER_ARTIFACTS", raising=False)
    line = get_settings().summary()
    assert "/work/" not in line and "/root/" not in line and "artifacts = artifacts" in line
    from llm_transfer.settings import display_path

    assert display_path("bert-base-uncased") == "bert-base-uncased"
    assert not display_path(tmp_path).startswith("/")
