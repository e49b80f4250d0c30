"""One rank's verdict on one layout: gather, slice with the target, compare.

The checks, in order, each a distinct failure kind so a counterexample says
what broke:

* ``counts``: the CPU count list the gathers produced is not the one the
  layout model says the engine hands the slicer, or the ranks disagree on it;
* ``counts-inconsistent``: the CPU list and the GPU counts tensor disagree
  (the debug validator, before the target runs);
* ``buffer``: the buffer the collectives produced is not the layout model's;
* ``target-raised``: the target raised on a valid layout;
* ``bad-return``: the target returned something other than ``(start, length)``;
* ``counts-mutated``: the counts disagree after the target ran (it wrote to them);
* ``out-of-bounds``: the slice runs outside the gathered buffer;
* ``slice``: the slice does not hold exactly this rank's own rows.

Only the gathers are collective; everything after them is local, so a target
that raises on one rank leaves the group in step.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import torch

from dpslice.check.outcome import result_outcome
from dpslice.check.target import Target
from dpslice.distributed.collectives import RowGatherer, gather_forward
from dpslice.distributed.consistency import counts_disagreement
from dpslice.layout import DPLayout

__all__ = ["RankOutcome", "check_layout", "describe_rows", "render_call"]

#: Tag rows shown in a report before it is cut short.
_SHOWN_ROWS = 12


@dataclass(frozen=True)
class RankOutcome:
    """One rank's verdict on one layout; ``failure`` is ``None`` when it passed."""

    rank: int
    failure: str | None = None
    message: str = ""
    got: str = ""
    expected: str = ""

    @property
    def ok(self) -> bool:
        return self.failure is None


def describe_rows(rows: torch.Tensor) -> str:
    """Tag rows as ``[(rank, local_row), ...]``, cut short after a dozen."""
    tags = [tuple(int(value) for value in row) for row in rows[: _SHOWN_ROWS + 1].tolist()]
    shown = ", ".join(f"({rank}, {local})" for rank, local in tags[:_SHOWN_ROWS])
    more = f", ... ({rows.shape[0]} rows)" if rows.shape[0] > _SHOWN_ROWS else ""
    return f"[{shown}{more}]"


def render_call(target: Target, arguments: Mapping[str, object]) -> str:
    """``f(name=value, ...)`` as the report shows a call; the values are their reprs."""

    def shown(value: object) -> str:
        try:
            return repr(value)
        except Exception as exc:  # a target-made object in the arguments
            return f"<{type(value).__name__}; its repr raised {type(exc).__name__}>"

    rendered = ", ".join(f"{name}={shown(value)}" for name, value in arguments.items())
    return f"{target.name}({rendered})"


def check_layout(
    layout: DPLayout,
    rank: int,
    target: Target,
    gatherer: RowGatherer,
    device: torch.device,
    *,
    on_call: Callable[[str], None] | None = None,
) -> RankOutcome:
    """Rank ``rank``'s side of one round trip; every rank of the group must call it together.

    ``on_call`` is told the call, as text, just before the target runs: should
    the call never return or end the process, the driver can still show it.

    Raises:
        Exception: only for harness failures (a collective broke); a wrong or
            raising target is reported in the returned outcome.
    """
    gathered = gather_forward(layout, rank, gatherer, device)
    call = layout.call(rank)

    def failed(kind: str, message: str, got: object, expected: object) -> RankOutcome:
        return RankOutcome(rank, kind, message, str(got), str(expected))

    first = gathered.peer_lists[0]
    if any(row != first for row in gathered.peer_lists):
        return failed(
            "counts", "the ranks derived different count lists", gathered.peer_lists, first
        )
    if gathered.global_num_tokens_cpu != call.global_num_tokens_cpu:
        return failed(
            "counts",
            "the gathered CPU counts are not what the layout model hands the slicer",
            gathered.global_num_tokens_cpu,
            call.global_num_tokens_cpu,
        )
    cpu, gpu = gathered.global_num_tokens_cpu, gathered.global_num_tokens_gpu
    report = counts_disagreement(cpu, gpu, dp_rank=rank)
    if report is not None:
        return failed("counts-inconsistent", report, gpu.tolist(), cpu)
    model = layout.gathered(rank, device=device)
    if not torch.equal(gathered.buffer, model):
        return failed(
            "buffer",
            "the collectives' buffer differs from the layout model's",
            describe_rows(gathered.buffer),
            describe_rows(model),
        )

    # The counts this rank gathered, not the model's: a write to them is seen below.
    arguments = target.arguments(replace(call, global_num_tokens_cpu=cpu), gpu)
    span = layout.span(rank)
    want = (span.first_row, span.num_rows)
    if on_call is not None:
        on_call(render_call(target, arguments))
    try:
        result = target.function(**arguments)
    except Exception as error:
        return failed("target-raised", traceback.format_exc(), repr(error), want)
    outcome = result_outcome(result)
    if outcome.slice is None:
        message = f"{target.spec} {outcome.describe()}"
        return failed("bad-return", message, outcome.value, f"(start, length) = {want}")
    start, length = outcome.slice

    report = counts_disagreement(cpu, gpu, dp_rank=rank)
    if report is not None or cpu != call.global_num_tokens_cpu:
        return failed(
            "counts-mutated",
            f"the counts changed while the target ran (it must not write to them): {report}",
            (cpu, gpu.tolist()),
            call.global_num_tokens_cpu,
        )
    total = gathered.buffer.shape[0]
    if start < 0 or length < 0 or start + length > total:
        return failed(
            "out-of-bounds",
            f"rows [{start}, {start + length}) are outside the {total}-row buffer",
            f"(start, length) = {(start, length)}",
            f"(start, length) = {want}",
        )
    sliced = gathered.buffer[start : start + length]
    expected = layout.expected_rows(rank, device=device)
    if not torch.equal(sliced, expected):
        return failed(
            "slice",
            f"rows [{start}, {start + length}) are not rank {rank}'s own rows",
            f"(start, length) = {(start, length)}: {describe_rows(sliced)}",
            f"(start, length) = {want}: {describe_rows(expected)}",
        )
    return RankOutcome(rank)
