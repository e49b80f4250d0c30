"""The round trip as a check: one property, ``round_trip_rows``, searched and shrunk by
the check's own runner; only how a layout is evaluated differs (every rank gathers it
and judges its own slice, :func:`dpslice.distributed.worker.check_layout`).

A harness failure (a dead rank, a timeout) must not be shrunk, since the group is
gone: it leaves the search as a ``BaseException`` carrier, which Hypothesis does not
catch, and is raised again unchanged.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from hypothesis import strategies as st

from dpslice.check.registry import Counterexample, Property
from dpslice.check.results import (
    ROUND_TRIP_ROWS,
    ROUND_TRIP_STATEMENT,
    PropertyResult,
    Verdict,
    round_trip_result,
)
from dpslice.check.runner import run_property
from dpslice.check.target import Target
from dpslice.distributed.errors import RoundTripTimeoutError, TargetAbortedError
from dpslice.errors import RoundTripError
from dpslice.layout import DPLayout, Mode
from dpslice.strategies import dp_layouts

__all__ = [
    "ROUND_TRIP_MODES",
    "Evaluate",
    "aborted_round_trip",
    "broken_round_trip",
    "first_failure",
    "round_trip_layouts",
    "search_round_trip",
    "stopped_round_trip",
]

#: Modes a real gather produces CPU counts for (capture has none to check).
ROUND_TRIP_MODES = (Mode.SUM_LEN, Mode.MAX_LEN, Mode.GRAPH_REPLAY)


#: Evaluates one layout on every rank: each rank's counterexample or ``None``, in rank order.
Evaluate = Callable[[DPLayout], Sequence[Counterexample | None]]


def round_trip_layouts(*, dp_size: int, max_count: int = 64) -> st.SearchStrategy[DPLayout]:
    """Layouts of exactly ``dp_size`` ranks in the modes a gather runs, skipped gathers included.

    Counts stay small (up to ``max_count``) so every buffer is materialised
    and compared in full; they shrink towards zero and the mode towards SUM_LEN.
    """
    return dp_layouts(
        modes=ROUND_TRIP_MODES,
        min_dp_size=dp_size,
        max_dp_size=dp_size,
        max_count=max_count,
        max_num_tokens_per_bs=4,
    )


class _GroupDown(BaseException):
    # Carries a RoundTripError through Hypothesis and the runner, unshrunk.
    def __init__(self, error: RoundTripError | TargetAbortedError) -> None:
        super().__init__(str(error))
        self.error = error


class _BudgetSpent(BaseException):
    # The run's budget ran out between two layouts: leaves the search as _GroupDown does.
    pass


def first_failure(found: Sequence[Counterexample | None]) -> Counterexample | None:
    """The lowest failing rank's counterexample, naming the other failing ranks."""
    failing = [counterexample for counterexample in found if counterexample is not None]
    if not failing:
        return None
    first = failing[0]
    if len(failing) > 1:
        others = ", ".join(str(other.rank) for other in failing[1:])
        which = f"rank {others} fails" if len(failing) == 2 else f"ranks {others} fail"
        first = dataclasses.replace(first, why=f"{first.why} ({which} too)")
    return first


def _round_trip_property(evaluate: Evaluate, *, dp_size: int, max_count: int) -> Property[DPLayout]:
    def check(target: Target, layout: DPLayout) -> Counterexample | None:
        try:
            return first_failure(evaluate(layout))
        except (RoundTripError, TargetAbortedError) as error:
            raise _GroupDown(error) from error

    return Property(
        name=ROUND_TRIP_ROWS,
        statement=ROUND_TRIP_STATEMENT,
        draws=f"round_trip_layouts(dp_size={dp_size}, max_count={max_count})",
        strategy=lambda target: round_trip_layouts(dp_size=dp_size, max_count=max_count),
        check=check,
    )


def search_round_trip(
    evaluate: Evaluate,
    target: Target,
    *,
    dp_size: int,
    max_examples: int,
    seed: int,
    max_count: int = 64,
    timeout: float | None = None,
) -> PropertyResult:
    """Run ``round_trip_rows``: ``evaluate`` on drawn layouts, the failure shrunk.

    With ``timeout``, no layout starts once that many seconds have passed: the
    result then stands on the layouts checked so far, its note says so, and its
    counterexample is the smallest failing layout found so far.

    Raises:
        RoundTripError: from ``evaluate``, unshrunk, as soon as it happens.
        RoundTripTimeoutError: the budget ran out before a layout was checked.
    """
    began = time.monotonic()
    checked = 0
    failing: list[Counterexample] = []  # the latest is the most shrunk so far

    def within_budget(layout: DPLayout) -> Sequence[Counterexample | None]:
        nonlocal checked
        if timeout is not None and time.monotonic() - began >= timeout:
            raise _BudgetSpent
        found = evaluate(layout)
        checked += 1
        first = first_failure(found)
        if first is not None:
            failing.append(first)
        return found

    prop = _round_trip_property(within_budget, dp_size=dp_size, max_count=max_count)
    try:
        return run_property(prop, target, max_examples=max_examples, seed=seed)
    except _GroupDown as down:
        raise down.error from None
    except _BudgetSpent:
        assert timeout is not None
        if not checked:  # nothing to stand on: no verdict
            raise RoundTripTimeoutError("run", timeout, range(dp_size)) from None
        so_far = " (the counterexample is the smallest failing one so far)" if failing else ""
        return stopped_round_trip(
            failing[-1] if failing else None,
            examples=checked,
            seconds=time.monotonic() - began,
            why=f"the run's budget of {timeout:g} s ran out after {checked} layouts{so_far}",
        )


def aborted_round_trip(
    counterexample: Counterexample, *, examples: int, seconds: float
) -> PropertyResult:
    """The FAIL of a call that never came back: the group was killed, so it is not shrunk."""
    return round_trip_result(
        Verdict.FAIL,
        examples=examples,
        seconds=seconds,
        counterexamples=(counterexample,),
        note="the call in flight, not shrunk: the group had to be killed",
    )


def stopped_round_trip(
    found: Counterexample | None, *, examples: int, seconds: float, why: str
) -> PropertyResult:
    """The verdict on the layouts checked when the run's budget ran out."""
    return round_trip_result(
        Verdict.PASS if found is None else Verdict.FAIL,
        examples=examples,
        seconds=seconds,
        counterexamples=() if found is None else (found,),
        note=f"stopped early: {why}",
    )


def broken_round_trip(error: RoundTripError, *, examples: int, seconds: float) -> PropertyResult:
    """No verdict: the harness failed (a rank died or got stuck outside the target's call)."""
    return round_trip_result(
        Verdict.ERROR,
        examples=examples,
        seconds=seconds,
        note=f"the round trip reached no verdict: {type(error).__name__}: {error}",
    )
