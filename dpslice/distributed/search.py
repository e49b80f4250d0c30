"""The round trip as a check: one property, ``round_trip_rows``, searched and shrunk by
the check's own runner; only how a layout is evaluated differs (every rank gathers it
and judges its own slice, :func:`dpslice.distributed.worker.check_layout`).
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


def round_trip_layouts(*, dp_size: int, max_count: int = 64) -> st.SearchStrategy[DPLayout]:
    """Layouts of exactly ``dp_size`` ranks in the modes a gather runs, skipped gathers included.

    Counts stay small (up to ``max_count``) so every buffer is materialised
    and compared in full; they shrink towards zero and the mode towards SUM_LEN.
    """
    return dp_layouts(
        modes=(Mode.SUM_LEN, Mode.MAX_LEN, Mode.GRAPH_REPLAY),  # capture has no CPU counts
        min_dp_size=dp_size,
        max_dp_size=dp_size,
        max_count=max_count,
        max_num_tokens_per_bs=4,
    )


class _Leave(BaseException):
    # Leaves the search unshrunk (Hypothesis does not catch a BaseException): the group
    # is down (``error``), or the run's budget ran out between two layouts (``None``).
    def __init__(self, error: RoundTripError | TargetAbortedError | None = None) -> None:
        super().__init__(str(error))
        self.error = error


def search_round_trip(
    evaluate: Callable[[DPLayout], Sequence[Counterexample | None]],
    target: Target,
    *,
    dp_size: int,
    max_examples: int,
    seed: int,
    max_count: int = 64,
    timeout: float | None = None,
) -> PropertyResult:
    """Run ``round_trip_rows``: ``evaluate`` (every rank's counterexample or ``None``, in
    rank order) on drawn layouts, the failure shrunk.

    With ``timeout``, no layout starts once that many seconds have passed: the
    result then stands on the layouts checked so far, its note says so, and its
    counterexample is the smallest failing layout found so far.  A call that never
    came back (:class:`TargetAbortedError`) is the FAIL, unshrunk: the group is down.

    Raises:
        RoundTripError: from ``evaluate``, unshrunk, as soon as it happens.
        RoundTripTimeoutError: the budget ran out before a layout was checked.
    """
    began = time.monotonic()
    checked = 0
    failing: list[Counterexample] = []  # the latest is the most shrunk so far

    def check(target: Target, layout: DPLayout) -> Counterexample | None:
        """The lowest failing rank's counterexample, naming the other failing ranks."""
        nonlocal checked
        if timeout is not None and time.monotonic() - began >= timeout:
            raise _Leave
        try:
            found = [failed for failed in evaluate(layout) if failed is not None]
        except (RoundTripError, TargetAbortedError) as error:
            raise _Leave(error) from error
        checked += 1
        if not found:
            return None
        first = found[0]
        if len(found) > 1:
            others = ", ".join(str(other.rank) for other in found[1:])
            which = f"rank {others} fails" if len(found) == 2 else f"ranks {others} fail"
            first = dataclasses.replace(first, why=f"{first.why} ({which} too)")
        failing.append(first)
        return first

    prop = Property(
        name=ROUND_TRIP_ROWS,
        statement=ROUND_TRIP_STATEMENT,
        draws=f"round_trip_layouts(dp_size={dp_size}, max_count={max_count})",
        strategy=lambda target: round_trip_layouts(dp_size=dp_size, max_count=max_count),
        check=check,
    )
    try:
        return run_property(prop, target, max_examples=max_examples, seed=seed)
    except _Leave as leave:
        if isinstance(leave.error, RoundTripError):
            raise leave.error from None
        seconds = time.monotonic() - began
        found: Counterexample | None = None
        if leave.error is not None:
            found = leave.error.counterexample
            note = "the call in flight, not shrunk: the group had to be killed"
        else:
            assert timeout is not None
            if not checked:  # nothing to stand on: no verdict
                raise RoundTripTimeoutError("run", timeout, range(dp_size)) from None
            so_far = " (the counterexample is the smallest failing one so far)" if failing else ""
            found = failing[-1] if failing else None
            note = (
                f"stopped early: the run's budget of {timeout:g} s ran out after {checked} "
                f"layouts{so_far}"
            )
        return round_trip_result(
            Verdict.PASS if found is None else Verdict.FAIL,
            examples=checked,
            seconds=seconds,
            counterexamples=() if found is None else (found,),
            note=note,
        )
