"""Call a target about one layout, and turn what it did into a counterexample.

The building block of every property: :class:`LayoutCall` builds the
convention's keyword arguments for a :class:`~dpslice.SliceCall` of a layout
(including the GPU count tensor, from the layout's *valid* counts even when the
call carries a defect), calls the target once and keeps everything a
:class:`~dpslice.check.registry.Counterexample` needs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from dpslice.check.outcome import Outcome, call_target
from dpslice.check.registry import Counterexample
from dpslice.check.target import Target
from dpslice.layout import DPLayout, SliceCall

if TYPE_CHECKING:
    import torch

__all__ = ["Invoke", "LayoutCall", "oracle_slice", "slice_with", "valid_rank"]


def valid_rank(layout: DPLayout, rank: object) -> int | None:
    """``rank`` if it is an int rank of ``layout``, else ``None``."""
    if type(rank) is int and 0 <= rank < layout.dp_size:
        return rank
    return None


def oracle_slice(layout: DPLayout, rank: int) -> tuple[int, int]:
    """Where ``rank``'s rows sit, found by walking the layout: ``(start, length)``."""
    span = layout.span(rank)
    return (span.first_row, span.num_rows)


def slice_with(buffer: torch.Tensor, bounds: tuple[Any, Any]) -> torch.Tensor:
    """``buffer`` sliced as an engine's capturer slices it, with the bounds as returned.

    Python ints slice for free; each 0-dim tensor bound is read on the host here.
    """
    start, length = bounds
    return buffer[start : start + length]


def _gpu_counts(layout: DPLayout, call: SliceCall) -> list[int]:
    rank = valid_rank(layout, call.dp_rank)
    if rank is not None:
        return layout.gpu_counts(rank)
    counts = call.global_num_tokens_cpu
    if isinstance(counts, list) and all(type(count) is int for count in counts):
        return counts
    return layout.gpu_counts(0)


#: Calls a target with keyword arguments and classifies what it did.
Invoke = Callable[[Target, Mapping[str, object]], Outcome]


class LayoutCall:
    """One call of ``target`` with ``call``, made about ``layout``, already run.

    The arguments are built first, then ``invoke`` calls the target with them
    (a property that watches the call itself, for syncs say, passes its own).

    Attributes:
        rank: the call's rank if valid for the layout, else ``None``.
        arguments: the keyword arguments the target was given.
        outcome: what it did.
    """

    def __init__(
        self, target: Target, layout: DPLayout, call: SliceCall, *, invoke: Invoke = call_target
    ) -> None:
        self.target = target
        self.layout = layout
        self.rank = valid_rank(layout, call.dp_rank)
        self.arguments = target.arguments(call, _gpu_counts(layout, call))
        self.outcome: Outcome = invoke(target, self.arguments)

    def counterexample(
        self,
        expected: str,
        why: str,
        *,
        expected_slice: tuple[int, int] | None = None,
        got_rows: str | None = None,
        expected_rows: str | None = None,
    ) -> Counterexample:
        """This call as the counterexample of a property (see :class:`Counterexample`)."""
        return Counterexample(
            layout=self.layout,
            rank=self.rank,
            function=self.target.name,
            arguments=self.arguments,
            outcome=self.outcome,
            expected=expected,
            why=why,
            expected_slice=expected_slice,
            got_rows=got_rows,
            expected_rows=expected_rows,
        )
