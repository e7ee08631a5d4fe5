"""What a mid-epoch resume needs besides weights and optimizer: random-number states; signals held to a step end."""

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


class Terminated(KeyboardInterrupt):
    """A SIGTERM (`kill`, `timeout`, a job scheduler, a container stop) acted on at a step end.

    A KeyboardInterrupt, so code that catches interrupts catches it too; the CLI exits with `exit_status` (143).
    """

    exit_status = 128 + signal.SIGTERM


class HeldInterrupt:
    """While active, a first SIGINT (Ctrl-C, Jupyter's "interrupt kernel") or SIGTERM is only noted, for a step end.

    `requested` turns True (`signum` says which signal); the training loop then finishes the step, saves what it can
    and raises `exception()` itself: KeyboardInterrupt for SIGINT, `Terminated` for SIGTERM. A second signal raises
    at once (an escape hatch if a step hangs). A signal the process was told to ignore (a background job ignores
    SIGINT; `trap '' TERM`) stays ignored, and a SIGTERM handler set outside Python is left alone. Outside the main
    thread, where signal handlers cannot be set, it does nothing and signals behave as usual.
    """

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        """Note the first signal; raise on the second."""
        if self.requested:
            self.signum = signum
            raise self.exception()
        self.requested, self.signum = True, signum

    @property
    def what(self) -> str:
        """How the log says the run was stopped: 'interrupted' (SIGINT) or 'stopped by SIGTERM'."""
        return "stopped by SIGTERM" if self.signum == signal.SIGTERM else "interrupted"

    def exception(self) -> KeyboardInterrupt:
        """The exception to raise for the noted signal: Terminated for SIGTERM, else KeyboardInterrupt."""
        return Terminated() if self.signum == signal.SIGTERM else KeyboardInterrupt()

    def __enter__(self) -> HeldInterrupt:
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in (signal.SIGINT, signal.SIGTERM):
            current = signal.getsignal(signum)
            # an ignored signal stays ignored; a SIGTERM handler set in C (None here) could not be put back
            if current is signal.SIG_IGN or (current is None and signum == signal.SIGTERM):
                continue
            self._previous[signum] = signal.signal(signum, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            if previous is None:  # SIGINT's handler set in C: Python's default one
                previous = signal.default_int_handler
            signal.signal(signum, previous)
        self._previous = {}
