"""The property battery (docs/check-reference.md): each property draws the states the
target's contract reaches; the oracle is always the layout, never a slice formula.
"""

from __future__ import annotations

import itertools

from hypothesis import strategies as st

from dpslice.check.calls import LayoutCall
from dpslice.check.draws import COUNTED, SMALL_COUNT, RankExample, drawn
from dpslice.check.judge import judge_inputs, judge_rows, not_a_slice, outside
from dpslice.check.outcome import OutcomeKind
from dpslice.check.registry import Counterexample, Property, Tier
from dpslice.check.target import Target
from dpslice.contracts import CountsForm
from dpslice.errors import CheckBrokeError
from dpslice.layout import DPLayout, Mode
from dpslice.strategies import DEFECT_KINDS, InvalidCall, invalid_calls

__all__ = ["PROPERTIES", "RANKS_DISJOINT_IN_BOUNDS", "SUM_LEN_TILES_BUFFER"]

_CPU = "global_num_tokens_cpu"
_GPU = "global_num_tokens_gpu"


# -- the slice holds exactly the rows the rank owns, state by state ---------------------


def _own_rows(target: Target, example: RankExample) -> Counterexample | None:
    layout, rank = example
    called = LayoutCall(target, layout, layout.call(rank))
    return judge_rows(called, layout.gathered(rank))


SUM_LEN_ROWS = drawn(
    "sum_len_rows",
    "Under SUM_LEN (ranks packed back to back) a rank's slice holds exactly the rows it owns.",
    _own_rows,
    modes=[Mode.SUM_LEN],
)
MAX_LEN_ROWS = drawn(
    "max_len_rows",
    "Under MAX_LEN (ranks padded to the largest count) a slice holds exactly the rows it owns.",
    _own_rows,
    modes=[Mode.MAX_LEN],
)
GRAPH_REPLAY_ROWS = drawn(
    "graph_replay_rows",
    "In a decode-graph replay (bs * num_tokens_per_bs rows a rank) a slice holds its rows.",
    _own_rows,
    modes=[Mode.GRAPH_REPLAY],
)
PREFILL_GRAPH_ROWS = drawn(
    "prefill_graph_rows",
    "In a prefill-graph replay (no decode extent, counts padded; #30712) a slice holds its rows.",
    _own_rows,
    modes=[Mode.PREFILL_GRAPH],
)
DP_CHUNK_ROWS = drawn(
    "dp_chunk_rows",
    "In one chunk of DP chunking a rank's slice holds exactly the rows it sent in that chunk.",
    _own_rows,
    modes=[Mode.DP_CHUNK],
)
SKIPPED_GATHER_ROWS = drawn(
    "skipped_gather_rows",
    "With the all-gather skipped (a one-entry count list) the slice holds the rank's own rows.",
    _own_rows,
    # Where a skipped gather is known to happen: eager forwards and decode graphs.
    modes=[Mode.SUM_LEN, Mode.MAX_LEN, Mode.GRAPH_REPLAY],
    gather_skipped=True,
)


# -- all ranks of one forward together -------------------------------------------------


#: A rank's call, and the in-bounds ``(start, length)`` it returned.
_RankSlice = tuple[LayoutCall, int, int]


def _every_rank(
    target: Target, layout: DPLayout
) -> tuple[list[_RankSlice] | None, Counterexample | None]:
    """Call every rank; their in-bounds slices, or the first rank whose result is no slice.

    A call that raises is the rows properties' to judge: ``None`` slices then.
    """
    buffer_rows = layout.gathered_rows(0)
    slices: list[_RankSlice] = []
    for rank in range(layout.dp_size):
        called = LayoutCall(target, layout, layout.call(rank))
        expected_slice = called.expected_slice
        expected = f"a slice inside the {buffer_rows}-row buffer (the oracle's is {expected_slice})"
        if called.outcome.raised:
            return None, None
        if called.outcome.slice is None:
            why = not_a_slice(called.outcome)
            return slices, called.counterexample(expected, why, expected_slice=expected_slice)
        start, length = called.outcome.slice
        out = outside(start, length, buffer_rows)
        if out is not None:
            return slices, called.counterexample(expected, out, expected_slice=expected_slice)
        slices.append((called, start, length))
    return slices, None


