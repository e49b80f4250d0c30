"""Keep torch's "Failed to initialize NumPy" notice out of dpslice's processes and imports.

dpslice never uses NumPy.  A process dpslice owns calls :func:`silence_numpy_notice`
first; a module imports torch as ``from dpslice._numpy_notice import torch``, whose
first import ignores the notice and leaves the warning filters as they were.
"""

from __future__ import annotations

import os
import sys
import warnings
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # torch itself; __getattr__ imports it at run time.
    import torch as torch

__all__ = ["NUMPY_NOTICE", "silence_numpy_notice", "torch"]

#: How torch's notice begins; the filters match this prefix and nothing else.
NUMPY_NOTICE = "Failed to initialize NumPy"
_ENV_FILTER = f"ignore:{NUMPY_NOTICE}:UserWarning"


def silence_numpy_notice() -> None:
    """Ignore torch's NumPy notice here and in every process started from here.

    For a process's entry point only: the filter and the ``PYTHONWARNINGS`` entry
    outlive the call.
    """
    warnings.filterwarnings("ignore", message=NUMPY_NOTICE, category=UserWarning)
    entries = [entry for entry in os.environ.get("PYTHONWARNINGS", "").split(",") if entry]
    if _ENV_FILTER not in entries:
        os.environ["PYTHONWARNINGS"] = ",".join([*entries, _ENV_FILTER])


def __getattr__(name: str) -> ModuleType:
    # torch is imported on first use, never with this module (the supervising
    # process imports it and stays free of torch).
    if name != "torch":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    loaded = sys.modules.get("torch")
    if loaded is not None:
        # catch_warnings resets every module's record of warnings shown.
        return loaded
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=NUMPY_NOTICE, category=UserWarning)
        import torch

    return torch
