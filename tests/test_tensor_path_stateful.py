"""A rank's forwards over time: eager forwards, graph replays and captures, reused batches.

The state machine holds batch objects across steps, reuses some for later
forwards with new counts (as an engine that keeps a batch object does) and
checks every slice against the oracle buffer.  The reference keeps no state
and survives every sequence; the faithful GPU-tensor path caches its bounds
on the batch object and is caught returning stale bounds (hazard 8, docs/hazards.md) with a
short, shrunk sequence of steps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)

from dpslice import DPLayout, Mode, dp_local_slice
from dpslice.errors import CountsUnavailableError
from dpslice.specimens.tensor_path import ForwardBatch, capturer_bounds
from dpslice.strategies import dp_layouts

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]

#: A slice implementation as the machine drives it: the batch object, what
#: the forward really is, and the rank; returns ``(start, length)``.
Slicer = Callable[[ForwardBatch, DPLayout, int], tuple[int, int]]


def reference_slicer(batch: ForwardBatch, layout: DPLayout, rank: int) -> tuple[int, int]:
    """The CPU reference, reading the batch's CPU counts each time."""
    found = dp_local_slice(
        batch.global_num_tokens_cpu,
        rank,
        dp_size=layout.dp_size,
        can_run_graph=layout.mode.is_graph,
        graph_extent=layout.graph_extent,
    )
    return found.start, found.length


def tensor_path_slicer(batch: ForwardBatch, layout: DPLayout, rank: int) -> tuple[int, int]:
    """The faithful tensor path, handed the extent in rows so only hazard 8 remains."""
    start, length = capturer_bounds(
        batch,
        dp_rank=rank,
        can_run_graph=layout.mode.is_graph,
        cuda_graph_batch=layout.graph_extent,
    )
    return int(start), int(length)


@functools.cache
def forwards(dp_size: int) -> st.SearchStrategy[DPLayout]:
    """Eager and replay forwards of ``dp_size`` ranks, small enough to materialise."""
    return dp_layouts(
        modes=[Mode.SUM_LEN, Mode.MAX_LEN, Mode.GRAPH_REPLAY],
        min_dp_size=dp_size,
        max_dp_size=dp_size,
        max_count=8,
        attn_tp_sizes=(1, 2),
        max_num_tokens_per_bs=2,
        gather_skipped=False,
    )


@dataclass
class HeldBatch:
    """A batch object the engine keeps, and the forward it currently describes."""

    batch: ForwardBatch
    layout: DPLayout


class ForwardLifecycle(RuleBasedStateMachine):
    """Forwards of one DP rank; ``slicer`` and ``device`` are set by :func:`lifecycle`."""

    slicer: Slicer
    device: str

    held = Bundle("held")

    @initialize(dp_size=st.integers(1, 4), data=st.data())
    def choose_rank(self, dp_size: int, data: st.DataObject) -> None:
        self.dp_size = dp_size
        self.dp_rank = data.draw(st.integers(0, dp_size - 1), label="dp_rank")

    def _draw_forward(self, data: st.DataObject) -> DPLayout:
        return data.draw(forwards(self.dp_size), label="forward")

    def _batch_for(self, layout: DPLayout) -> ForwardBatch:
        return ForwardBatch.from_layout(layout, self.dp_rank, device=self.device)

    @rule(target=held, data=st.data())
    def new_batch(self, data: st.DataObject) -> HeldBatch:
        layout = self._draw_forward(data)
        return HeldBatch(self._batch_for(layout), layout)

    @rule(target=held, bs=st.integers(1, 4), num_tokens_per_bs=st.integers(1, 2))
    def capture(self, bs: int, num_tokens_per_bs: int) -> HeldBatch:
        """Capture a graph: a dummy batch, no CPU counts; the slicer may refuse explicitly."""
        layout = DPLayout.capture(self.dp_size, bs, num_tokens_per_bs)
        held = HeldBatch(self._batch_for(layout), layout)
        try:
            found = type(self).slicer(held.batch, layout, self.dp_rank)
        except CountsUnavailableError:
            return held  # the reference's explicit refusal (hazard 2)
        self._check(found, layout)
        return held

    @rule(held=held, data=st.data())
    def reuse_batch(self, held: HeldBatch, data: st.DataObject) -> None:
        """Point a kept batch object at the next forward's counts."""
        layout = self._draw_forward(data)
        fresh = self._batch_for(layout)
        held.batch.set_counts(fresh.global_num_tokens_gpu, fresh.global_num_tokens_cpu)
        held.layout = layout

    @rule(held=held)
    def forward(self, held: HeldBatch) -> None:
        """Run the forward the batch describes (eager or replay) and slice this rank's rows."""
        if held.layout.mode is Mode.GRAPH_CAPTURE:
            return  # a capture batch is only sliced while capturing
        found = type(self).slicer(held.batch, held.layout, self.dp_rank)
        self._check(found, held.layout)

    def _check(self, found: tuple[int, int], layout: DPLayout) -> None:
        start, length = found
        span = layout.span(self.dp_rank)
        assert (start, length) == (span.first_row, span.num_rows), (
            f"rank {self.dp_rank} sliced rows [{start}, {start + length}) of {layout!r}; "
            f"its own rows are [{span.first_row}, {span.first_row + span.num_rows})"
        )
        rows = layout.gathered(self.dp_rank, device=self.device)[start : start + length]
        assert torch.equal(rows, layout.expected_rows(self.dp_rank, device=self.device))


def lifecycle(slicer: Slicer, device: str, name: str) -> type[ForwardLifecycle]:
    return type(name, (ForwardLifecycle,), {"slicer": staticmethod(slicer), "device": device})


def lifecycle_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        stateful_step_count=12,
        deadline=None,
        derandomize=True,
        database=None,
        # The explain phase reruns the shrunk case line by line: minutes, for a
        # report whose steps already say what happened.
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow],
    )


@pytest.mark.parametrize("device", DEVICES)
def test_reference_slices_right_through_any_lifecycle(device: str) -> None:
    """The reference keeps no state: reused batch objects cannot make it stale."""
    machine = lifecycle(reference_slicer, device, "ReferenceLifecycle")
    run_state_machine_as_test(machine, settings=lifecycle_settings(100))


@pytest.mark.parametrize("device", DEVICES)
def test_lifecycle_catches_the_tensor_paths_stale_cached_bounds_hazard_8(device: str) -> None:
    """The machine finds hazard 8 and shrinks it to: fill the cache, reuse the batch, forward.

    The first slice on a batch object (a forward, or a capture) fills its
    cache; after ``reuse_batch`` the next forward returns those old bounds.
    """
    machine = lifecycle(tensor_path_slicer, device, "TensorPathLifecycle")
    with pytest.raises(AssertionError, match="sliced rows") as caught:
        run_state_machine_as_test(machine, settings=lifecycle_settings(200))
    steps = "\n".join(getattr(caught.value, "__notes__", []))
    calls = [line.split("(")[0] for line in steps.splitlines() if "state." in line]
    calls = [call.split("state.")[1] for call in calls if not call.endswith("teardown")]
    assert calls[-2:] == ["reuse_batch", "forward"], steps
    assert calls[-3] in ("capture", "forward"), steps  # what filled the cache
    assert len(calls) <= 5, f"expected a shrunk sequence, got:\n{steps}"
