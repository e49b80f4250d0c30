"""Properties of the reference slice against the layout model, for every mode.

The oracle is the materialised buffer (``DPLayout.gathered``) where it is small
enough, and the walked span (``DPLayout.span``) where counts reach the int32
limit.  Capture has no CPU counts to slice with; its property lives in
``test_slice_errors.py``.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
from hypothesis import event, given

from dpslice import DPLayout, DPSlice, Mode, SliceCall
from dpslice.strategies import dp_layouts, layouts_and_ranks
from tests.engine import engine_slice, reference_slice

SLICEABLE = [Mode.SUM_LEN, Mode.MAX_LEN, Mode.GRAPH_REPLAY]

#: Layouts whose buffers are cheap to materialise; gathers skipped or not.
SMALL = layouts_and_ranks(dp_layouts(modes=SLICEABLE, max_count=64))
#: Counts up to 2**31 - 1 and DP sizes up to 64: only the span is computed.
LARGE = layouts_and_ranks(dp_layouts(modes=SLICEABLE))


def _record_kind(layout: DPLayout) -> None:
    """Count examples per mode in ``--hypothesis-show-statistics``, to see each mode is met."""
    event(f"{layout.mode.name}{', gather skipped' if layout.gather_skipped else ''}")


def _all_slices(layout: DPLayout) -> list[DPSlice]:
    return [reference_slice(layout.call(rank)) for rank in range(layout.dp_size)]


@given(SMALL)
def test_slice_of_the_gathered_buffer_is_exactly_this_ranks_rows(layout_and_rank):
    """``gathered(rank)[slice]`` holds this rank's own rows in order and nothing else."""
    layout, rank = layout_and_rank
    _record_kind(layout)
    own = reference_slice(layout.call(rank))
    assert layout.gathered(rank)[own.slice].tolist() == layout.expected_rows(rank).tolist()


@given(SMALL)
def test_engine_entry_slice_is_exactly_this_ranks_rows(layout_and_rank):
    """Through ``get_dp_local_slice_cpu`` with the graph's batch size and rows per request,
    the slice of the gathered buffer is still exactly this rank's rows."""
    layout, rank = layout_and_rank
    _record_kind(layout)
    own = engine_slice(layout.call(rank))
    assert layout.gathered(rank)[own.slice].tolist() == layout.expected_rows(rank).tolist()


@given(dp_layouts(modes=SLICEABLE, gather_skipped=False))
def test_slices_of_all_ranks_are_disjoint_and_inside_the_buffer(layout):
    """Over a full gather, no two ranks' slices share a row and none leaves the buffer."""
    rows = layout.gathered_rows(0)
    slices = sorted(_all_slices(layout))
    assert all(0 <= own.start <= own.stop <= rows for own in slices)
    assert all(left.stop <= right.start for left, right in itertools.pairwise(slices))


@given(dp_layouts(modes=[Mode.SUM_LEN], gather_skipped=False))
def test_sum_len_slices_tile_the_buffer_exactly(layout):
    """Under SUM_LEN, the ranks' slices in rank order cover the buffer back to back."""
    slices = _all_slices(layout)
    assert slices[0].start == 0
    assert all(left.stop == right.start for left, right in itertools.pairwise(slices))
    assert slices[-1].stop == layout.gathered_rows(0)


@given(LARGE)
def test_slice_is_the_walked_span_in_exact_ints_up_to_the_int32_limit(layout_and_rank):
    """With counts up to 2**31 - 1 and DP sizes up to 64, the result is a ``DPSlice`` of
    ``int`` bounds (not bool, numpy or tensor) equal to the span found by walking the
    contributions: no overflow, no wrap."""
    layout, rank = layout_and_rank
    _record_kind(layout)
    own = reference_slice(layout.call(rank))
    assert type(own) is DPSlice
    assert (type(own.start), type(own.length)) == (int, int)
    span = layout.span(rank)
    assert (own.start, own.length) == (span.first_row, span.num_rows)


def _as_numpy(call: SliceCall) -> SliceCall:
    """``call`` with every integer a NumPy scalar, as code that kept NumPy values passes it."""
    counts = call.global_num_tokens_cpu
    assert counts is not None
    extent = None if call.graph_extent is None else np.int64(call.graph_extent)
    return dataclasses.replace(
        call,
        global_num_tokens_cpu=[np.int64(count) for count in counts],
        dp_rank=np.int32(call.dp_rank),
        dp_size=np.int16(call.dp_size),
        graph_extent=extent,
    )


@given(LARGE)
def test_numpy_integer_scalars_give_the_walked_span_as_exact_ints(layout_and_rank):
    """NumPy integer scalars in place of ints give the same span, as Python ints."""
    layout, rank = layout_and_rank
    own = reference_slice(_as_numpy(layout.call(rank)))
    span = layout.span(rank)
    assert (own.start, own.length) == (span.first_row, span.num_rows)
    assert (type(own.start), type(own.length)) == (int, int)
