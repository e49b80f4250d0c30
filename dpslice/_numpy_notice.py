"""Keep torch's "Failed to initialize NumPy" notice out of dpslice's own processes.

torch prints that ``UserWarning`` when it is imported where NumPy is not
installed.  dpslice never uses NumPy (a plain ``pip install dpslice`` does not
bring it), so the notice is noise in ``dpslice check`` and its worker and rank
processes.  The command line owns those processes and calls
:func:`silence_numpy_notice` first; importing dpslice as a library changes no
warning filter.
"""

from __future__ import annotations

import os
import warnings

__all__ = ["NUMPY_NOTICE", "silence_numpy_notice"]

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
