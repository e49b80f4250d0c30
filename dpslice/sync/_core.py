"""What every sync guard shares: the event, ``allow_sync``, the user's line, and torch modes.

Guards nest; in one context the innermost active guard owns what is seen, and
syncs inside :func:`allow_sync` are reported by nobody.
"""

from __future__ import annotations

import copy
import functools
import inspect
import linecache
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any, ClassVar, Literal, TypeVar

from torch.utils._python_dispatch import TorchDispatchMode

from dpslice._numpy_notice import torch
from dpslice.errors import ImplicitSyncError, SyncError

#: ``"auto"`` picks ``"cuda"`` where a CUDA device exists, else ``"cpu"``.
SyncMode = Literal["auto", "cuda", "probe", "cpu"]

_F = TypeVar("_F", bound=Callable[..., Any])
_G = TypeVar("_G", bound="SyncGuard")

# The guard machinery is this package, every file of it; a reported line is
# never one of these, nor one of torch's.  (Code that merely uses the guards
# lives elsewhere.)
_HERE = os.path.dirname(os.path.abspath(__file__)) + os.sep
TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep


@dataclass(frozen=True)
class SyncEvent:
    """One synchronisation a guard saw: which operation, where the user wrote it, and why."""

    op: str
    filename: str
    lineno: int
    mode: str
    why: str = ""

    @property
    def where(self) -> str:
        return f"{self.filename}:{self.lineno}"

    @property
    def source(self) -> str:
        """The user's line of code, stripped, or ``""`` where it cannot be read."""
        return linecache.getline(self.filename, self.lineno).strip()

    def details(self) -> str:
        """The source line and the reason, indented under a heading."""
        lines = [f"    {self.source}"] if self.source else []
        if self.why:
            lines.append(f"  why: {self.why}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return "\n".join(filter(None, [f"{self.op} at {self.where}", self.details()]))


# Which guards are active in this context, innermost last, and how many
# allow_sync() scopes are open in it.  ContextVars, so threads and asyncio
# tasks each see their own.
_GUARDS: ContextVar[tuple[SyncGuard, ...]] = ContextVar("dpslice_sync_guards", default=())
_ALLOWED: ContextVar[int] = ContextVar("dpslice_sync_allowed", default=0)

#: Called with +1 on entering and -1 on leaving any allow_sync() scope; CUDA
#: mode registers here to relax its process-wide debug mode.
ALLOW_LISTENERS: list[Callable[[int], None]] = []


def active_guards() -> tuple[SyncGuard, ...]:
    """The guards active in this context, outermost first."""
    return _GUARDS.get()


def innermost_guard() -> SyncGuard | None:
    guards = _GUARDS.get()
    return guards[-1] if guards else None


def sync_allowed() -> bool:
    """Whether this context is inside :func:`allow_sync`."""
    return _ALLOWED.get() > 0


@contextmanager
def allow_sync() -> Iterator[None]:
    """Mark a sync as intended: no guard reports what happens inside.

    Usable as ``with allow_sync():`` and ``@allow_sync()``.  In CUDA mode it relaxes
    the process-global debug mode for every thread while open (docs/sync.md).
    """
    token = _ALLOWED.set(_ALLOWED.get() + 1)
    for listener in ALLOW_LISTENERS:
        listener(+1)
    try:
        yield
    finally:
        for listener in reversed(ALLOW_LISTENERS):
            listener(-1)
        _ALLOWED.reset(token)


def is_machinery(filename: str) -> bool:
    return filename.startswith(_HERE)


def is_internal(filename: str) -> bool:
    return is_machinery(filename) or filename.startswith((TORCH_DIR, "<frozen"))


def user_site(frame: FrameType | None = None) -> tuple[str, int]:
    """``(filename, lineno)`` of the innermost frame outside torch and the guards."""
    current: FrameType | None = frame if frame is not None else sys._getframe(1)
    while current is not None:
        filename = current.f_code.co_filename
        if not is_internal(filename):
            return filename, current.f_lineno
        current = current.f_back
    return "<unknown>", 0


def traceback_site(tb: TracebackType | None) -> tuple[str, int]:
    """``(filename, lineno)`` of the innermost user frame of a traceback."""
    site = ("<unknown>", 0)
    for frame, lineno in traceback.walk_tb(tb):
        if not is_internal(frame.f_code.co_filename):
            site = (frame.f_code.co_filename, lineno)
    return site


def op_name(func: object) -> str:
    """A readable name for a torch function: ``Tensor.item``, ``torch.nonzero``."""
    qualname = str(getattr(func, "__qualname__", None) or getattr(func, "__name__", func))
    head, _, tail = qualname.partition(".")
    if tail and head in ("TensorBase", "_TensorBase", "Tensor"):
        return f"Tensor.{tail}"
    if tail and head == "_VariableFunctionsClass":
        return f"torch.{tail}"
    if "<locals>" in qualname:  # torch.unique and friends are built by a factory
        qualname = str(getattr(func, "__name__", qualname))
    module = getattr(func, "__module__", None)
    if module == "torch.functional":
        module = "torch"
    return f"{module}.{qualname}" if module else qualname


class SyncGuard:
    """Base of the guards: a context manager, and a decorator when called on a function.

    Args:
        record: ``False`` raises :class:`~dpslice.errors.ImplicitSyncError` at the first
            sync; ``True`` records every sync in :attr:`events` and lets the code run on.

    A guard object is not reentrant; as a decorator it makes a fresh copy per call.
    """

    mode: ClassVar[str]
    #: Raise at block exit rather than at the operation (the probe only knows afterwards).
    raises_at_exit: ClassVar[bool] = False

    def __init__(self, *, record: bool = False) -> None:
        self.record = record
        self.events: list[SyncEvent] = []
        self._token: Token[tuple[SyncGuard, ...]] | None = None
        # The errors report() raised, so __exit__ can tell one that escaped
        # the block from one the block caught and swallowed.
        self._raised: list[ImplicitSyncError] = []

    def _arm(self) -> None:
        raise NotImplementedError

    def _disarm(self, error: BaseException | None) -> SyncEvent | None:
        """Undo :meth:`_arm`; return an event if ``error`` is a sync that escaped every op."""
        raise NotImplementedError

    def __enter__(self: _G) -> _G:
        if self._token is not None:
            raise SyncError(
                f"this {type(self).__name__} is already active; a guard object is not "
                "reentrant: make another with dpslice.sync.no_sync()"
            )
        self.events = []
        self._raised = []
        self._arm()
        self._token = _GUARDS.set((*_GUARDS.get(), self))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        __tracebackhide__ = True
        token, self._token = self._token, None
        if token is not None:
            _GUARDS.reset(token)
        escaped = self._disarm(exc)
        if escaped is not None:
            self.events.append(escaped)
            raise ImplicitSyncError([escaped]) from exc
        if self.record or not self.events or self._surfaced(exc):
            return
        if not self._raised:
            if exc is None:  # a guard that only knows at exit (the probe)
                raise ImplicitSyncError(self.events)
            return
        # A sync was reported while the block ran and the block swallowed the
        # error (``except Exception: pass``): it must not pass for sync-free.
        error = ImplicitSyncError(self.events, caught=True)
        if exc is not None:
            raise error  # the block's own exception shows as the context
        raise error from self._raised[0]  # the traceback of the sync itself

    def _surfaced(self, exc: BaseException | None) -> bool:
        """Whether ``exc`` leaves the block with this guard's error in its chain, or must win.

        A ``BaseException`` that is no ``Exception`` (KeyboardInterrupt, pytest's skip) is
        never replaced.
        """
        if exc is None:
            return False
        if not isinstance(exc, Exception):
            return True
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen:
            if any(current is raised for raised in self._raised):
                return True
            seen.add(id(current))
            current = current.__cause__ or current.__context__
        return False

    def __call__(self, fn: _F) -> _F:
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            # Its body runs step by step after the call returns, outside any guard
            # a wrapper could hold: decorating it would guard nothing.
            raise TypeError(
                f"a guard cannot decorate the generator function {fn.__qualname__}: its body "
                "runs after the call, one step at a time; open `with no_sync():` inside it"
            )
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def guarded_coroutine(*args: Any, **kwargs: Any) -> Any:
                __tracebackhide__ = True
                with self._fresh():  # held across its awaits, in its own task's context
                    return await fn(*args, **kwargs)

            return guarded_coroutine  # type: ignore[return-value]

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            with self._fresh():
                return fn(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    def _fresh(self: _G) -> _G:
        clone = copy.copy(self)  # __enter__ gives it events of its own
        clone._token = None
        return clone

    @classmethod
    def owner(cls: type[_G]) -> _G | None:
        """The guard of this type that a sync seen now belongs to: innermost, not allowed."""
        guard = innermost_guard()
        return guard if isinstance(guard, cls) and not sync_allowed() else None

    def report(self, event: SyncEvent, *, cause: BaseException | None = None) -> None:
        """Record ``event``; raise :class:`ImplicitSyncError` now unless recording or deferring."""
        __tracebackhide__ = True
        self.events.append(event)
        if self.record or self.raises_at_exit:
            return
        error = ImplicitSyncError([event])
        self._raised.append(error)
        if cause is not None:
            raise error from cause
        raise error


class ThreadWatches(threading.local):
    """One set of torch modes per thread, shared by the guards armed in it.

    Torch keeps its mode stacks per thread, last in, first out, while guards are
    per context (two asyncio tasks interleave in one thread): the first guard
    armed in a thread pushes the modes, the last removes them, and on every call
    they ask the context's guard stack which guard, if any, the call belongs to
    (docs/sync.md, "Nesting, threads, asyncio tasks").

    Args:
        make: builds the modes, outermost first, once per thread.
    """

    def __init__(self, make: Callable[[], Sequence[Any]]) -> None:
        # threading.local calls this again, with the same ``make``, in every thread.
        self._make = make
        self._modes: tuple[Any, ...] = ()
        self._users = 0

    def acquire(self) -> None:
        """Install the modes in this thread if no guard here has yet; count one more user."""
        if not self._users:
            modes = tuple(self._make())
            entered: list[Any] = []
            try:
                for mode in modes:
                    mode.__enter__()
                    entered.append(mode)
            except BaseException:
                for mode in reversed(entered):
                    _remove(mode)
                raise
            self._modes = modes
        self._users += 1

    def release(self) -> None:
        """Count one user less; the last one out removes the modes from this thread."""
        if not self._users:
            return
        self._users -= 1
        if not self._users:
            modes, self._modes = self._modes, ()
            for mode in reversed(modes):
                _remove(mode)


def _remove(mode: Any) -> None:
    """Take ``mode`` off this thread's stack, wherever it is on it.

    Below another task's mode, it is taken out from under it (torch's own
    ``__exit__`` would pop the other mode instead).
    """
    if isinstance(mode, TorchDispatchMode):
        length: Callable[[], int] = torch._C._len_torch_dispatch_stack
        at: Callable[[int], Any] = torch._C._get_dispatch_stack_at
        pop: Callable[[], Any] = torch._C._pop_torch_dispatch_stack
        push: Callable[[Any], None] = torch._C._push_on_torch_dispatch_stack
    else:
        length = torch._C._len_torch_function_stack
        at = torch._C._get_function_stack_at
        pop = torch._C._pop_torch_function_stack
        push = torch._C._push_on_torch_function_stack
    size = length()
    if size and at(size - 1) is mode:
        mode.__exit__(None, None, None)
        return
    if not any(at(index) is mode for index in range(size)):
        return  # already gone
    above = []
    while (top := pop()) is not mode:
        above.append(top)
    for other in reversed(above):
        push(other)
