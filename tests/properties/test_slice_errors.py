"""Properties of the reference slice's explicit errors.

Every generated defect raises exactly the error it is labelled with, and the
capture phase's ``None`` counts raise ``CountsUnavailableError`` whatever the
rank, DP size, graph flag and extent.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dpslice import Mode
from dpslice.errors import CountsUnavailableError, InvalidInputError
from dpslice.strategies import dp_layouts, invalid_calls, layouts_and_ranks
from tests.engine import engine_slice, reference_slice


@given(invalid_calls())
def test_every_invalid_call_raises_exactly_its_labelled_error(invalid):
    """A call with one defect raises the error its label names: that class, not a
    subclass, a sibling or an incidental TypeError/IndexError."""
    with pytest.raises(InvalidInputError) as raised:
        reference_slice(invalid.call)
    assert type(raised.value) is invalid.expected, invalid.defect


@given(
    layouts_and_ranks(dp_layouts(modes=[Mode.GRAPH_CAPTURE])),
    st.booleans(),
    st.none() | st.integers(0, 2**40),
)
def test_capture_none_counts_raise_counts_unavailable_for_every_rank_size_and_flag(
    layout_and_rank, can_run_graph, cuda_graph_batch
):
    """During capture ``global_num_tokens_cpu`` is None: both entry points raise
    CountsUnavailableError for every rank and DP size, graph flag and extent."""
    layout, rank = layout_and_rank
    call = layout.call(rank)
    assert call.global_num_tokens_cpu is None
    call = dataclasses.replace(
        call,
        can_run_graph=can_run_graph,
        graph_extent=cuda_graph_batch,
        cuda_graph_batch=cuda_graph_batch,
    )
    with pytest.raises(CountsUnavailableError):
        reference_slice(call)
    with pytest.raises(CountsUnavailableError):
        engine_slice(call)
