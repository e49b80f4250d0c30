"""Two implementations compared, ``dpslice check NEW --against OLD``: both called with the
same inputs, each with the arguments its signature names, OLD judged as NEW's contract.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hypothesis import strategies as st

from dpslice.check.battery import _kinds
from dpslice.check.calls import LayoutCall, slice_with
from dpslice.check.draws import COUNTED, SMALL_COUNT, RankExample, drawn
from dpslice.check.judge import outside
from dpslice.check.outcome import Outcome, OutcomeKind
from dpslice.check.registry import Counterexample, Property, Tier
from dpslice.check.rows import render_rows, rows_phrase
from dpslice.check.sync_property import _describe as _sync_describe
from dpslice.check.sync_property import _sync_free
from dpslice.check.target import Target
from dpslice.layout import DPLayout, Mode, SliceCall
from dpslice.strategies import InvalidCall

if TYPE_CHECKING:
    import torch

__all__ = ["AGAINST_SYNC_FREE", "PROPERTIES", "SAME_REFUSALS_AS_AGAINST", "SAME_SLICE_AS_AGAINST"]


def _needs_against(target: Target) -> str | None:
    if target.against is None:
        return "it compares two implementations: run with --against OLD"
    return None


def _against(target: Target) -> Target:
    assert target.against is not None, "a comparison runs only with --against"
    return target.against


def _view(layout: DPLayout, rank: int | None, target: Target, outcome: Outcome) -> Any:
    """The rows ``outcome``'s bounds slice out of the rank's gathered buffer; ``None`` where
    there is no slice in the buffer."""
    if rank is None or outcome.slice is None or outcome.bounds is None:
        return None
    buffer = layout.gathered(rank, device=target.device)
    if outside(*outcome.slice, len(buffer)) is not None:
        return None
    return slice_with(buffer, outcome.bounds)


def _same_view(new: torch.Tensor | None, old: torch.Tensor | None) -> bool:
    if new is None or old is None:
        return new is old
    if len(new) == 0 and len(old) == 0:
        return True
    return new.storage_offset() == old.storage_offset() and new.shape == old.shape


def _agree(new: Outcome, old: Outcome) -> bool:
    """Whether two outcomes are the same answer: one slice, or one kind of error."""
    if new.slice is not None or old.slice is not None:
        return new.slice == old.slice
    return new.kind is old.kind


def _compared(
    target: Target, layout: DPLayout, call: SliceCall
) -> tuple[LayoutCall, LayoutCall, dict[str, Any]] | None:
    """Both calls, and how a counterexample shows the views and the other side; ``None``
    when they agree."""
    new = LayoutCall(target, layout, call)
    old = LayoutCall(_against(target), layout, call)
    new_view = _view(layout, new.rank, target, new.outcome)
    old_view = _view(layout, old.rank, old.target, old.outcome)
    if _agree(new.outcome, old.outcome) and _same_view(new_view, old_view):
        return None
    shown = old.outcome.describe()
    if old_view is not None:
        shown = f"{shown}: {rows_phrase(old_view.cpu())}"
    beside = {
        "got_rows": None if new_view is None else render_rows(new_view.cpu()),
        "related": (old.beside(shown, "against"),),
    }
    return new, old, beside


def _right(called: LayoutCall, capture: bool) -> bool:
    """Whether one side is right: the oracle's slice, or a deliberate error in capture."""
    if capture and called.outcome.kind is OutcomeKind.DELIBERATE:
        return True
    return called.outcome.slice == called.expected_slice


def _verdict(new: LayoutCall, old: LayoutCall, capture: bool) -> str:
    new_right, old_right = _right(new, capture), _right(old, capture)
    if new_right and not old_right:
        return "the target is right, --against is wrong"
    if old_right and not new_right:
        return "--against is right, the target is wrong"
    if new_right and old_right:
        return "both are right (a deliberate error and the slice, during capture)"
    return "neither is the oracle's"


