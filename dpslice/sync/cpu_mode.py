"""CPU-only mode: see, without a GPU, the operations that would sync on one.

A ``TorchDispatchMode`` sees the aten operators that read a value on the host or
whose output size depends on the data; a ``TorchFunctionMode`` sees what never
reaches the dispatcher on a CPU tensor (``tolist()``, ``.cpu()``, ``repr``) and
names the user-level call.  docs/sync.md says what is flagged and missed, how
``device_resident=`` tracks provenance, and how ``read_back`` judges a whole test.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from weakref import WeakValueDictionary

from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from dpslice._numpy_notice import torch
from dpslice.sync._core import (
    SyncEvent,
    SyncGuard,
    ThreadWatches,
    active_guards,
    op_name,
    user_site,
)

__all__ = ["CpuSyncGuard", "DeviceResidentSet", "aten_sync_reason", "function_sync_reason"]

_aten = torch.ops.aten
_READS_VALUE = (
    "reads a device value on the host (item(), int(), bool(), a tensor slice bound or index)"
)
_DATA_SIZED = "its output size depends on the data, so the host must read a count first"
_EQUALS = "returns a Python bool computed from device data"

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
        ("equal", _EQUALS),
        ("allclose", _EQUALS),
    )
    if hasattr(_aten, name)
}
_REPEAT_INTERLEAVE = frozenset(
    (_aten.repeat_interleave.Tensor, _aten.repeat_interleave.self_Tensor)
)
_MASK_DTYPES = (torch.bool, torch.uint8)

_TO_HOST = "copies the tensor to host memory and waits for it"
_NUMPY = "exposes the data to numpy on the host"
_FORMATS = "formats the values, which copies them to the host"

#: Whole-tensor reads back to the host (how a test looks at its results): with
#: ``read_back=False`` they count only on device-resident tensors.
_READ_BACKS: dict[str, str] = {
    "Tensor.tolist": "copies every element into a Python list on the host",
    "Tensor.cpu": _TO_HOST,
    "Tensor.numpy": _NUMPY,
    "Tensor.__array__": _NUMPY,
    "Tensor.__repr__": _FORMATS,
    "Tensor.__format__": _FORMATS,
}
_READ_BACK_FUNCTIONS = frozenset((*_READ_BACKS, "Tensor.to"))
_READ_BACK_ATEN = frozenset(func for func, why in _ATEN_SYNCS.items() if why is _EQUALS)

# User-level calls that read data on the host whatever the dispatcher sees.
_VALUE_READS = ("item", "__index__", "__int__", "__float__", "__complex__", "__bool__")
_FUNCTION_SYNCS = {**{f"Tensor.{name}": _READS_VALUE for name in _VALUE_READS}, **_READ_BACKS}


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
    # Only a real device-to-host copy (``x.to(buf.device)`` is a no-op on the GPU
    # too); a non-blocking one gets a pinned output and does not wait.
    if device is not None and device.type == "cpu" and source.device.type != "cpu":
        return None if non_blocking else _TO_HOST
    return None


_D2H_COPY = "copies device memory into host memory; the host waits for the copy"


class DeviceResidentSet:
    """The CPU tensors that stand in for device memory, and every tensor derived from them.

    While a guard holds it, the outputs of every operator with a member input are
    added; pass the same set to a later guard to keep that provenance.  Membership
    is weak, and by tensor and by storage (a view or ``.data`` of a member is one).

    Args:
        tensors: the tensors that stand for device memory.

    Raises:
        TypeError: an item of ``tensors`` is not a ``torch.Tensor``.
    """

    def __init__(self, tensors: Iterable[torch.Tensor] = ()) -> None:
        # By id (a weakref.WeakSet would compare tensors with ==).
        self._tensors: WeakValueDictionary[int, torch.Tensor] = WeakValueDictionary()
        # By memory address, a member living there (torch 2.1 crashes on weak storages).
        self._storages: WeakValueDictionary[int, torch.Tensor] = WeakValueDictionary()
        for tensor in tensors:
            self.add(tensor)

    def add(self, tensor: torch.Tensor) -> None:
        """Declare ``tensor`` (and its storage) device-resident."""
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(
                f"device_resident holds tensors that stand in for device memory; got "
                f"{type(tensor).__name__}: pass torch.Tensor objects (leave out a None)"
            )
        # setdefault keeps a live member at the key and replaces a dead one.
        self._tensors.setdefault(id(tensor), tensor)
        address = _memory(tensor)
        if address is not None:
            self._storages.setdefault(address, tensor)

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, torch.Tensor):
            return False
        if id(item) in self._tensors:
            return True
        address = _memory(item)
        return address is not None and address in self._storages

    def any_of(self, tensors: Iterable[torch.Tensor]) -> bool:
        """Whether any of ``tensors`` is device-resident."""
        return any(tensor in self for tensor in tensors)

    def __repr__(self) -> str:
        return f"<DeviceResidentSet of {len(self._tensors)} live tensors>"


def _memory(tensor: torch.Tensor) -> int | None:
    """The address of the tensor's storage, or ``None`` (no memory, or no storage)."""
    try:
        # Past the function watch: this bookkeeping is no user call to name.
        with _NO_TORCH_FUNCTION():
            address = tensor.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError, TypeError):
        return None
    return address or None


