"""Guards that catch host-device synchronisation, on a GPU or without one.

Three modes behind one interface (context manager, decorator, and the pytest
fixture and marker of :mod:`dpslice.pytest_plugin`): ``"cuda"`` (torch's sync
debug mode plus hooks; needs a GPU), ``"probe"`` (ground truth from the stream's
state; needs a GPU) and ``"cpu"`` (torch modes that see, on any device, the
operations that would sync on CUDA).  Importing this package never initialises
CUDA.  docs/sync.md has the details and examples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from dpslice._numpy_notice import torch
from dpslice.errors import ImplicitSyncError
from dpslice.sync._core import SyncEvent, SyncGuard, SyncMode, allow_sync
from dpslice.sync.cpu_mode import CpuSyncGuard, DeviceResidentSet
from dpslice.sync.cuda_mode import CudaSyncGuard
from dpslice.sync.probe import StreamProbeGuard

__all__ = [
    "CpuSyncGuard",
    "CudaSyncGuard",
    "DeviceResidentSet",
    "StreamProbeGuard",
    "SyncEvent",
    "SyncGuard",
    "SyncMode",
    "allow_sync",
    "find_syncs",
    "no_sync",
    "resolve_mode",
]

# Tracebacks and reprs name the public home, not the private module.
for _public in (DeviceResidentSet, SyncEvent, SyncGuard):
    _public.__module__ = __name__

_GUARDS: dict[str, type[SyncGuard]] = {
    guard.mode: guard for guard in (CudaSyncGuard, StreamProbeGuard, CpuSyncGuard)
}


def resolve_mode(mode: str = "auto") -> str:
    """The concrete mode ``mode`` stands for: ``"auto"`` is ``"cuda"`` on a GPU, else ``"cpu"``.

    Raises:
        ValueError: ``mode`` is not one of ``"auto"``, ``"cuda"``, ``"probe"``, ``"cpu"``.
    """
    if mode == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if mode not in _GUARDS:
        raise ValueError(f"mode={mode!r}; choose one of 'auto', 'cuda', 'probe', 'cpu'")
    return mode


#: What ``device_resident=`` takes: a set to keep and extend, or the tensors themselves.
DeviceResident = DeviceResidentSet | Iterable[torch.Tensor]


def no_sync(
    mode: SyncMode = "auto",
    *,
    record: bool = False,
    device_resident: DeviceResident | None = None,
    read_back: bool = True,
    **options: Any,
) -> SyncGuard:
    """A guard that fails on a host-device sync: ``with no_sync():`` or ``@no_sync()``.

    Args:
        mode: ``"auto"``, ``"cuda"``, ``"probe"`` or ``"cpu"``.
        record: record syncs in ``guard.events`` instead of raising.
        device_resident: CPU-only mode: the CPU tensors that stand in for device memory
            (a :class:`DeviceResidentSet`, kept and extended, or the tensors); only reads
            of those and of what derives from them count.  ``None``: every tensor counts.
        read_back: CPU-only mode without ``device_resident``: whether a whole-tensor
            read back to the host (``tolist()``, ``.cpu()``, ``repr``, ``torch.equal``)
            counts; value reads always do.  The pytest marker and fixture pass ``False``.
        options: passed to the mode's guard (``extra_hooks`` for CUDA mode,
            ``sleep_ms`` for the probe).  The GPU modes ignore the CPU-only options.

    Raises:
        ValueError: an unknown mode.
        TypeError: ``device_resident`` holds something other than tensors.
        SyncModeUnavailableError: on entry, for a GPU mode without a GPU.
    """
    resolved = resolve_mode(mode)
    if resolved == "cpu":
        options.update(device_resident=device_resident, read_back=read_back)
    return _GUARDS[resolved](record=record, **options)


def find_syncs(
    fn: Callable[[], object],
    *,
    mode: SyncMode = "auto",
    device_resident: DeviceResident | None = None,
    **options: Any,
) -> tuple[SyncEvent, ...]:
    """Run ``fn()`` under a recording guard and return every sync it caused.

    Errors ``fn`` raises propagate, except a sync that CUDA mode could only catch by
    aborting ``fn``: that one is the last event.  Arguments and errors are
    :func:`no_sync`'s.
    """
    guard = no_sync(mode, record=True, device_resident=device_resident, **options)
    try:
        with guard:
            fn()
    except ImplicitSyncError:
        pass  # already in guard.events; fn could not run on past it
    return tuple(guard.events)
