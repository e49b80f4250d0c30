"""Keep torch's "Failed to initialize NumPy" notice out of dpslice's processes and imports.

torch prints that ``UserWarning`` when it is imported where NumPy is not
installed.  dpslice never uses NumPy (a plain ``pip install dpslice`` does not
bring it), so the notice is noise: in ``dpslice check`` and its worker and
rank processes, and in a user's test run that imports a dpslice module which
imports torch.  Two ways out, one per kind of caller:

* a process dpslice owns (the command line) calls :func:`silence_numpy_notice`
  first, for itself and every process it starts;
* a dpslice module imports torch as ``from dpslice._numpy_notice import torch``:
  torch's first import then runs with the notice ignored, and the warning
  filters are left as they were, so importing dpslice as a library changes no
  warning filter.  torch warns only on its first import; later ones find it
  in ``sys.modules`` and cost nothing here.
"""

from __future__ import annotations

import os
import sys
import warnings
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # What ``from dpslice._numpy_notice import torch`` gives the type checker:
    # torch itself (the module's __getattr__ imports it at run time).
    import torch as torch

__all__ = ["NUMPY_NOTICE", "silence_numpy_notice", "torch"]

#: How torch's notice begins; the filters match this prefix and nothing else.
NUMPY_NOTICE = "Failed to initialize NumPy"
_ENV_FILTER = f"ignore:{NUMPY_NOTICE}:UserWarning"


def silence_numpy_notice() -> None:
    """Ignore torch's NumPy notice here and in every process started from here.

    The ``PYTHONWARNINGS`` entry reaches the check's worker and the round
    trip's spawned ranks, which import torch afresh; other warnings, and a
    user's own ``PYTHONWARNINGS`` entries, are left as they are.  For a
    process's entry point only: both settings outlive the call.
    """
    warnings.filterwarnings("ignore", message=NUMPY_NOTICE, category=UserWarning)
    entries = [entry for entry in os.environ.get("PYTHONWARNINGS", "").split(",") if entry]
    if _ENV_FILTER not in entries:
        os.environ["PYTHONWARNINGS"] = ",".join([*entries, _ENV_FILTER])


def _import_torch() -> ModuleType:
    """torch, imported without its NumPy notice if this is its first import."""
    loaded = sys.modules.get("torch")
    if loaded is not None:
        # Entering catch_warnings resets every module's record of warnings
        # already shown: not worth doing once torch is in.
        return loaded
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=NUMPY_NOTICE, category=UserWarning)
        import torch

    return torch


def __getattr__(name: str) -> ModuleType:
    # ``from dpslice._numpy_notice import torch`` lands here: torch is imported
    # on that first use, never when this module is (the command line's
    # supervising process imports it and must stay free of torch).
    if name == "torch":
        return _import_torch()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