def _is_oracles(ranked: _RankSlice) -> bool:
    called, start, length = ranked
    return (start, length) == called.expected_slice


def _culprit(lower: _RankSlice, higher: _RankSlice) -> tuple[_RankSlice, _RankSlice]:
    """Of two ranks whose slices clash, the one to blame (whose slice is not the oracle's,
    the lower if neither is), then the other; :class:`CheckBrokeError` if both are."""
    if not _is_oracles(lower):
        return lower, higher
    if not _is_oracles(higher):
        return higher, lower
    raise CheckBrokeError(
        f"in {lower[0].layout!r} ranks {lower[0].rank} and {higher[0].rank} return the "
        f"oracle's slices {lower[1:]} and {higher[1:]}, which clash: the oracle is wrong"
    )


def _other_rank(ranked: _RankSlice) -> str:
    """How a clash's ``why`` ends: the other rank's slice, and whether it is the oracle's."""
    called, start, length = ranked
    oracles = ", which is the oracle's" if _is_oracles(ranked) else ""
    return f"rank {called.rank}'s slice {(start, length)}{oracles}"


def _clash(blamed: LayoutCall, other: LayoutCall, expected: str, why: str) -> Counterexample:
    """``blamed``'s counterexample, with ``other``'s call and outcome beside it."""
    return blamed.counterexample(
        expected, why, expected_slice=blamed.expected_slice, related=(other.beside(),)
    )


def _disjoint(target: Target, layout: DPLayout) -> Counterexample | None:
    slices, failure = _every_rank(target, layout)
    if slices is None or failure is not None:
        return failure
    for index, higher in enumerate(slices):
        for lower in slices[:index]:
            (_, lower_start, lower_length), (_, start, length) = lower, higher
            if (
                length
                and lower_length
                and start < lower_start + lower_length
                and lower_start < start + length
            ):
                blamed, other = _culprit(lower, higher)
                return _clash(
                    blamed[0],
                    other[0],
                    f"a slice disjoint from every other rank's (the oracle's is "
                    f"{blamed[0].expected_slice})",
                    f"it overlaps {_other_rank(other)}",
                )
    return None


def _owned_rows_tile(target: Target, layout: DPLayout) -> bool:
    owns = target.contract.owns
    return all(
        layout.owned_rows(rank, owns) == layout.region(rank) for rank in range(layout.dp_size)
    )


def _tiles(target: Target, layout: DPLayout) -> Counterexample | None:
    if not _owned_rows_tile(target, layout):
        return None  # padding nobody owns (real rows of a DP chunk): nothing to tile
    slices, failure = _every_rank(target, layout)
    if slices is None or failure is not None:
        return failure
    first, start, _ = slices[0]
    if start != 0:
        return first.counterexample(
            "a slice starting at 0, the start of the buffer",
            f"it starts at {start}, so the slices leave a gap",
            expected_slice=first.expected_slice,
        )
    for lower, higher in itertools.pairwise(slices):
        end, start = lower[1] + lower[2], higher[1]
        if start == end:
            continue
        blamed, other = _culprit(lower, higher)
        if blamed is higher:
            expected = f"a slice starting at {end}, where rank {lower[0].rank}'s slice ends"
            why = f"it starts at {start}, not at {end}, the end of {_other_rank(other)}"
        else:
            expected = (
                f"a slice ending where rank {higher[0].rank}'s slice starts (the oracle's is "
                f"{blamed[0].expected_slice})"
            )
            why = f"it ends at {end}, not at {start}, the start of {_other_rank(other)}"
        return _clash(blamed[0], other[0], expected, why)
    last, start, length = slices[-1]
    buffer_rows = layout.gathered_rows(0)
    if start + length != buffer_rows:
        return last.counterexample(
            f"the last slice to end at row {buffer_rows}, the end of the buffer",
            f"the slices end at row {start + length}",
            expected_slice=last.expected_slice,
        )
    return None


