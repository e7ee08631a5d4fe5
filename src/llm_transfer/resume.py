"""What a mid-epoch resume needs besides weights and optimizer: random-number states; interrupts held to a step end."""

from __future__ import annotations

import random
import signal
import threading
from types import FrameType

import numpy as np
import torch

# A mid-epoch `last/` this often: one save of all-MiniLM-L6-v2 with its AdamW state takes 0.8-2.2 s on a laptop-class
# CPU (scripts/checkpoint_cost.py), 0.1-0.4 % of 10 minutes; a model 5x larger on a GPU stays under 3 %.
DEFAULT_CHECKPOINT_MINUTES = 10.0


def rng_state() -> dict:
    """The states of every random-number generator training may draw from (PyTorch CPU/CUDA, Python, NumPy): JSON."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state().tolist(),
             "python": [version, list(internal), gauss],
             "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    """Put back the states `rng_state` saved (CUDA's only where as many GPUs are visible)."""
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in cuda])


class HeldInterrupt:
    """While active, a first Ctrl-C / Jupyter "interrupt kernel" (SIGINT) is only noted, to be acted on at a step end.

    `requested` turns True; the training loop then saves a resumable checkpoint and raises KeyboardInterrupt itself.
    A second SIGINT raises KeyboardInterrupt at once (an escape hatch if a step hangs). Outside the main thread,
    where signal handlers cannot be set, it does nothing and interrupts behave as usual.
    """

    def __init__(self) -> None:
        self.requested = False
        self._installed, self._previous = False, None

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        """Note the first interrupt; raise on the second."""
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> HeldInterrupt:
        # a process told to ignore SIGINT (a job started in the background, `nohup`) keeps ignoring it
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def __exit__(self, *exc) -> None:
        if self._installed:
            previous = self._previous if self._previous is not None else signal.default_int_handler
            signal.signal(signal.SIGINT, previous)
            self._installed = False