def _what(outcome: Outcome) -> str:
    if outcome.slice is not None:
        return f"returns {outcome.slice}"
    return {
        OutcomeKind.MALFORMED: "returns no slice",
        OutcomeKind.DELIBERATE: "refuses deliberately",
        OutcomeKind.INCIDENTAL: "crashes",
    }.get(outcome.kind, outcome.kind.value)


def _same_slice(target: Target, example: RankExample) -> Counterexample | None:
    layout, rank = example
    found = _compared(target, layout, layout.call(rank))
    if found is None:
        return None
    new, old, beside = found
    expected_slice = new.expected_slice
    expected_tags = new.expected_rows()
    capture = layout.mode is Mode.GRAPH_CAPTURE
    if _agree(new.outcome, old.outcome):
        differ = "the same bounds slice different views of the buffer"
    else:
        differ = f"the target {_what(new.outcome)}, --against {_what(old.outcome)}"
    return new.counterexample(
        "the --against implementation's answer; the oracle's slice is "
        f"{expected_slice}: {rows_phrase(expected_tags)}",
        f"{differ}: {_verdict(new, old, capture)}",
        expected_slice=expected_slice,
        expected_rows=render_rows(expected_tags),
        **beside,
    )


def _same_refusal(target: Target, invalid: InvalidCall) -> Counterexample | None:
    found = _compared(target, invalid.layout, invalid.call)
    if found is None:
        return None
    new, old, beside = found
    label = f"{invalid.expected.__name__} ({invalid.defect})"
    return new.counterexample(
        f"the --against implementation's answer; a deliberate error, such as {label}, is right",
        f"the call is invalid ({invalid.defect}): the target {_what(new.outcome)}, "
        f"--against {_what(old.outcome)}",
        **beside,
    )


def _refusal_kinds(target: Target) -> dict[str, st.SearchStrategy[InvalidCall]]:
    """The kinds of defect both sides can see, each searched apart."""
    seen_by_against = _kinds(_against(target))
    return {kind: drawn for kind, drawn in _kinds(target).items() if kind in seen_by_against}


def _no_refusal_kinds(target: Target) -> str | None:
    missing = _needs_against(target)
    if missing is not None:
        return missing
    if not target.contract.counted_modes:
        return f"the {target.contract.name} contract has no CPU counts to put a defect in"
    if not _refusal_kinds(target):
        return "the two sides share no parameter in which an invalid call's defect is visible"
    return None


SAME_SLICE_AS_AGAINST = drawn(
    "same_slice_as_against",
    "In every state the contract reaches, the target and --against give one answer.",
    _same_slice,
    modes=None,
    gather_skipped=None,
    requires=_needs_against,
)

SAME_REFUSALS_AS_AGAINST: Property[InvalidCall] = Property(
    name="same_refusals_as_against",
    statement="On inputs no engine produces, the target and --against give one answer.",
    draws=(
        "invalid_calls(kinds=[kind], contract=contract, max_count="
        f"{SMALL_COUNT}) for each kind of defect visible to both sides"
    ),
    strategy=lambda target: st.one_of(*_refusal_kinds(target).values()),
    check=_same_refusal,
    requires=_no_refusal_kinds,
    tier=Tier.HARDENING,
    kinds=_refusal_kinds,
)


def _old_sync_free(target: Target, example: RankExample) -> Counterexample | None:
    return _sync_free(_against(target), example)


AGAINST_SYNC_FREE = drawn(
    "against_sync_free",
    "sync_free for --against: reported beside the target's, never failing the run.",
    _old_sync_free,
    modes=COUNTED,
    requires=_needs_against,
    describe=_sync_describe,
    tier=Tier.HARDENING,
)

#: The comparisons, in report order, after the built-in battery.
PROPERTIES = (SAME_SLICE_AS_AGAINST, SAME_REFUSALS_AS_AGAINST, AGAINST_SYNC_FREE)
