"""Call a target about one layout (:class:`LayoutCall`), the building block of every property."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from dpslice.check.outcome import Outcome, call_target, is_tensor
from dpslice.check.registry import Counterexample, RelatedCall, render_call
from dpslice.check.target import Target
from dpslice.layout import DPLayout, SliceCall

if TYPE_CHECKING:
    import torch

__all__ = ["CallObserver", "LayoutCall", "slice_with", "valid_rank"]


def valid_rank(layout: DPLayout, rank: object) -> int | None:
    """``rank`` if it is an int rank of ``layout``, else ``None``."""
    if type(rank) is int and 0 <= rank < layout.dp_size:
        return rank
    return None


def slice_with(buffer: torch.Tensor, bounds: tuple[Any, Any]) -> torch.Tensor:
    """``buffer`` sliced as an engine's capturer slices it, with the bounds as returned
    (a tensor bound is read on the host here, any other through ``__index__``)."""
    start, length = (bound if is_tensor(bound) else operator.index(bound) for bound in bounds)
    return buffer[start : start + length]


def _gpu_counts(target: Target, layout: DPLayout, call: SliceCall) -> list[int]:
    rank = valid_rank(layout, call.dp_rank)
    if rank is not None:
        return target.contract.device_counts(layout, rank)
    counts = call.global_num_tokens_cpu
    if isinstance(counts, list) and all(type(count) is int for count in counts):
        return counts
    return target.contract.device_counts(layout, 0)


def _fresh(value: object) -> object:
    from dpslice._numpy_notice import torch

    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, list):
        return [_fresh(item) for item in value]
    return value


def _same(given: object, kept: object) -> bool:
    from dpslice._numpy_notice import torch

    if isinstance(kept, torch.Tensor):
        return (
            isinstance(given, torch.Tensor)
            and given.dtype == kept.dtype
            and given.shape == kept.shape
            and bool(torch.equal(given, kept))
        )
    if isinstance(kept, list):
        return (
            isinstance(given, list)
            and len(given) == len(kept)
            and all(_same(item, other) for item, other in zip(given, kept, strict=True))
        )
    return True


class CallObserver(Protocol):
    """Told of every call of the target, before it runs and once it is back: a
    supervised worker records the call in flight."""

    def calling(self, layout: DPLayout, call: SliceCall, gpu_counts: list[int]) -> None: ...

    def returned(self) -> None: ...


#: The observer of this process's calls; ``None`` costs nothing.
call_observer: CallObserver | None = None


class LayoutCall:
    """One call of ``target`` with ``call``, made about ``layout``, already run.

    ``invoke`` calls the target (a property that watches the call passes its own);
    ``arguments`` replaces the convention's (the round trip's gathered counts).  The
    target is given copies: what it changes in place shows in :attr:`mutated`.

    Attributes:
        rank: the call's rank if valid for the layout, else ``None``.
        arguments: the keyword arguments the target was given, as they were
            before the call.
        outcome: what it did.
        mutated: the arguments the target changed in place, by name.
    """

    def __init__(
        self,
        target: Target,
        layout: DPLayout,
        call: SliceCall,
        *,
        invoke: Callable[[Target, Mapping[str, object]], Outcome] = call_target,
        arguments: Mapping[str, object] | None = None,
    ) -> None:
        self.target = target
        self.layout = layout
        self.rank = valid_rank(layout, call.dp_rank)
        observer = call_observer if arguments is None else None
        if arguments is None:
            gpu_counts = _gpu_counts(target, layout, call)
            self.arguments = target.arguments(call, gpu_counts)
        else:
            self.arguments = dict(arguments)
        given = {name: _fresh(value) for name, value in self.arguments.items()}
        if observer is None:
            self.outcome: Outcome = invoke(target, given)
        else:
            observer.calling(layout, call, gpu_counts)
            try:
                self.outcome = invoke(target, given)
            finally:
                observer.returned()
        self.mutated = tuple(
            name for name, value in self.arguments.items() if not _same(given[name], value)
        )

    @property
    def expected_slice(self) -> tuple[int, int]:
        """The oracle's ``(start, length)`` for this call's rank, as its contract owns rows:
        where the rows sit, found by walking the layout."""
        assert self.rank is not None, "an invalid rank has no slice"
        span = self.layout.span(self.rank, self.target.contract.owns)
        return (span.first_row, span.num_rows)

    def expected_rows(self, *, device: str = "cpu") -> torch.Tensor:
        """The tags the slice must hold, as the contract owns rows."""
        assert self.rank is not None, "an invalid rank has no slice"
        return self.layout.expected_rows(self.rank, self.target.contract.owns, device=device)

    def counterexample(
        self,
        expected: str,
        why: str,
        *,
        expected_slice: tuple[int, int] | None = None,
        got_rows: str | None = None,
        expected_rows: str | None = None,
        related: tuple[RelatedCall, ...] = (),
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
            related=related,
        )

    def beside(self, outcome: str | None = None, label: str | None = None) -> RelatedCall:
        """This call, shown beside another's counterexample; ``outcome`` as it describes it."""
        return RelatedCall(
            rank=self.rank,
            call=render_call(self.target.name, self.arguments),
            outcome=self.outcome.describe() if outcome is None else outcome,
            label=label,
        )
