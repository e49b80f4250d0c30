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

Which tensors stand for device memory
-------------------------------------
By default every tensor counts as if it lived on the GPU.  Code that also
holds real host data (vLLM keeps its per-rank token counts in an int32 CPU
tensor; reading it never waits for a GPU) is judged right only if the guard
knows which CPU tensors stand in for device memory: ``device_resident=``
(a :class:`DeviceResidentSet` or the tensors themselves).  The dispatch watch
then tracks provenance: the outputs of an operator with a device-resident
tensor input are device-resident too (views, slices, ``cumsum``, ``3 + t``,
``zeros_like``...), and a sync-class operation is reported only when it reads
a device-resident tensor.  Copying device-resident data into a host tensor
(``host.copy_(t)``, ``host[:] = t``) is the device-to-host copy it stands for,
and is reported.  Residency is recorded per tensor and per storage, weakly,
so a view, ``.data`` or an in-place write through a view share their base's.
Tensors made inside the block from Python data (``torch.tensor(list)``,
``torch.zeros(n)``) are host tensors: on a CPU-only run nothing tells
``device=buf.device`` apart from ``device="cpu"``.

A whole test under one guard (the ``no_sync`` marker and fixture) reads its
own results back with ``tolist()``, ``torch.equal`` or ``repr``; on a GPU those
are syncs only where the tensor lives on the device.  ``read_back=False``
counts such whole-tensor reads only on device-resident tensors, while a value
read (a Python number out of a tensor: the bound that syncs) counts on any.

Threads and tasks: one pair of watches per thread, shared by the CPU-mode
guards armed there (see :mod:`dpslice.sync._modes`); each call is reported
to the innermost guard of its own context.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from dpslice._numpy_notice import torch
from dpslice.sync._core import (
    SyncEvent,
    SyncGuard,
    active_guards,
    innermost_guard,
    op_name,
    sync_allowed,
    user_site,
)
from dpslice.sync._modes import ThreadWatches

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


#: Whole-tensor reads back to the host: how a test looks at its results.  With
#: ``read_back=False`` they count only on device-resident tensors.
_READ_BACK_FUNCTIONS = frozenset(
    (
        "Tensor.tolist",
        "Tensor.cpu",
        "Tensor.numpy",
        "Tensor.__array__",
        "Tensor.__repr__",
        "Tensor.__format__",
        "Tensor.to",
    )
)
_READ_BACK_ATEN = frozenset(
    getattr(_aten, name).default for name in ("equal", "allclose") if hasattr(_aten, name)
)


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


_D2H_COPY = "copies device memory into host memory; the host waits for the copy"


class DeviceResidentSet:
    """The CPU tensors that stand in for device memory, and every tensor derived from them.

    Give one to :class:`CpuSyncGuard` (``device_resident=``) and the guard
    reports a sync only where device-resident data is read.  While a guard
    holds it, the outputs of every operator with a device-resident input are
    added to it; pass the same set to a later guard to keep that provenance
    (bounds computed under one guard, used under the next).

    Membership is weak (it keeps no tensor alive) and by tensor and by
    storage: a view, ``.data`` or another alias of a member is a member while
    a member on that memory lives.

    Args:
        tensors: the tensors that stand for device memory (e.g. the GPU
            count tensor and the gathered buffer).

    Raises:
        TypeError: an item of ``tensors`` is not a ``torch.Tensor``.
    """

    def __init__(self, tensors: Iterable[torch.Tensor] = ()) -> None:
        # Keyed by id, each entry dropped by its weakref's callback when the
        # tensor dies (so a reused id never matches).  weakref.WeakSet would
        # compare tensors with ==, which is elementwise for tensors.
        self._tensors: dict[int, weakref.ref[torch.Tensor]] = {}
        # Keyed by the address of the memory, each entry a member living on it,
        # which keeps the address from being reused.  Not weak references to
        # the storage objects: torch 2.1 crashes collecting those.
        self._storages: dict[int, weakref.ref[torch.Tensor]] = {}
        for tensor in tensors:
            self.add(tensor)

    def add(self, tensor: torch.Tensor) -> None:
        """Declare ``tensor`` (and its storage) device-resident."""
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(
                f"device_resident holds tensors that stand in for device memory; got "
                f"{type(tensor).__name__}: pass torch.Tensor objects (leave out a None)"
            )
        _remember(self._tensors, id(tensor), tensor)
        address = _memory(tensor)
        if address is not None:
            _remember(self._storages, address, tensor)

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, torch.Tensor):
            return False
        if id(item) in self._tensors:
            return True
        address = _memory(item)
        if address is None or address not in self._storages:
            return False
        return self._storages[address]() is not None

    def any_of(self, tensors: Iterable[torch.Tensor]) -> bool:
        """Whether any of ``tensors`` is device-resident."""
        return any(tensor in self for tensor in tensors)

    def __repr__(self) -> str:
        return f"<DeviceResidentSet of {len(self._tensors)} live tensors>"