_NO_TORCH_FUNCTION: Any = torch._C.DisableTorchFunction


def _tensors_in(tree: object) -> list[torch.Tensor]:
    """Every tensor in an operator's arguments or results (hand-rolled: pytree cost more)."""
    found: list[torch.Tensor] = []
    pending = [tree]
    while pending:
        item = pending.pop()
        if isinstance(item, torch.Tensor):
            found.append(item)
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.values())
    return found


def _trackers() -> list[DeviceResidentSet]:
    """The provenance sets of the CPU-mode guards active in this context."""
    return [
        guard.device_resident
        for guard in active_guards()
        if isinstance(guard, CpuSyncGuard) and guard.device_resident is not None
    ]


class _FunctionWatch(TorchFunctionMode):
    """Names the outermost torch call and reports the syncs dispatch cannot see."""

    def __init__(self) -> None:
        super().__init__()
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
        # While func runs this mode is popped, so calls seen here are outermost.
        self.current, self.reported = name, False
        try:
            why = function_sync_reason(name, func, args, kwargs)
            guard = CpuSyncGuard.owner() if why is not None else None
            # Every call named in the table is a method: its data is args[0].
            whole = name in _READ_BACK_FUNCTIONS
            if guard is not None and guard.reads_device(args[:1], read_back=whole):
                self.reported = True
                guard.report(SyncEvent(name, *user_site(), "cpu", why or ""))
            return func(*args, **kwargs)
        finally:
            self.current, self.reported = None, False


class _DispatchWatch(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Reports the aten operators that read device data or have data-sized outputs.

    With a :class:`DeviceResidentSet` in play it also carries provenance to the outputs.
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # Newer torch wraps every dispatch mode in torch._disable_dynamo, which
        # imports all of torch._dynamo (seconds) at the first op.  This mode
        # only observes and is never compiled, so it opts out of the wrapper.
        return False

    def __init__(self, functions: _FunctionWatch) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
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
        trackers = _trackers()
        inputs = _tensors_in((args, kwargs)) if trackers else []
        why = aten_sync_reason(func, args, kwargs)
        # One user call that the function watch already reported is one sync.
        if (why is not None or func is _aten.copy_.default) and not self.functions.reported:
            guard = CpuSyncGuard.owner()
            if guard is None:
                why = None
            elif why is not None:
                whole = func in _READ_BACK_ATEN
                why = f"{func} {why}" if guard.reads_device(inputs, read_back=whole) else None
            elif guard.device_resident is not None:
                # dst <- src: device data written into host memory.
                destination, source = args[0], args[1]
                if source in guard.device_resident and destination not in guard.device_resident:
                    why = f"{func} {_D2H_COPY}"
            if guard is not None and why is not None:
                op = self.functions.current or str(func)
                guard.report(SyncEvent(op, *user_site(), "cpu", why))
        result = func(*args, **kwargs)
        # A copy leaves its destination where it was: into host memory it is
        # the device-to-host copy above, into device memory it already counts.
        if trackers and inputs and func is not _aten.copy_.default:
            outputs: list[torch.Tensor] | None = None
            for resident in trackers:
                if resident.any_of(inputs):
                    outputs = _tensors_in(result) if outputs is None else outputs
                    for output in outputs:
                        resident.add(output)
        return result


_WATCHES = ThreadWatches(lambda: (functions := _FunctionWatch(), _DispatchWatch(functions)))


class CpuSyncGuard(SyncGuard):
    """Flags operations that would sync on CUDA, on any device, without a GPU.

    Arguments and errors are :func:`dpslice.sync.no_sync`'s.
    """

    mode = "cpu"

    def __init__(
        self,
        *,
        record: bool = False,
        device_resident: DeviceResidentSet | Iterable[torch.Tensor] | None = None,
        read_back: bool = True,
    ) -> None:
        super().__init__(record=record)
        self.read_back = read_back
        if device_resident is None or isinstance(device_resident, DeviceResidentSet):
            self.device_resident = device_resident
        else:
            self.device_resident = DeviceResidentSet(device_resident)

    def reads_device(self, inputs: Iterable[object], *, read_back: bool = False) -> bool:
        """Whether an operation on ``inputs`` (a whole-tensor read if ``read_back``) reads it."""
        if self.device_resident is None:
            return self.read_back or not read_back
        return any(item in self.device_resident for item in inputs)

    def _arm(self) -> None:
        _WATCHES.acquire()

    def _disarm(self, error: BaseException | None) -> SyncEvent | None:
        _WATCHES.release()
        return None