RANKS_DISJOINT_IN_BOUNDS = drawn(
    "ranks_disjoint_in_bounds",
    "Across the ranks of one forward the slices are pairwise disjoint and in bounds.",
    _disjoint,
    modes=COUNTED,
    per_rank=False,
)
SUM_LEN_TILES_BUFFER = drawn(
    "sum_len_tiles_buffer",
    "Where ranks are packed (SUM_LEN, a DP chunk) their slices, in order, tile the buffer.",
    _tiles,
    modes=[Mode.SUM_LEN, Mode.DP_CHUNK],
    per_rank=False,
)


# -- exact at the int32 limit ----------------------------------------------------------


def _exact(target: Target, example: RankExample) -> Counterexample | None:
    layout, rank = example
    called = LayoutCall(target, layout, layout.call(rank))
    expected_slice = called.expected_slice
    got = called.outcome.slice
    if got == expected_slice or (
        # An empty slice reads no row wherever it starts inside the buffer.
        got is not None
        and got[1] == expected_slice[1] == 0
        and 0 <= got[0] <= layout.gathered_rows(rank)
    ):
        return None
    if got is None:
        why = not_a_slice(called.outcome)
    else:
        wrong = [
            f"the {bound} is {value}, not {oracle}"
            for bound, value, oracle in zip(("start", "length"), got, expected_slice, strict=True)
            if value != oracle
        ]
        why = "; ".join(wrong) + " (overflow, float rounding or a wrong formula)"
    return called.counterexample(str(expected_slice), why, expected_slice=expected_slice)


LARGE_COUNTS_EXACT = drawn(
    "large_counts_exact",
    "With counts up to 2**31-1 and up to 64 ranks the slice is exactly the oracle's.",
    _exact,
    # A prefill graph's bucket is no larger than the batches it was captured
    # for; its own property judges it.
    modes=[Mode.SUM_LEN, Mode.MAX_LEN, Mode.GRAPH_REPLAY, Mode.DP_CHUNK],
    small=False,
)


# -- capture: counts the slice cannot be located from -----------------------------------


def _capture(target: Target, example: RankExample) -> Counterexample | None:
    layout, rank = example
    called = LayoutCall(target, layout, layout.call(rank))
    expected_slice = called.expected_slice
    outcome = called.outcome
    if outcome.kind is OutcomeKind.DELIBERATE or outcome.slice == expected_slice:
        return None
    situation = "during capture the CPU counts are None"
    if outcome.kind is OutcomeKind.INCIDENTAL:
        why = f"{situation}: refuse with a deliberate error rather than crash"
    elif outcome.kind is OutcomeKind.MALFORMED:
        why = f"{situation}, and the result is not a slice"
    else:
        why = f"{situation}, and the slice returned is not the rank's"
    expected = f"a deliberate error, or exactly the slice {expected_slice}"
    return called.counterexample(expected, why, expected_slice=expected_slice)


CAPTURE_PHASE_EXPLICIT = drawn(
    "capture_phase_explicit",
    "In CUDA-graph capture (CPU counts None): a deliberate error or the exact slice.",
    _capture,
    modes=[Mode.GRAPH_CAPTURE],
    exercises=frozenset({_CPU, _GPU}),
)


# -- the inputs are the engine's --------------------------------------------------------


def _unchanged(target: Target, example: RankExample) -> Counterexample | None:
    layout, rank = example
    return judge_inputs(LayoutCall(target, layout, layout.call(rank)))