def _remember(table: dict[int, weakref.ref[torch.Tensor]], key: int, tensor: torch.Tensor) -> None:
    known = table.get(key)
    if known is not None and known() is not None:
        return

    def forget(dead: weakref.ref[torch.Tensor]) -> None:
        if table.get(key) is dead:
            table.pop(key, None)

    table[key] = weakref.ref(tensor, forget)


def _memory(tensor: torch.Tensor) -> int | None:
    """The address of the tensor's storage, or ``None`` (no memory, or storage-less tensors).

    Every alias of the memory (a view, ``.data``) shares it.  Empty storages
    all sit at address 0 and hold nothing to read, so they have none.
    """
    try:
        # Past the function watch: this bookkeeping is no user call to name.
        with _NO_TORCH_FUNCTION():
            address = tensor.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError, TypeError):
        return None
    return address or None


_NO_TORCH_FUNCTION: Any = torch._C.DisableTorchFunction


def _tensors_in(tree: object) -> list[torch.Tensor]:
    """Every tensor in an operator's arguments or results (tuples, lists, dicts of them).

    Hand-rolled: torch's pytree flattening cost more than the operators it
    watched, on every operator while provenance is tracked.
    """
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


def _reporter() -> CpuSyncGuard | None:
    """The CPU-mode guard a sync seen now belongs to: innermost here, and not allowed."""
    guard = innermost_guard()
    if isinstance(guard, CpuSyncGuard) and not sync_allowed():
        return guard
    return None


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
            guard = _reporter() if why is not None else None
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

    With a :class:`DeviceResidentSet` in play it also carries provenance from
    each operator's inputs to its outputs.
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
            guard = _reporter()
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


def _make_watches() -> tuple[_FunctionWatch, _DispatchWatch]:
    functions = _FunctionWatch()
    return functions, _DispatchWatch(functions)


_WATCHES = ThreadWatches(_make_watches)


class CpuSyncGuard(SyncGuard):
    """Flags operations that would sync on CUDA, on any device, without a GPU.

    Args:
        record: record every sync instead of raising at the first.
        device_resident: the CPU tensors that stand in for device memory, as a
            :class:`DeviceResidentSet` (kept, and added to as the block derives
            tensors from its members) or an iterable of tensors.  ``None``
            (default): every tensor counts as device memory.
        read_back: without ``device_resident``, whether a whole tensor read
            back to the host (``tolist()``, ``.cpu()``, ``.numpy()``, ``repr``,
            ``torch.equal``, ``allclose``) counts.  ``False`` is how a test
            guarded as a whole is judged (the ``no_sync`` marker and fixture):
            the test reads its results back that way, and a CPU-only run cannot
            tell its host tensors from device memory.  A value read (``item``,
            ``int``, ``bool``, a tensor slice bound or index) and a data-sized
            output count either way.

    Raises:
        TypeError: ``device_resident`` holds something other than tensors.
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
        """Whether an operation on ``inputs`` reads device memory, as this guard sees it.

        Without ``device_resident`` every operation does, but a whole-tensor
        read back (``read_back``) only when the guard counts those; with it,
        one whose ``inputs`` hold a device-resident tensor.
        """
        if self.device_resident is None:
            return self.read_back or not read_back
        return any(item in self.device_resident for item in inputs)

    def _arm(self) -> None:
        _WATCHES.acquire()

    def _disarm(self, error: BaseException | None) -> SyncEvent | None:
        _WATCHES.release()
        return None
