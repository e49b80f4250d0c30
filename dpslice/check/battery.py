"""The property battery every DP-local slice implementation is checked against.

Ten properties, registered in this order at import (see
:mod:`dpslice.check.registry`).  The rows properties materialise the gathered
buffer of small layouts and compare the rows the target's slice covers with
the rank's own rows; the others compare against :meth:`DPLayout.span` or ask
for a deliberate error.  The oracle is always the layout, never a slice formula.
"""

from __future__ import annotations

from dataclasses import fields, replace

import torch
from hypothesis import strategies as st

from dpslice.check.calls import LayoutCall, oracle_slice, valid_rank
from dpslice.check.draws import (
    EAGER_AND_REPLAY,
    SMALL_COUNT,
    SMALL_DP_SIZE,
    Drawn,
    RankExample,
    layouts,
    register_drawn,
    with_ranks,
)
from dpslice.check.outcome import Outcome, OutcomeKind
from dpslice.check.registry import Counterexample, Property, register
from dpslice.check.rows import render_rows
from dpslice.check.target import Target
from dpslice.errors import (
    CountExceedsExtentError,
    CountsLengthError,
    CountsUnavailableError,
    DPSliceError,
    InvalidDPSizeError,
    InvalidGraphExtentError,
    MissingGraphExtentError,
    NegativeCountError,
    NonIntegerError,
    RankOutOfRangeError,
    TensorInputError,
)
from dpslice.layout import DPLayout, Mode, SliceCall
from dpslice.strategies import INVALID_CAUSES, InvalidCall, invalid_calls

__all__ = ["SMALL_COUNT", "SMALL_DP_SIZE"]

_CPU = "global_num_tokens_cpu"


def _not_a_slice(outcome: Outcome) -> str:
    if outcome.kind is OutcomeKind.MALFORMED:
        return "the result is not a (start, length) slice"
    return "a valid layout must give the rank its slice, not an error"


def _outside(start: int, length: int, buffer_rows: int) -> str | None:
    if length < 0:
        return f"the length {length} is negative"
    if start < 0 or start + length > buffer_rows:
        return f"rows [{start}, {start + length}) run outside the {buffer_rows}-row buffer"
    return None


# -- 1-4: the slice holds exactly the rank's own rows ------------------------------


def _rows_phrase(tags: torch.Tensor) -> str:
    return f"rows {render_rows(tags)}" if len(tags) else "no rows"


def _why_rows(got: torch.Tensor, expected: torch.Tensor, rank: int) -> str:
    foreign = sorted({owner for owner, _ in got.tolist() if owner != rank})
    if foreign:
        owners = ", ".join(str(owner) for owner in foreign)
        return f"it covers rows of rank {owners}, which rank {rank} does not own"
    if len(got) < len(expected):
        return f"it misses {len(expected) - len(got)} of rank {rank}'s {len(expected)} rows"
    if len(got) > len(expected):
        return f"it covers {len(got) - len(expected)} padding rows beyond rank {rank}'s own"
    return f"it covers rank {rank}'s rows shifted or out of order"


def _own_rows(target: Target, example: RankExample) -> Counterexample | None:
    layout, rank = example
    called = LayoutCall(target, layout, layout.call(rank))
    expected_slice = oracle_slice(layout, rank)
    expected_tags = layout.expected_rows(rank)
    expected = f"{expected_slice}: {_rows_phrase(expected_tags)}"

    def fail(why: str, got_rows: str | None = None) -> Counterexample:
        return called.counterexample(
            expected,
            why,
            expected_slice=expected_slice,
            got_rows=got_rows,
            expected_rows=render_rows(expected_tags),
        )

    if called.outcome.slice is None:
        return fail(_not_a_slice(called.outcome))
    start, length = called.outcome.slice
    buffer = layout.gathered(rank)
    outside = _outside(start, length, len(buffer))
    if outside is not None:
        return fail(outside)
    got = buffer[start : start + length]
    if not torch.equal(got, expected_tags):
        return fail(_why_rows(got, expected_tags, rank), render_rows(got))
    return None


