"""Stream-probe mode: ground truth on a GPU, by asking the stream whether the host waited.

A calibrated ``torch.cuda._sleep`` kernel keeps the stream busy; an idle stream
right after a torch call (a ``TorchFunctionMode``) or a C call into torch
(``sys.setprofile``) means that call waited.  It raises at block exit, because it
only knows afterwards.  docs/sync.md gives its limits (warm code up first).
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from types import FrameType
from typing import Any

from torch.overrides import TorchFunctionMode

from dpslice._numpy_notice import torch
from dpslice.errors import SyncModeUnavailableError
from dpslice.sync._core import (
    TORCH_DIR,
    SyncEvent,
    SyncGuard,
    allow_sync,
    is_internal,
    is_machinery,
    op_name,
    sync_allowed,
    user_site,
)

__all__ = ["DEFAULT_SLEEP_MS", "StreamProbeGuard", "cycles_per_ms"]

#: How long each probe kernel keeps the stream busy.
DEFAULT_SLEEP_MS = 20.0
_CALIBRATION_CYCLES = 20_000_000
_WHY = "the stream went idle during this call: the host waited for queued GPU work"

# torch leaves these untyped; typed aliases keep the calls below checked.
_sleep: Callable[[int], None] = torch.cuda._sleep
_Event: Callable[..., Any] = torch.cuda.Event


@functools.cache  # once per device
def cycles_per_ms(device_index: int) -> float:
    """GPU clock cycles per millisecond of ``torch.cuda._sleep``: the fastest of three runs."""
    best = 0.0
    with allow_sync(), torch.cuda.device(device_index):
        _sleep(1000)  # loads the kernel outside the timed runs
        for _ in range(3):
            start = _Event(enable_timing=True)
            end = _Event(enable_timing=True)
            start.record()
            _sleep(_CALIBRATION_CYCLES)
            end.record()
            end.synchronize()
            best = max(best, _CALIBRATION_CYCLES / start.elapsed_time(end))
    return best


def _is_torch_builtin(function: object) -> bool:
    module = getattr(function, "__module__", None)
    if module is None:  # a bound C method: ask its object's type
        module = type(getattr(function, "__self__", None)).__module__
    return isinstance(module, str) and module.startswith("torch")


def _api_name(frame: FrameType, builtin: object) -> str:
    """The outermost torch function the user called that led to ``builtin``."""
    api = None
    current: FrameType | None = frame
    while current is not None and is_internal(current.f_code.co_filename):
        if current.f_code.co_filename.startswith(TORCH_DIR):
            api = current
        current = current.f_back
    if api is None:
        return op_name(builtin)
    qualname = getattr(api.f_code, "co_qualname", api.f_code.co_name)
    return f"{api.f_globals.get('__name__', '?')}.{qualname}"


class _ProbeWatch(TorchFunctionMode):
    def __init__(self, guard: StreamProbeGuard) -> None:
        super().__init__()
        self.guard = guard

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        __tracebackhide__ = True
        guard = self.guard
        guard.top_up()
        guard.depth += 1
        try:
            result = func(*args, **(kwargs or {}))
        finally:
            guard.depth -= 1
        guard.check(op_name(func), user_site())
        return result


class StreamProbeGuard(SyncGuard):
    """Detects a host wait by the GPU stream's state; needs a GPU.

    Args:
        record: record every sync instead of raising at block exit.
        sleep_ms: how long each probe kernel runs; longer tolerates slower host code
            between torch calls, shorter makes each block cheaper.

    Raises:
        SyncModeUnavailableError: on entry, without a CUDA device or inside CUDA-graph capture.
    """

    mode = "probe"
    raises_at_exit = True

    def __init__(self, *, record: bool = False, sleep_ms: float = DEFAULT_SLEEP_MS) -> None:
        if not sleep_ms > 0:
            raise ValueError(f"sleep_ms={sleep_ms!r}; the probe kernel must run for some time")
        super().__init__(record=record)
        self.sleep_ms = float(sleep_ms)

    def _arm(self) -> None:
        if not torch.cuda.is_available():
            raise SyncModeUnavailableError(
                "probe mode needs a CUDA device and none is available here; use mode='cpu'"
            )
        if torch.cuda.is_current_stream_capturing():
            raise SyncModeUnavailableError(
                "probe mode cannot run inside CUDA-graph capture: nothing executes during "
                "capture, so the stream's state says nothing; probe the eager code instead"
            )
        self._stream = torch.cuda.current_stream()
        self._cycles = max(1, round(cycles_per_ms(torch.cuda.current_device()) * self.sleep_ms))
        self._sleep_s = self.sleep_ms / 1000
        self._drains_at = 0.0
        self.depth = 0
        self._enqueue()
        self._modes = ExitStack()
        self._modes.enter_context(_ProbeWatch(self))
        self._previous_profile = sys.getprofile()
        sys.setprofile(self._profile)

    def _disarm(self, error: BaseException | None) -> SyncEvent | None:
        sys.setprofile(self._previous_profile)
        self._modes.close()
        # A queue that drained this early cannot have drained by itself.
        early = time.perf_counter() < self._drains_at - self._sleep_s / 4
        if error is None and early and self._stream.query() and not sync_allowed():
            where = user_site()
            self.events.append(SyncEvent("(a wait outside any torch call)", *where, "probe", _WHY))
        with allow_sync():
            self._stream.synchronize()  # the probe's own kernels; intended
        return None

    def _enqueue(self) -> None:
        _sleep(self._cycles)
        self._drains_at = max(self._drains_at, time.perf_counter()) + self._sleep_s

    # top_up and check call into torch themselves (a sleep kernel, a query);
    # ``depth`` keeps the profiler from probing those calls as if they were the user's.

    def top_up(self) -> None:
        """Keep at least half a sleep queued before the next call starts."""
        self.depth += 1
        try:
            if time.perf_counter() > self._drains_at - self._sleep_s / 2:
                self._enqueue()
        finally:
            self.depth -= 1

    def check(self, op: str, where: tuple[str, int]) -> None:
        """After a call: an idle stream means the call waited."""
        self.depth += 1
        try:
            if not self._stream.query():
                return
            if StreamProbeGuard.owner() is self:
                self.report(SyncEvent(op, *where, "probe", _WHY))
            self._drains_at = 0.0
            self._enqueue()
        finally:
            self.depth -= 1

    def _profile(self, frame: FrameType, event: Any, arg: Any) -> None:
        if self._previous_profile is not None:
            self._previous_profile(frame, event, arg)
        if (
            self.depth
            or event not in ("c_call", "c_return")
            or is_machinery(frame.f_code.co_filename)
            or not _is_torch_builtin(arg)
        ):
            return
        if event == "c_call":
            self.top_up()
        else:
            self.check(_api_name(frame, arg), user_site(frame))
