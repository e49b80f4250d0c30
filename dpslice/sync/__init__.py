"""Guards that catch host-device synchronisation, on a GPU or without one.

Three modes, one interface (context manager, decorator, pytest fixture and
marker through :mod:`dpslice.pytest_plugin`):

* ``"cuda"``  -- torch's sync debug mode in ``"error"`` plus hooks for what it
  misses (device, event and stream ``synchronize()``, pageable non-blocking
  copies).  Stops the sync before it happens.  Needs a GPU.
* ``"probe"`` -- ground truth: a calibrated kernel keeps the stream busy and an
  idle stream after a call means the host waited.  Needs a GPU.
* ``"cpu"``   -- torch dispatch and function modes that see, on any device,
  the operations that would sync on CUDA.  Runs anywhere.

``"auto"`` is CUDA mode where a CUDA device exists, else CPU-only mode.
Importing this package never initialises CUDA.

Example::

    from dpslice.sync import allow_sync, find_syncs, no_sync

    with no_sync():                 # raises ImplicitSyncError at the first sync
        rows = buffer[start:stop]   # ints: fine; 0-dim tensors: op + file:line reported
        with allow_sync():
            print(rows)             # intended

    events = find_syncs(lambda: my_slice(...), mode="cpu")   # record, don't raise
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dpslice.sync._core import (
    ImplicitSyncError,
    SyncError,
    SyncEvent,
    SyncGuard,
    SyncMode,
    SyncModeUnavailableError,
    allow_sync,
)
from dpslice.sync.cpu_mode import CpuSyncGuard
from dpslice.sync.cuda_mode import CudaSyncGuard
from dpslice.sync.probe import StreamProbeGuard

__all__ = [
    "CpuSyncGuard",
    "CudaSyncGuard",
    "ImplicitSyncError",
    "StreamProbeGuard",
    "SyncError",
    "SyncEvent",
    "SyncGuard",
    "SyncMode",
    "SyncModeUnavailableError",
    "allow_sync",
    "find_syncs",
    "no_sync",
    "resolve_mode",
]

# Tracebacks and reprs name the public home, not the private module.
for _public in (ImplicitSyncError, SyncError, SyncEvent, SyncGuard, SyncModeUnavailableError):
    _public.__module__ = __name__

_GUARDS: dict[str, type[SyncGuard]] = {
    "cuda": CudaSyncGuard,
    "probe": StreamProbeGuard,
    "cpu": CpuSyncGuard,
}


def resolve_mode(mode: str = "auto") -> str:
    """The concrete mode ``mode`` stands for: ``"auto"`` is ``"cuda"`` on a GPU, else ``"cpu"``.

    Raises:
        ValueError: ``mode`` is not one of ``"auto"``, ``"cuda"``, ``"probe"``, ``"cpu"``.
    """
    if mode == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if mode not in _GUARDS:
        raise ValueError(f"mode={mode!r}; choose one of 'auto', 'cuda', 'probe', 'cpu'")
    return mode


def no_sync(mode: SyncMode = "auto", *, record: bool = False, **options: Any) -> SyncGuard:
    """A guard that fails on a host-device sync: ``with no_sync():`` or ``@no_sync()``.

    Args:
        mode: ``"auto"``, ``"cuda"``, ``"probe"`` or ``"cpu"`` (see the module docs).
        record: record syncs in ``guard.events`` instead of raising.
        options: passed to the mode's guard (``extra_hooks`` for CUDA mode,
            ``sleep_ms`` for the probe).

    Raises:
        ValueError: an unknown mode.
        SyncModeUnavailableError: on entry, for a GPU mode without a GPU.
    """
    return _GUARDS[resolve_mode(mode)](record=record, **options)


def find_syncs(
    fn: Callable[[], object], *, mode: SyncMode = "auto", **options: Any
) -> tuple[SyncEvent, ...]:
    """Run ``fn()`` under a recording guard and return every sync it caused.

    Each event names the operation and the user's ``file:line``.  Errors that
    ``fn`` raises propagate, except a sync that CUDA mode could only catch by
    aborting ``fn``; that one is returned as the last event.

    Raises:
        ValueError: an unknown mode.
        SyncModeUnavailableError: a GPU mode without a GPU.
    """
    guard = no_sync(mode, record=True, **options)
    try:
        with guard:
            fn()
    except ImplicitSyncError:
        pass  # already in guard.events; fn could not run on past it
    return tuple(guard.events)
