"""Adapters that run an installed engine's own DP-local slice code under ``dpslice check``.

Each submodule imports the engine installed next to dpslice and exposes its real
functions in the check's keyword-only calling convention
(:mod:`dpslice.check.target`), each tagged with the contract of the call site it
serves (``__dpslice_contract__``).  Nothing here restates engine code: the
adapters build the few inputs the engine reads and point its parallel-state
lookups at the drawn rank and size for the length of one call.

* :mod:`dpslice.engines.sglang`: ``get_dp_local_slice_cpu``, ``get_dp_local_info``
  and the routed-experts capturer's slice, for sglang 0.5.8 and later.
* :mod:`dpslice.engines.vllm`: ``DPMetadata``'s prefix sums and the routed-experts
  capturer's ``_restore_local_topk_ids``, for vLLM 0.33.

Importing a submodule without its engine raises an :class:`ImportError` whose
message says how to install it; docs/engines.md has the commands and what the
check found in each release.
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