INPUTS_UNCHANGED = drawn(
    "inputs_unchanged",
    "The slice leaves its inputs (the count list and tensors) as it received them.",
    _unchanged,
    modes=tuple(Mode),
    exercises=frozenset({_CPU, _GPU}),
)


# -- hardening: inputs no engine produces are refused -----------------------------------


#: For each kind of defect, the parameter sets a target must read (any one) to see it.
_DETECTABLE_WITH: dict[str, tuple[frozenset[str], ...]] = {
    "count over the extent": (
        frozenset({_CPU, "graph_extent"}),
        frozenset({_CPU, "cuda_graph_batch", "num_tokens_per_bs"}),
    ),
    "count list of another length": (frozenset({_CPU, "dp_size"}),),
    "dp_rank out of range": (frozenset({"dp_rank", "dp_size"}),),
    "dp_size below 1": (frozenset({"dp_size"}),),
    "negative count": (frozenset({_CPU}),),
    "bool count": (frozenset({_CPU}),),
    "bool dp_rank": (frozenset({"dp_rank"}),),
    "bool dp_size": (frozenset({"dp_size"}),),
    "bool graph_extent": (frozenset({"graph_extent"}),),
    "non-integer count": (frozenset({_CPU}),),
    "non-integer dp_rank": (frozenset({"dp_rank"}),),
    "non-integer dp_size": (frozenset({"dp_size"}),),
    "non-integer graph_extent": (frozenset({"graph_extent"}),),
    "tensor counts": (frozenset({_CPU}),),
    "tensor count": (frozenset({_CPU}),),
    "tensor dp_rank": (frozenset({"dp_rank"}),),
    "negative graph extent": (frozenset({"graph_extent"}),),
}
# None counts are the capture phase, which capture_phase_explicit judges as a hazard.
assert set(_DETECTABLE_WITH) == set(DEFECT_KINDS) - {"counts None"}, "every kind needs a home"

#: Defects of the count list's entries, which an int32 count tensor cannot carry.
_LIST_ONLY = frozenset({"tensor counts", "tensor count", "bool count", "non-integer count"})


def _kinds(target: Target) -> dict[str, st.SearchStrategy[InvalidCall]]:
    """One strategy per kind of defect the target can see, in the contract's states."""
    contract = target.contract
    kinds = {}
    for kind, needs in _DETECTABLE_WITH.items():
        if not any(need <= target.accepts for need in needs):
            continue  # a target cannot be blamed for accepting a defect it cannot see
        if contract.counts_form is CountsForm.INT32_CPU_TENSOR and kind in _LIST_ONLY:
            continue
        if "extent" in kind and not contract.reaches(Mode.GRAPH_REPLAY):
            continue
        kinds[kind] = invalid_calls(kinds=[kind], max_count=SMALL_COUNT, contract=contract)
    return kinds


def _no_refusable_kind(target: Target) -> str | None:
    if not target.contract.counted_modes:
        return (
            f"the {target.contract.name} contract reaches only GRAPH_CAPTURE, whose calls have "
            "no CPU counts to put a defect in"
        )
    if _kinds(target):
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


INVALID_INPUTS_REFUSED = Property(
    name="invalid_inputs_refused",
    statement="A call with one defect no engine produces (type, range, length) is refused.",
    draws=(
        "invalid_calls(kinds=[kind], contract=contract, max_count="
        f"{SMALL_COUNT}) for each kind of defect visible in the parameters the target takes"
    ),
    strategy=lambda target: st.one_of(*_kinds(target).values()),
    check=_refused,
    exercises=frozenset().union(*(n for needs in _DETECTABLE_WITH.values() for n in needs)),
    requires=_no_refusable_kind,
    tier=Tier.HARDENING,
    kinds=_kinds,
)

#: This module's part of the built-in battery: its properties, in report order (as defined).
PROPERTIES = tuple(value for value in list(globals().values()) if isinstance(value, Property))
