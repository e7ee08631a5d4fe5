"""A notebook's first and last lines: settings and provenance at the start, wall time at the end."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

from .hardware import describe, native_bf16, set_threads
from .settings import Settings, get_settings, quiet_libraries, seed_everything

PROVENANCE_PREFIX = "outputs produced by"
FINISH_PREFIX = "notebook finished:"
_started: float | None = None


def provenance(S: Settings) -> str:
    """One line saying how this run's outputs were produced: mode, device and CPU, threads, date."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    bf16 = "native bf16" if native_bf16(S.device) else "no native bf16"
    wait = os.environ.get("OMP_WAIT_POLICY", "default").lower()
    return (f"{PROVENANCE_PREFIX} a {S.mode}-mode run on {when}; device {S.device}: {describe(S.device)}, "
            f"{bf16}, OpenMP wait policy {wait}")


def start(**overrides) -> Settings:
    """Resolve the settings, quiet the libraries, set threads and seed; print the settings and provenance lines."""
    global _started
    _started = time.perf_counter()
    S = get_settings(**overrides)
    quiet_libraries()
    set_threads(S.threads)
    seed_everything(S.seed)
    print(S.summary())
    print(provenance(S))
    return S


def finish() -> None:
    """Print how long the notebook took since `start` (returns nothing, so a cell shows the line once)."""
    if _started is None:
        line = f"{FINISH_PREFIX} (start() was not called, no wall time)"
    else:
        minutes = (time.perf_counter() - _started) / 60
        line = f"{FINISH_PREFIX} {minutes:.1f} min of wall time since the setup cell"
    print(line)