register_drawn(
    "sum_len_rows",
    "Under SUM_LEN (ranks packed back to back) a rank's slice holds exactly its own rows.",
    with_ranks(layouts(Mode.SUM_LEN, gather_skipped=False)),
    _own_rows,
)
register_drawn(
    "max_len_rows",
    "Under MAX_LEN (ranks padded to the largest count) a rank's slice holds exactly its own rows.",
    with_ranks(layouts(Mode.MAX_LEN, gather_skipped=False)),
    _own_rows,
)
register_drawn(
    "graph_replay_rows",
    "Under CUDA-graph replay (bs * num_tokens_per_bs rows per rank) a slice holds the rank's rows.",
    with_ranks(layouts(Mode.GRAPH_REPLAY, gather_skipped=False)),
    _own_rows,
)
register_drawn(
    "skipped_gather_rows",
    "With the all-gather skipped (a one-entry count list) the slice holds the rank's own rows.",
    with_ranks(layouts(*EAGER_AND_REPLAY, gather_skipped=True)),
    _own_rows,
)


# -- 5-6: all ranks of one forward together ---------------------------------------


def _every_rank(
    target: Target, layout: DPLayout
) -> tuple[list[tuple[LayoutCall, int, int]], Counterexample | None]:
    """Call every rank; their in-bounds slices, or the first rank that gave none."""
    buffer_rows = layout.gathered_rows(0)
    slices: list[tuple[LayoutCall, int, int]] = []
    for rank in range(layout.dp_size):
        called = LayoutCall(target, layout, layout.call(rank))
        expected_slice = oracle_slice(layout, rank)
        expected = f"a slice inside the {buffer_rows}-row buffer (the oracle's is {expected_slice})"
        if called.outcome.slice is None:
            why = _not_a_slice(called.outcome)
            return slices, called.counterexample(expected, why, expected_slice=expected_slice)
        start, length = called.outcome.slice
        outside = _outside(start, length, buffer_rows)
        if outside is not None:
            return slices, called.counterexample(expected, outside, expected_slice=expected_slice)
        slices.append((called, start, length))
    return slices, None


def _disjoint(target: Target, layout: DPLayout) -> Counterexample | None:
    slices, failure = _every_rank(target, layout)
    if failure is not None:
        return failure
    for index, (called, start, length) in enumerate(slices):
        for other, other_start, other_length in slices[:index]:
            if (
                length
                and other_length
                and start < other_start + other_length
                and other_start < start + length
            ):
                assert called.rank is not None
                return called.counterexample(
                    f"a slice disjoint from every other rank's (the oracle's is "
                    f"{oracle_slice(layout, called.rank)})",
                    f"it overlaps rank {other.rank}'s slice {(other_start, other_length)}",
                    expected_slice=oracle_slice(layout, called.rank),
                )
    return None


def _tiles(target: Target, layout: DPLayout) -> Counterexample | None:
    slices, failure = _every_rank(target, layout)
    if failure is not None:
        return failure
    position = 0
    for called, start, length in slices:
        assert called.rank is not None
        if start != position:
            where = (
                "the start of the buffer"
                if called.rank == 0
                else f"where rank {called.rank - 1}'s slice ends"
            )
            return called.counterexample(
                f"a slice starting at {position}, {where}",
                f"it starts at {start}, so the slices leave a gap or overlap",
                expected_slice=oracle_slice(layout, called.rank),
            )
        position = start + length
    buffer_rows = layout.gathered_rows(0)
    if position != buffer_rows:
        last = slices[-1][0]
        assert last.rank is not None
        return last.counterexample(
            f"the last slice to end at row {buffer_rows}, the end of the buffer",
            f"the slices end at row {position}",
            expected_slice=oracle_slice(layout, last.rank),
        )
    return None


register_drawn(
    "ranks_disjoint_in_bounds",
    "Across the ranks of one forward the slices are pairwise disjoint and in bounds.",
    layouts(*EAGER_AND_REPLAY, gather_skipped=False),
    _disjoint,
)
register_drawn(
    "sum_len_tiles_buffer",
    "Under SUM_LEN the ranks' slices, in rank order, tile the buffer exactly.",
    layouts(Mode.SUM_LEN, gather_skipped=False),
    _tiles,
)


