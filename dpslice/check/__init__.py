"""``dpslice check``: run the property battery against any DP-local slice implementation.

>>> from dpslice.check import run_check
>>> report = run_check("dpslice.reference:dp_local_slice", max_examples=20, seed=0)
>>> report.passed
True

:data:`__all__` is the public face, documented in docs/check-reference.md; the
submodules are private.
The check's own errors derive from :class:`dpslice.errors.CheckError`.
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dpslice.check.calls import LayoutCall
    from dpslice.check.draws import drawn
    from dpslice.check.outcome import Outcome, OutcomeKind
    from dpslice.check.registry import Counterexample, Property, Tier, register
    from dpslice.check.report import (
        render_result,
        render_text,
        reproduce_command,
        to_json,
        to_junit_xml,
        write_json,
        write_junit_xml,
    )
    from dpslice.check.results import CheckReport, PropertyResult, RoundTrip, Stop, Verdict
    from dpslice.check.runner import run_check
    from dpslice.check.target import CONVENTION, Target, load_target

__all__ = [
    "CONVENTION",
    "CheckReport",
    "Counterexample",
    "LayoutCall",
    "Outcome",
    "OutcomeKind",
    "Property",
    "PropertyResult",
    "RoundTrip",
    "Stop",
    "Target",
    "Tier",
    "Verdict",
    "drawn",
    "load_target",
    "register",
    "render_result",
    "render_text",
    "reproduce_command",
    "run_check",
    "to_json",
    "to_junit_xml",
    "write_json",
    "write_junit_xml",
]


#: The submodules that define the names, in import order: Hypothesis's (draws, runner) last.
_HOMES = ("calls", "outcome", "registry", "report", "results", "target", "draws", "runner")


def __getattr__(name: str) -> object:
    # Loaded on first use: importing one submodule (the pytest plugin's options) loads no
    # other, and a supervising process never imports Hypothesis.
    if name in __all__:
        for module in _HOMES:
            value = getattr(importlib.import_module(f"dpslice.check.{module}"), name, None)
            if value is not None:
                return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
