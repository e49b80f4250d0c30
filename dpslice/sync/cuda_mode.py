"""CUDA mode: torch's sync debug mode in ``"error"``, plus hooks for what it misses.

The debug mode misses ``synchronize()`` of the device, events and streams, and
pageable non-blocking copies; this mode hooks those while armed.  The debug mode
is process-wide: guards arm it through a refcount under a lock, and report only
syncs seen in their own context (docs/sync.md, "Nesting, threads, asyncio tasks").
"""

from __future__ import annotations

import functools
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

from torch.overrides import TorchFunctionMode

from dpslice._numpy_notice import torch
from dpslice.errors import SyncModeUnavailableError
from dpslice.sync._core import (
    ALLOW_LISTENERS,
    SyncEvent,
    SyncGuard,
    ThreadWatches,
    active_guards,
    allow_sync,
    innermost_guard,
    op_name,
    sync_allowed,
    traceback_site,
    user_site,
)

__all__ = ["DEBUG_MODE_ERROR_TEXT", "CudaSyncGuard", "pageable_copy_reason"]

#: What torch's sync debug mode says when it stops a synchronising call.
DEBUG_MODE_ERROR_TEXT = "called a synchronizing CUDA operation"
_ERROR = 2
_DEBUG_MODE_WHY = "torch's sync debug mode stopped a synchronising memcpy or stream synchronize"


class _DebugModeSwitch:
    """The one owner of ``torch.cuda``'s sync debug mode; a seam the tests replace."""

    def available(self) -> bool:
        return bool(torch.cuda.is_available())

    def get(self) -> int:
        return int(torch.cuda.get_sync_debug_mode())

    def set(self, mode: int) -> None:
        # torch may announce the prototype feature, which must not trip -W error.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            torch.cuda.set_sync_debug_mode(mode)


_switch = _DebugModeSwitch()


@dataclass
class _Armed:
    """Process-wide arming state; only touched with ``_LOCK`` held."""

    guards: int = 0
    allow_scopes: int = 0
    previous: int = 0
    current: int | None = None
    hooks: list[tuple[Any, str, Any]] = field(default_factory=list)


_LOCK = threading.Lock()
_STATE = _Armed()


def _apply() -> None:
    wanted = _ERROR if _STATE.allow_scopes == 0 else _STATE.previous
    if _STATE.current != wanted:
        _switch.set(wanted)
        _STATE.current = wanted


def _on_allow(delta: int) -> None:
    with _LOCK:
        _STATE.allow_scopes += delta
        if _STATE.guards > 0:
            _apply()


ALLOW_LISTENERS.append(_on_allow)


def _install_hooks() -> None:
    """Wrap the waits the debug mode misses; ``_STATE.hooks`` keeps what to put back."""
    targets: list[tuple[Any, str, str, str]] = [
        (torch.cuda, "synchronize", "torch.cuda.synchronize", "waits for all the device's work"),
        (torch.cuda.Event, "synchronize", "torch.cuda.Event.synchronize", "waits for the event"),
        (torch.cuda.Stream, "synchronize", "torch.cuda.Stream.synchronize", "waits for the stream"),
    ]
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and hasattr(accelerator, "synchronize"):
        targets.append(
            (accelerator, "synchronize", "torch.accelerator.synchronize", "waits for the device")
        )
    for owner, attribute, op, why in targets:
        # From the class's own dict, so restoring puts back exactly what was there.
        namespace = vars(owner) if isinstance(owner, type) else None
        original = namespace.get(attribute) if namespace is not None else getattr(owner, attribute)
        if original is None:
            continue  # this torch defines the method elsewhere; nothing to wrap
        _STATE.hooks.append((owner, attribute, original))
        setattr(owner, attribute, _make_hook(original, op, why))


