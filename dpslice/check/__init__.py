"""``dpslice check``: run the property battery against any DP-local slice implementation.

>>> from dpslice.check import run_check
>>> report = run_check("dpslice.reference:dp_local_slice", max_examples=20, seed=0)
>>> report.passed
True

The calling convention a target must follow is documented in
:mod:`dpslice.check.target`; the properties live in :mod:`dpslice.check.battery`,
:mod:`dpslice.check.sync_property` and :mod:`dpslice.check.cuda_property`, and
more can be added with :func:`register`.  ``dpslice check --distributed``
(:mod:`dpslice.distributed`) reuses this core: the same runner, judgement,
counterexamples and report; only its buffers come from real collectives.
The check's own errors derive from
:class:`CheckError` (see :mod:`dpslice.errors`).
"""

from typing import TYPE_CHECKING

from dpslice.check.registry import Counterexample, Property, UnknownPropertyError, register
from dpslice.check.results import CheckReport, PropertyResult, Verdict
from dpslice.check.target import CONVENTION, BadTargetError, DeviceError, Target, load_target
from dpslice.errors import CheckError

if TYPE_CHECKING:
    from dpslice.check.runner import run_check

__all__ = [
    "CONVENTION",
    "BadTargetError",
    "CheckError",
    "CheckReport",
    "Counterexample",
    "DeviceError",
    "Property",
    "PropertyResult",
    "Target",
    "UnknownPropertyError",
    "Verdict",
    "load_target",
    "register",
    "run_check",
]


def __getattr__(name: str) -> object:
    # The runner imports Hypothesis: loaded on first use, so that the process
    # supervising a check (it only reports) starts without it.
    if name == "run_check":
        from dpslice.check.runner import run_check

        return run_check
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
