"""Hypothesis, in the driver: draw layouts, hand each to the whole group, shrink a failure.

The group is started once; :func:`search` only calls ``check(layout)``, which
sends the layout to every rank and returns their outcomes.  A failing layout
raises :class:`LayoutMismatch`, which Hypothesis shrinks like any failing test.
A harness error (a dead rank, a timeout) must not be shrunk: the group is gone.
It escapes Hypothesis as a ``BaseException``, which Hypothesis does not catch,
and is re-raised unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hypothesis import HealthCheck, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import FlakyFailure

from dpslice.distributed.errors import RoundTripError
from dpslice.distributed.rank_check import RankOutcome
from dpslice.distributed.result import Counterexample
from dpslice.layout import DPLayout, Mode
from dpslice.strategies import dp_layouts

__all__ = ["LayoutMismatch", "round_trip_layouts", "search"]

#: Modes a real gather produces CPU counts for (capture has none to check).
ROUND_TRIP_MODES = (Mode.SUM_LEN, Mode.MAX_LEN, Mode.GRAPH_REPLAY)


class LayoutMismatch(AssertionError):
    """At least one rank did not recover exactly its own rows from this layout."""

    def __init__(self, layout: DPLayout, outcomes: Sequence[RankOutcome]) -> None:
        self.counterexample = Counterexample.from_outcomes(layout, outcomes)
        super().__init__(str(self.counterexample))


class _GroupDown(BaseException):
    # Carries a RoundTripError through Hypothesis without being shrunk.
    def __init__(self, error: RoundTripError) -> None:
        super().__init__(str(error))
        self.error = error


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


def _mismatch_in(error: BaseException) -> LayoutMismatch | None:
    if isinstance(error, LayoutMismatch):
        return error
    if isinstance(error, FlakyFailure):
        for inner in error.exceptions:
            found = _mismatch_in(inner)
            if found is not None:
                return found
    return None


def search(
    check: Callable[[DPLayout], Sequence[RankOutcome]],
    *,
    dp_size: int,
    max_examples: int,
    seed: int | None = None,
    max_count: int = 64,
) -> Counterexample | None:
    """Run ``check`` on up to ``max_examples`` drawn layouts; return the minimal failure.

    The settings start from the loaded Hypothesis profile (so the ``ci``
    profile's derandomisation applies) with ``max_examples`` and no database,
    deadline or printing.  A given ``seed`` makes the draw reproducible.

    Raises:
        RoundTripError: from ``check``, unshrunk, as soon as it happens.
    """
    profile = settings()  # the loaded profile's settings
    chosen = settings(
        profile,
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=profile.derandomize and seed is None,
        verbosity=Verbosity.quiet,
        report_multiple_bugs=False,
        print_blob=False,
        # Drawing is cheap, evaluating is not: only the evaluation is ever slow.
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )

    @chosen
    @given(round_trip_layouts(dp_size=dp_size, max_count=max_count))
    def slice_recovers_own_rows(layout: DPLayout) -> None:
        try:
            outcomes = check(layout)
        except RoundTripError as error:
            raise _GroupDown(error) from error
        if not all(outcome.ok for outcome in outcomes):
            raise LayoutMismatch(layout, outcomes)

    runner = slice_recovers_own_rows
    if seed is not None:
        runner = hypothesis_seed(seed)(runner)
    try:
        runner()
    except _GroupDown as down:
        raise down.error from None
    except (LayoutMismatch, FlakyFailure) as error:
        mismatch = _mismatch_in(error)
        if mismatch is None:
            raise
        return mismatch.counterexample
    return None
