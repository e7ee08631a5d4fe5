"""llm_transfer: the helper package of the LLM pretraining and transfer-learning notebook series."""

from .settings import Settings, get_settings, quiet_libraries, seed_everything

__version__ = "0.1.0"
__all__ = ["Settings", "get_settings", "quiet_libraries", "seed_everything", "__version__"]
