"""Torch modes shared by every guard of one mode in one thread.

Torch keeps its mode stacks per thread, last in, first out, while guards are per
context (two asyncio tasks interleave in one thread).  So each thread holds one
set of watches per guard mode, pushed by the first guard armed there and removed
by the last; on every call they ask the context's guard stack which guard, if any,
the call belongs to (docs/sync.md, "Nesting, threads, asyncio tasks").
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode

from dpslice._numpy_notice import torch

__all__ = ["ThreadWatches"]


class _Installed:
    """The watches pushed in one thread, and how many guards there use them."""

    def __init__(self, modes: Sequence[Any]) -> None:
        self.modes = tuple(modes)
        self.users = 0


class ThreadWatches:
    """One set of torch modes per thread, shared by the guards armed in it.

    Args:
        make: builds the modes, outermost first, once per thread.
    """

    def __init__(self, make: Callable[[], Sequence[Any]]) -> None:
        self._make = make
        self._local = threading.local()

    def current(self) -> tuple[Any, ...] | None:
        """This thread's installed modes, or ``None`` where no guard uses them."""
        installed: _Installed | None = getattr(self._local, "installed", None)
        return installed.modes if installed is not None else None

    def acquire(self) -> None:
        """Install the modes in this thread if no guard here has yet; count one more user."""
        installed: _Installed | None = getattr(self._local, "installed", None)
        if installed is None:
            installed = _Installed(self._make())
            entered: list[Any] = []
            try:
                for mode in installed.modes:
                    mode.__enter__()
                    entered.append(mode)
            except BaseException:
                for mode in reversed(entered):
                    _remove(mode)
                raise
            self._local.installed = installed
        installed.users += 1

    def release(self) -> None:
        """Count one user less; the last one out removes the modes from this thread."""
        installed: _Installed | None = getattr(self._local, "installed", None)
        if installed is None:
            return
        installed.users -= 1
        if installed.users > 0:
            return
        self._local.installed = None
        for mode in reversed(installed.modes):
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
    while True:
        top = pop()
        if top is mode:
            break
        above.append(top)
    for other in reversed(above):
        push(other)
