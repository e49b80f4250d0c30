"""CPU-only mode: see, without a GPU, the operations that would sync on one.

Two torch modes work together.  A ``TorchDispatchMode`` sees aten operators:
``_local_scalar_dense`` (what ``item()``, ``int()``, ``bool()``, a tensor
slice bound, a 0-dim tensor index and a tensor ``narrow`` start all reach) and
the operators whose output size depends on the data (``nonzero``, a boolean
mask index, ``unique``, ``repeat_interleave`` without ``output_size``...).  A
``TorchFunctionMode`` sees what never reaches the dispatcher on a CPU tensor
(``tolist()``, ``.cpu()``, ``.numpy()``, ``repr``) and names the user-level
call, so one ``buf[t0:t1]`` is reported as ``Tensor.__getitem__`` rather than
as two anonymous aten calls.

False positives are kept low on purpose: an integer-tensor index,
``repeat_interleave`` with ``output_size``, ``nonzero_static``,
``index_select``, ``searchsorted``, ``cumsum`` and Python-int slicing are
not flagged.  Known misses: ``.to("cpu")`` on a tensor already on the CPU
(no copy happens there), masked assignment with a tensor value, and anything
that is not a torch call (``torch.cuda.synchronize``, events, streams,
pageable non-blocking copies); use CUDA or probe mode on a GPU for those.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from dpslice.sync._core import SyncEvent, SyncGuard, op_name, user_site

__all__ = ["CpuSyncGuard", "aten_sync_reason", "function_sync_reason"]

_aten = torch.ops.aten
_READS_VALUE = (
    "reads a device value on the host (item(), int(), bool(), a tensor slice bound or index)"
)
_DATA_SIZED = "its output size depends on the data, so the host must read a count first"

# Optional overloads are looked up by name: the set differs between torch versions.
_ATEN_SYNCS: dict[Any, str] = {
    getattr(_aten, name).default: why
    for name, why in (
        ("_local_scalar_dense", _READS_VALUE),
        ("nonzero", _DATA_SIZED),
        ("masked_select", _DATA_SIZED),
        ("_unique", _DATA_SIZED),
        ("_unique2", _DATA_SIZED),
        ("unique_dim", _DATA_SIZED),
        ("unique_consecutive", _DATA_SIZED),
        ("bincount", _DATA_SIZED),
        ("equal", "returns a Python bool computed from device data"),
        ("allclose", "returns a Python bool computed from device data"),
    )
    if hasattr(_aten, name)
}
_REPEAT_INTERLEAVE = frozenset(
    (_aten.repeat_interleave.Tensor, _aten.repeat_interleave.self_Tensor)
)
_MASK_DTYPES = (torch.bool, torch.uint8)

# User-level calls that read data on the host whatever the dispatcher sees.
_FUNCTION_SYNCS: dict[str, str] = {
    "Tensor.item": _READS_VALUE,
    "Tensor.__index__": _READS_VALUE,
    "Tensor.__int__": _READS_VALUE,
    "Tensor.__float__": _READS_VALUE,
    "Tensor.__complex__": _READS_VALUE,
    "Tensor.__bool__": _READS_VALUE,
    "Tensor.tolist": "copies every element into a Python list on the host",
    "Tensor.cpu": "copies the tensor to host memory and waits for it",
    "Tensor.numpy": "exposes the data to numpy on the host",
    "Tensor.__array__": "exposes the data to numpy on the host",
    "Tensor.__repr__": "formats the values, which copies them to the host",
    "Tensor.__format__": "formats the values, which copies them to the host",
}


def aten_sync_reason(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """Why the aten operator ``func`` would sync on CUDA with these arguments, or ``None``."""
    why = _ATEN_SYNCS.get(func)
    if why is not None:
        return why
    if func is _aten.index.Tensor:
        indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
        if any(index is not None and index.dtype in _MASK_DTYPES for index in indices):
            return "a boolean mask index selects a data-dependent number of rows"
        return None
    if func in _REPEAT_INTERLEAVE and kwargs.get("output_size") is None:
        return "without output_size the output length is a sum the host must read"
    return None


def function_sync_reason(
    name: str, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str | None:
    """Why the user-level torch call ``name`` would sync on CUDA, or ``None``."""
    why = _FUNCTION_SYNCS.get(name)
    if why is not None or func is not torch.Tensor.to:
        return why
    source = args[0]
    try:
        device, _, non_blocking, _ = torch._C._nn._parse_to(*args[1:], **kwargs)
    except (TypeError, RuntimeError):
        return None  # let the call itself report its bad arguments
    # Only a real device-to-host copy: ``x.to(some_device)`` on a CPU run is
    # usually ``x.to(buf.device)``, a no-op on the GPU too.  A non-blocking
    # copy to the CPU gets a pinned output and does not wait.
    if device is not None and device.type == "cpu" and source.device.type != "cpu":
        return None if non_blocking else "copies the tensor to host memory and waits for it"
    return None


class _FunctionWatch(TorchFunctionMode):
    """Names the outermost torch call and reports the syncs dispatch cannot see."""

    def __init__(self, guard: CpuSyncGuard) -> None:
        super().__init__()
        self.guard = guard
        self.current: str | None = None
        self.reported = False

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        __tracebackhide__ = True
        kwargs = kwargs or {}
        name = op_name(func)
        why = function_sync_reason(name, func, args, kwargs)
        # While func runs this mode is popped, so calls seen here are outermost.
        self.current, self.reported = name, False
        try:
            if why is not None and self.guard.owns_reports:
                self.reported = True
                self.guard.report(SyncEvent(name, *user_site(), "cpu", why))
            return func(*args, **kwargs)
        finally:
            self.current, self.reported = None, False


class _DispatchWatch(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Reports the aten operators that read device data or have data-sized outputs."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # Newer torch wraps every dispatch mode in torch._disable_dynamo, which
        # imports all of torch._dynamo (seconds) at the first op.  This mode
        # only observes and is never compiled, so it opts out of the wrapper.
        return False

    def __init__(self, guard: CpuSyncGuard, functions: _FunctionWatch) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.guard = guard
        self.functions = functions

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        __tracebackhide__ = True
        kwargs = kwargs or {}
        why = aten_sync_reason(func, args, kwargs)
        # One user call that the function watch already reported is one sync.
        if why is not None and not self.functions.reported and self.guard.owns_reports:
            op = self.functions.current or str(func)
            self.guard.report(SyncEvent(op, *user_site(), "cpu", f"{func} {why}"))
        return func(*args, **kwargs)


class CpuSyncGuard(SyncGuard):
    """Flags operations that would sync on CUDA, on any device, without a GPU.

    Args:
        record: record every sync instead of raising at the first.
    """

    mode = "cpu"

    def _arm(self) -> None:
        functions = _FunctionWatch(self)
        self._modes = ExitStack()
        self._modes.enter_context(functions)
        self._modes.enter_context(_DispatchWatch(self, functions))

    def _disarm(self, error: BaseException | None) -> SyncEvent | None:
        self._modes.close()
        return None
