"""The judgements one call gets, whatever gathered the buffer it slices.

The battery slices the layout model's buffer, the round trip the buffer its
collectives gathered: both judge the call here, to one standard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dpslice.check.calls import LayoutCall
from dpslice.check.outcome import Outcome, OutcomeKind
from dpslice.check.registry import Counterexample
from dpslice.check.rows import render_rows, rows_phrase

if TYPE_CHECKING:
    import torch


def not_a_slice(outcome: Outcome) -> str:
    """Why an outcome that is no slice fails a valid layout."""
    if outcome.kind is OutcomeKind.MALFORMED:
        return "the result is not a (start, length) slice"
    return "a valid layout must give the rank its slice, not an error"


def outside(start: int, length: int, buffer_rows: int) -> str | None:
    """Why ``(start, length)`` does not lie in a buffer of ``buffer_rows`` rows, or ``None``."""
    if length < 0:
        return f"the length {length} is negative"
    if start < 0 or start + length > buffer_rows:
        return f"rows [{start}, {start + length}) run outside the {buffer_rows}-row buffer"
    return None


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


def judge_rows(called: LayoutCall, buffer: torch.Tensor) -> Counterexample | None:
    """Whether the call's slice of ``buffer`` (the gathered buffer as its rank sees it,
    tagged) holds exactly the rows its rank owns."""
    from dpslice._numpy_notice import torch

    rank = called.rank
    assert rank is not None, "a valid layout's call has a rank"
    expected_slice = called.expected_slice
    expected_tags = called.expected_rows(device=str(buffer.device))

    def fail(why: str, got_rows: str | None = None) -> Counterexample:
        return called.counterexample(
            f"{expected_slice}: {rows_phrase(expected_tags)}",
            why,
            expected_slice=expected_slice,
            got_rows=got_rows,
            expected_rows=render_rows(expected_tags),
        )

    if called.outcome.slice is None:
        return fail(not_a_slice(called.outcome))
    start, length = called.outcome.slice
    out = outside(start, length, len(buffer))
    if out is not None:
        return fail(out)
    got = buffer[start : start + length]
    if not torch.equal(got, expected_tags):
        return fail(_why_rows(got, expected_tags, rank), render_rows(got))
    return None


def judge_inputs(called: LayoutCall) -> Counterexample | None:
    """Whether the call left its inputs (the count list and tensors) as it received them."""
    if not called.mutated:
        return None
    return called.counterexample(
        "the inputs left as they were: the engine reads them again after the slice",
        f"it changed {' and '.join(called.mutated)} in place",
        expected_slice=called.expected_slice,
    )