def _make_hook(original: Any, op: str, why: str) -> Any:
    @functools.wraps(original)
    def hook(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        guard = innermost_guard()
        if isinstance(guard, CudaSyncGuard) and not guard.extra_hooks:
            return original(*args, **kwargs)  # measuring the debug mode alone
        if isinstance(guard, CudaSyncGuard) and not sync_allowed():
            guard.report(SyncEvent(op, *user_site(), "cuda", why))
        if any(isinstance(active, CudaSyncGuard) for active in active_guards()):
            # Reported above (or not this guard's to report): the debug mode,
            # which also watches stream syncs, must not stop it a second time.
            with allow_sync():
                return original(*args, **kwargs)
        return original(*args, **kwargs)

    return hook


def _non_blocking(args: tuple[Any, ...], kwargs: dict[str, Any], position: int) -> bool:
    return bool(kwargs.get("non_blocking", args[position] if len(args) > position else False))


def _pageable(tensor: torch.Tensor) -> bool:
    return tensor.device.type == "cpu" and not tensor.is_pinned()


def pageable_copy_reason(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """Why a ``to``/``cuda``/``copy_`` call is a non-blocking copy that still waits, or ``None``.

    Only pinned host memory avoids the wait; a non-blocking ``.to("cpu")`` gets a pinned output.
    """
    h2d = "non_blocking copy from pageable host memory: the host waits while the driver stages it"
    if func is torch.Tensor.to:
        try:
            device, _, non_blocking, _ = torch._C._nn._parse_to(*args[1:], **kwargs)
        except (TypeError, RuntimeError):
            return None  # let the call itself report its bad arguments
        source = args[0]
        if non_blocking and device is not None and device.type == "cuda" and _pageable(source):
            return h2d
    elif func is torch.Tensor.cuda:
        if _non_blocking(args, kwargs, 2) and _pageable(args[0]):
            return h2d
    elif func is torch.Tensor.copy_ and _non_blocking(args, kwargs, 2):
        destination, source = args[0], args[1]
        if destination.device.type == "cuda" and _pageable(source):
            return h2d
        if source.device.type == "cuda" and _pageable(destination):
            return "non_blocking copy into pageable host memory: the host waits for it to finish"
    return None


class _CudaWatch(TorchFunctionMode):
    """Names the torch call that tripped the debug mode, and checks non-blocking copies."""

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        __tracebackhide__ = True
        kwargs = kwargs or {}
        owner = CudaSyncGuard.owner()
        if owner is not None and owner.extra_hooks:
            why = pageable_copy_reason(func, args, kwargs)
            if why is not None:
                owner.report(SyncEvent(op_name(func), *user_site(), "cuda", why))
        try:
            return func(*args, **kwargs)
        except RuntimeError as error:
            if DEBUG_MODE_ERROR_TEXT not in str(error):
                raise
            if owner is not None:
                event = SyncEvent(op_name(func), *user_site(), "cuda", _DEBUG_MODE_WHY)
                owner.report(event, cause=error)
        # Not raised: the debug mode stopped the op before it ran; run it relaxed.
        with allow_sync():
            return func(*args, **kwargs)


_WATCHES = ThreadWatches(lambda: (_CudaWatch(),))


class CudaSyncGuard(SyncGuard):
    """Fails on any host-device sync on a CUDA device (needs a GPU).

    Args:
        record: record every sync instead of raising at the first.
        extra_hooks: also catch what the debug mode misses; ``False`` measures it alone.

    Raises:
        SyncModeUnavailableError: on entry, where no CUDA device exists.
    """

    mode = "cuda"

    def __init__(self, *, record: bool = False, extra_hooks: bool = True) -> None:
        super().__init__(record=record)
        self.extra_hooks = extra_hooks

    def _arm(self) -> None:
        if not _switch.available():
            raise SyncModeUnavailableError(
                "CUDA mode needs a CUDA device and none is available here; use mode='cpu' "
                "(CPU-only mode) or mode='auto', which picks it without a GPU"
            )
        with _LOCK:
            if _STATE.guards == 0:
                _STATE.previous = _switch.get()
                _STATE.current = _STATE.previous
                _install_hooks()
            _STATE.guards += 1
            _apply()
        _WATCHES.acquire()

    def _disarm(self, error: BaseException | None) -> SyncEvent | None:
        _WATCHES.release()
        with _LOCK:
            _STATE.guards -= 1
            if _STATE.guards <= 0:
                while _STATE.hooks:
                    owner, attribute, original = _STATE.hooks.pop()
                    setattr(owner, attribute, original)
                _switch.set(_STATE.previous)
                _STATE.current = None
        if isinstance(error, RuntimeError) and DEBUG_MODE_ERROR_TEXT in str(error):
            # Fired outside any torch call the watch could name (a C++ extension, say).
            where = traceback_site(error.__traceback__)
            return SyncEvent("(a call outside torch's Python API)", *where, "cuda", _DEBUG_MODE_WHY)
        return None
