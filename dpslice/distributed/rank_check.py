"""One rank's side of one layout: gather as the engine does, then judge as the battery does.

The gathers are all that sets the round trip apart from the battery: the
counts and the buffer come from real collectives instead of the layout model.
Before the target runs, what the collectives produced is compared with the
model: the CPU count list (every rank derives the same), its agreement with the
GPU count tensor, and the buffer.  A difference there is the harness's failure
(:class:`GatherMismatchError`, which ends the rank and so the run, with no
verdict), never the target's.

The target is then called with the counts this rank gathered, through the
battery's :class:`~dpslice.check.calls.LayoutCall`, and judged by the
battery's own :func:`~dpslice.check.judge.judge_rows` (its slice of the
gathered buffer holds exactly its own rows) and
:func:`~dpslice.check.judge.judge_inputs` (it left the counts as it got them).

Only the gathers are collective; everything after them is local, so a target
that raises on one rank leaves the group in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from dpslice._numpy_notice import torch
from dpslice.check.calls import CallObserver, LayoutCall
from dpslice.check.inflight import portable_counterexample
from dpslice.check.judge import judge_inputs, judge_rows
from dpslice.check.outcome import Outcome, call_target
from dpslice.check.registry import Counterexample
from dpslice.check.rows import render_rows
from dpslice.check.target import Target
from dpslice.distributed.collectives import RowGatherer, gather_forward
from dpslice.distributed.consistency import counts_disagreement
from dpslice.distributed.errors import GatherMismatchError
from dpslice.layout import DPLayout

__all__ = ["check_layout"]


def check_layout(
    layout: DPLayout,
    rank: int,
    target: Target,
    gatherer: RowGatherer,
    device: torch.device,
    *,
    observer: CallObserver | None = None,
) -> Counterexample | None:
    """Rank ``rank``'s side of one round trip; every rank of the group must call it together.

    Returns ``None`` when the rank's slice holds exactly its own rows, else
    the counterexample, ready to cross to another process (its arguments
    rendered).  ``observer`` is told of the call just before the target runs and
    once it is back: should it never return, the supervisor can still show it.

    Raises:
        GatherMismatchError: the collectives did not produce what the layout model
            says the engine hands the slicer (a harness failure).
        Exception: a collective broke.
    """
    gathered = gather_forward(layout, rank, gatherer, device)
    call = layout.call(rank)
    cpu, gpu = gathered.global_num_tokens_cpu, gathered.global_num_tokens_gpu
    first = gathered.peer_lists[0]
    if any(row != first for row in gathered.peer_lists):
        raise GatherMismatchError(
            layout, rank, f"the ranks derived different count lists: {gathered.peer_lists}"
        )
    if cpu != call.global_num_tokens_cpu:
        raise GatherMismatchError(
            layout,
            rank,
            f"the gathered CPU counts {cpu} are not the {call.global_num_tokens_cpu} the "
            "layout model hands the slicer",
        )
    disagreement = counts_disagreement(cpu, gpu, dp_rank=rank)
    if disagreement is not None:
        raise GatherMismatchError(layout, rank, disagreement)
    model = layout.gathered(rank, device=device)
    if not torch.equal(gathered.buffer, model):
        raise GatherMismatchError(
            layout,
            rank,
            f"the collectives' buffer {render_rows(gathered.buffer.cpu())} differs from the "
            f"layout model's {render_rows(model.cpu())}",
        )

    # The counts this rank gathered, not the model's (equal, as checked above).
    call = replace(call, global_num_tokens_cpu=cpu)

    def invoke(target: Target, arguments: Mapping[str, object]) -> Outcome:
        if observer is None:
            return call_target(target, arguments)
        observer.calling(layout, call, list(cpu))
        try:
            return call_target(target, arguments)
        finally:
            observer.returned()

    arguments = target.arguments(call, gpu)
    called = LayoutCall(target, layout, call, invoke=invoke, arguments=arguments)
    found = judge_rows(called, gathered.buffer) or judge_inputs(called)
    return None if found is None else portable_counterexample(found)
