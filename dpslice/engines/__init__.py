"""Adapters that run an installed engine's own DP-local slice code under ``dpslice check``.

:mod:`dpslice.engines.sglang` and :mod:`dpslice.engines.vllm` expose the engine's real
functions in the check's calling convention, each tagged with its call site's contract
(``__dpslice_contract__``); without the engine, importing one raises an
:class:`ImportError` that says how to install it (docs/engines.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

__all__ = ["import_engine_module"]


def import_engine_module(
    name: str, *, engine: str, absent: str, missing: Callable[[str | None], str]
) -> ModuleType:
    """Import module ``name`` of the installed ``engine`` package.

    Raises:
        ImportError: ``absent`` when the engine itself is not installed,
            ``missing(package)`` when a package it imports is not.
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (exc.name == engine or exc.name.startswith(engine + ".")):
            raise ImportError(absent) from None
        raise ImportError(missing(exc.name)) from None
