"""llm_transfer: the helper package of the LLM pretraining and transfer-learning notebook series."""

import os
import warnings

# Before torch loads: threads that wait passively instead of spinning, so a second busy process on the same
# cores (a browser, a test run, another notebook) does not slow PyTorch several-fold. An explicit value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# tqdm.auto warns in notebooks without ipywidgets; our bars are plain text on purpose (small saved outputs).
warnings.filterwarnings("ignore", message="IProgress not found")

from .settings import Settings, get_settings, quiet_libraries, seed_everything  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Settings", "get_settings", "quiet_libraries", "seed_everything", "__version__"]
