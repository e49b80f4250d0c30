"""``dpslice check``: run the property battery against any DP-local slice implementation.

>>> from dpslice.check import run_check
>>> report = run_check("dpslice.reference:dp_local_slice", max_examples=20, seed=0)
>>> report.passed
True

Everything a user imports from the check is listed in :data:`__all__` and
documented in docs/check-reference.md: running it (:func:`run_check`), the
report (:class:`CheckReport` and the renderers :func:`render_text`,
:func:`to_json`, :func:`write_json`, ...), targets (:func:`load_target`) and
properties of one's own (:class:`Property`, :func:`drawn`, :class:`LayoutCall`,
:func:`register`).  The submodules (``dpslice.check.runner``,
``dpslice.check.report``, ...) are private: their names may change.

``dpslice check --distributed`` (:mod:`dpslice.distributed`) reuses this core:
the same runner, judgement, counterexamples and report; only its buffers come
from real collectives.  The check's own errors derive from
:class:`dpslice.errors.CheckError`.
"""

from typing import TYPE_CHECKING

from dpslice.check.calls import LayoutCall
from dpslice.check.outcome import Outcome, OutcomeKind
from dpslice.check.registry import (
    Counterexample,
    Property,
    Tier,
    register,
)
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
from dpslice.check.target import CONVENTION, Target, load_target

if TYPE_CHECKING:
    from dpslice.check.draws import drawn
    from dpslice.check.runner import run_check

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


def __getattr__(name: str) -> object:
    # The runner and the draws import Hypothesis: loaded on first use, so that
    # the process supervising a check (it only reports) starts without it.
    if name == "run_check":
        from dpslice.check.runner import run_check

        return run_check
    if name == "drawn":
        from dpslice.check.draws import drawn

        return drawn
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