# -- 7: exact at the int32 limit ------------------------------------------------------


def _exact(target: Target, example: RankExample) -> Counterexample | None:
    layout, rank = example
    called = LayoutCall(target, layout, layout.call(rank))
    expected_slice = oracle_slice(layout, rank)
    if called.outcome.slice == expected_slice:
        return None
    got = called.outcome.slice
    if got is None:
        why = _not_a_slice(called.outcome)
    else:
        wrong = [
            f"the {bound} is {value}, not {oracle}"
            for bound, value, oracle in zip(("start", "length"), got, expected_slice, strict=True)
            if value != oracle
        ]
        why = "; ".join(wrong) + " (overflow, float rounding or a wrong formula)"
    return called.counterexample(str(expected_slice), why, expected_slice=expected_slice)


register_drawn(
    "large_counts_exact",
    "With counts up to 2**31-1 and up to 64 ranks the slice is exactly the oracle's.",
    with_ranks(layouts(*EAGER_AND_REPLAY, small=False)),
    _exact,
)


# -- 8-9: inputs the engine really produces, which the slice cannot locate ---------------


def _explicit_or_exact(called: LayoutCall, situation: str) -> Counterexample | None:
    """Pass a deliberate error or the oracle's slice; anything else is a counterexample."""
    assert called.rank is not None
    expected_slice = oracle_slice(called.layout, called.rank)
    outcome = called.outcome
    if outcome.kind is OutcomeKind.DELIBERATE or outcome.slice == expected_slice:
        return None
    if outcome.kind is OutcomeKind.INCIDENTAL:
        why = f"{situation}: refuse with a deliberate error rather than crash"
    elif outcome.kind is OutcomeKind.MALFORMED:
        why = f"{situation}, and the result is not a slice"
    else:
        why = f"{situation}, and the slice returned is not the rank's"
    expected = f"a deliberate error, or exactly the slice {expected_slice}"
    return called.counterexample(expected, why, expected_slice=expected_slice)


def _capture(target: Target, example: RankExample) -> Counterexample | None:
    layout, rank = example
    called = LayoutCall(target, layout, layout.call(rank))
    return _explicit_or_exact(called, "during capture the CPU counts are None")


def _missing_extent(target: Target, example: RankExample) -> Counterexample | None:
    layout, rank = example
    call = replace(layout.call(rank), graph_extent=None, cuda_graph_batch=None)
    called = LayoutCall(target, layout, call)
    return _explicit_or_exact(called, "graph replay came without an extent (sglang #30712)")


def _without_extent(drawn: Drawn) -> Drawn:
    text, strategy = drawn
    return f"{text}, called with graph_extent=None, cuda_graph_batch=None", strategy


register_drawn(
    "capture_phase_explicit",
    "In CUDA-graph capture (CPU counts None): a deliberate error or the exact slice.",
    with_ranks(layouts(Mode.GRAPH_CAPTURE)),
    _capture,
    exercises=frozenset({_CPU}),
)
register_drawn(
    "missing_graph_extent_explicit",
    "Replay without an extent (sglang #30712): a deliberate error or the exact slice.",
    _without_extent(with_ranks(layouts(Mode.GRAPH_REPLAY))),
    _missing_extent,
    exercises=frozenset({"graph_extent", "cuda_graph_batch"}),
)


# -- 10: invalid calls are refused ---------------------------------------------------------


def _need(*parameters: str) -> frozenset[str]:
    return frozenset(parameters)


#: For each cause, the parameter sets a target must read (any one set) to be able to
#: see the defect: a wrong-length list is invisible without dp_size, a count over
#: the extent without the extent in rows.  A value of the wrong type is visible in
#: the one parameter it lands in; which one is found per call.
_DETECTABLE_WITH: dict[type[DPSliceError], tuple[frozenset[str], ...]] = {
    CountExceedsExtentError: (
        _need(_CPU, "graph_extent"),
        _need(_CPU, "cuda_graph_batch", "num_tokens_per_bs"),
    ),
    CountsLengthError: (_need(_CPU, "dp_size"),),
    RankOutOfRangeError: (_need("dp_rank", "dp_size"),),
    InvalidDPSizeError: (_need("dp_size"),),
    NegativeCountError: (_need(_CPU),),
    NonIntegerError: (_need(_CPU), _need("dp_rank"), _need("dp_size"), _need("graph_extent")),
    TensorInputError: (_need(_CPU), _need("dp_rank")),
    InvalidGraphExtentError: (_need("graph_extent"),),
}
_LANDS_ANYWHERE = (NonIntegerError, TensorInputError)
# The capture and missing-extent causes have properties of their own (8 and 9).
_OWN_PROPERTY = (CountsUnavailableError, MissingGraphExtentError)
_REFUSED = tuple(cause for cause in INVALID_CAUSES if cause not in _OWN_PROPERTY)
assert set(_REFUSED) == set(_DETECTABLE_WITH), "every invalid-call cause needs a home"


def _reads_any(target: Target, needs: tuple[frozenset[str], ...]) -> bool:
    return any(need <= target.accepts for need in needs)


def _same(value: object, baseline: object) -> bool:
    if type(value) is not type(baseline):
        return False
    if isinstance(value, list) and isinstance(baseline, list):
        return len(value) == len(baseline) and all(map(_same, value, baseline))
    return value == baseline


def _landed_in(invalid: InvalidCall) -> frozenset[str]:
    """The parameter a wrong-typed value was put in, found against the valid call."""
    rank = valid_rank(invalid.layout, invalid.call.dp_rank)
    if rank is None:
        return frozenset({"dp_rank"})
    baseline = invalid.layout.call(rank)
    return frozenset(
        item.name
        for item in fields(SliceCall)
        if not _same(getattr(invalid.call, item.name), getattr(baseline, item.name))
    )


def _detectable(target: Target, invalid: InvalidCall) -> bool:
    if invalid.expected in _LANDS_ANYWHERE:
        return _reads_any(target, (_landed_in(invalid),))
    return _reads_any(target, _DETECTABLE_WITH[invalid.expected])


def _refusable_causes(target: Target) -> list[type[DPSliceError]]:
    return [cause for cause in _REFUSED if _reads_any(target, _DETECTABLE_WITH[cause])]


def _invalid_for(target: Target) -> st.SearchStrategy[InvalidCall]:
    # A target cannot be blamed for accepting a defect it has no way to see.
    return invalid_calls(causes=_refusable_causes(target), max_count=SMALL_COUNT).filter(
        lambda invalid: _detectable(target, invalid)
    )


def _no_refusable_cause(target: Target) -> str | None:
    if _refusable_causes(target):
        return None
    return "the target takes no parameters in which an invalid call's defect is visible"


def _refused(target: Target, invalid: InvalidCall) -> Counterexample | None:
    called = LayoutCall(target, invalid.layout, invalid.call)
    if called.outcome.kind is OutcomeKind.DELIBERATE:
        return None
    label = f"{invalid.expected.__name__} ({invalid.defect})"
    if called.outcome.kind is OutcomeKind.INCIDENTAL:
        why = f"the call is invalid ({invalid.defect}) and it crashed instead of refusing it"
    else:
        why = f"the call is invalid ({invalid.defect}) and it silently returned a result"
    return called.counterexample(f"a deliberate error, such as {label}", why)


register(
    Property(
        name="invalid_inputs_refused",
        statement="A call with one defect (length, rank, size, count, tensor, extent) is refused.",
        draws=(
            f"invalid_calls(causes=[{', '.join(cause.__name__ for cause in _REFUSED)}], "
            f"max_count={SMALL_COUNT}), only defects visible in the parameters the target takes"
        ),
        strategy=_invalid_for,
        check=_refused,
        exercises=frozenset().union(*(n for needs in _DETECTABLE_WITH.values() for n in needs)),
        requires=_no_refusable_cause,
    )
)
