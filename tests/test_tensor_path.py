"""The GPU-tensor path (dpslice.specimens.tensor_path) on CPU tensors: its shape, where it is right.

The CUDA versions of the equivalence properties live in tests/cuda/; here the
same code runs on CPU tensors, which show every arithmetic fact (bounds,
caching, int32 wrap) but not the syncs.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dpslice import DPLayout, Mode, dp_local_slice
from dpslice.specimens.tensor_path import (
    ForwardBatch,
    capturer_bounds,
    capturer_slice,
    get_dp_local_info,
    tensor_path_slice,
    upstream_tensor_path_slice,
)
from dpslice.strategies import dp_layouts, layouts_and_ranks

EAGER_AND_REPLAY = [Mode.SUM_LEN, Mode.MAX_LEN, Mode.GRAPH_REPLAY]
INT32_MAX = 2**31 - 1


def reference_bounds(layout: DPLayout, rank: int) -> tuple[int, int]:
    call = layout.call(rank)
    found = dp_local_slice(
        call.global_num_tokens_cpu,
        rank,
        dp_size=call.dp_size,
        can_run_graph=call.can_run_graph,
        graph_extent=call.graph_extent,
    )
    return found.start, found.length


def tensor_bounds(layout: DPLayout, rank: int, dtype: torch.dtype) -> tuple[int, int]:
    start, length = tensor_path_slice(
        global_num_tokens_gpu=layout.global_num_tokens_gpu(rank, dtype=dtype),
        dp_rank=rank,
        can_run_graph=layout.mode.is_graph,
        graph_extent=layout.graph_extent,
    )
    return int(start), int(length)


class TestGetDpLocalInfo:
    def test_returns_zero_dim_tensors_on_the_counts_device(self) -> None:
        batch = ForwardBatch(torch.tensor([3, 5, 2]))
        start, length = get_dp_local_info(batch, 2)
        assert (start.dim(), length.dim()) == (0, 0)
        assert (int(start), int(length)) == (8, 2)

    def test_rank_zero_starts_at_a_zero_of_the_cumsum_dtype(self) -> None:
        start, _ = get_dp_local_info(ForwardBatch(torch.tensor([3, 5], dtype=torch.int32)), 0)
        assert int(start) == 0
        assert start.dtype == torch.int64  # cumsum promoted the int32 counts

    def test_caches_the_bounds_on_the_batch_object(self) -> None:
        batch = ForwardBatch(torch.tensor([3, 5, 2]))
        first = get_dp_local_info(batch, 1)
        assert batch.dp_local_start_pos is first[0]
        assert batch.dp_local_num_tokens is first[1]
        assert get_dp_local_info(batch, 1)[0] is first[0]

    def test_reused_batch_object_returns_stale_bounds_hazard_8(self) -> None:
        """Faithful to upstream: the cache is filled once per batch object, never cleared."""
        batch = ForwardBatch(torch.tensor([3, 5, 2]))
        get_dp_local_info(batch, 1)
        batch.set_counts(torch.tensor([7, 1, 1]), [7, 1, 1])
        start, length = get_dp_local_info(batch, 1)
        assert (int(start), int(length)) == (3, 5)  # the old forward's rows, not (7, 1)

    def test_skipped_gather_one_entry_tensor_fails_for_rank_above_zero_hazard_7(self) -> None:
        layout = DPLayout((3, 5, 2), gather_skipped=True)
        with pytest.raises(IndexError):
            get_dp_local_info(ForwardBatch.from_layout(layout, 1), 1)

    def test_forced_int32_cumsum_wraps_past_int32_max_hazard_9(self) -> None:
        counts = torch.tensor([INT32_MAX, 1, 5], dtype=torch.int32)
        promoted, _ = get_dp_local_info(ForwardBatch(counts), 2)
        forced, _ = get_dp_local_info(ForwardBatch(counts), 2, cumsum_dtype=torch.int32)
        assert int(promoted) == 2**31
        assert int(forced) == -(2**31)


class TestCapturerBounds:
    def test_eager_start_and_length_are_tensors(self) -> None:
        batch = ForwardBatch(torch.tensor([3, 5, 2]))
        start, length = capturer_bounds(
            batch, dp_rank=1, can_run_graph=False, cuda_graph_batch=None
        )
        assert isinstance(start, torch.Tensor)
        assert isinstance(length, torch.Tensor)

    def test_graph_start_is_the_rank_times_the_given_batch_as_an_int(self) -> None:
        batch = ForwardBatch(torch.tensor([3, 5, 2]))
        start, length = capturer_bounds(batch, dp_rank=2, can_run_graph=True, cuda_graph_batch=8)
        assert start == 16
        assert isinstance(start, int)
        assert int(length) == 2

    def test_graph_without_a_batch_size_fails_with_upstreams_type_error_hazard_3(self) -> None:
        batch = ForwardBatch(torch.tensor([3, 5, 2]))
        with pytest.raises(TypeError, match="NoneType"):
            capturer_bounds(batch, dp_rank=1, can_run_graph=True, cuda_graph_batch=None)

    def test_capturer_slice_returns_the_rows_of_the_bounds(self) -> None:
        layout = DPLayout((3, 5, 2))
        rows = capturer_slice(
            layout.gathered(1),
            ForwardBatch.from_layout(layout, 1),
            dp_rank=1,
            can_run_graph=False,
            cuda_graph_batch=None,
        )
        assert torch.equal(rows, layout.expected_rows(1))


@given(
    layouts_and_ranks(dp_layouts(modes=EAGER_AND_REPLAY, max_count=64, gather_skipped=False)),
    st.sampled_from([torch.int64, torch.int32]),
)
def test_tensor_path_with_extent_in_rows_finds_the_oracles_rows(
    layout_and_rank: tuple[DPLayout, int], dtype: torch.dtype
) -> None:
    """Given the extent in rows, the tensor path slices exactly the rank's own rows."""
    layout, rank = layout_and_rank
    start, length = tensor_bounds(layout, rank, dtype)
    assert (start, length) == reference_bounds(layout, rank)
    assert torch.equal(layout.gathered(rank)[start : start + length], layout.expected_rows(rank))


@given(
    layouts_and_ranks(
        dp_layouts(modes=EAGER_AND_REPLAY, max_count=INT32_MAX - 3, gather_skipped=False)
    ),
    st.sampled_from([torch.int64, torch.int32]),
)
def test_tensor_path_bounds_equal_the_oracle_for_counts_near_int32_max(
    layout_and_rank: tuple[DPLayout, int], dtype: torch.dtype
) -> None:
    """Default cumsum promotes int32 counts, so prefix sums past 2**31 stay exact."""
    layout, rank = layout_and_rank
    span = layout.span(rank)
    assert tensor_bounds(layout, rank, dtype) == (span.first_row, span.num_rows)


def test_upstream_request_count_extent_reads_another_ranks_rows_hazard_4() -> None:
    """Upstream passed ``bs``; under speculative decoding rank 1 then reads rank 0's padding.

    The oracle is right: the buffer is built rank by rank, each owning
    ``bs * num_tokens_per_bs`` rows, and the rows upstream's bounds select are
    tagged with rank 0.
    """
    layout = DPLayout((2, 3), Mode.GRAPH_REPLAY, graph_batch_size=2, num_tokens_per_bs=2)
    buffer = layout.gathered(1)
    start, length = upstream_tensor_path_slice(
        global_num_tokens_gpu=layout.global_num_tokens_gpu(1),
        dp_rank=1,
        can_run_graph=True,
        cuda_graph_batch=layout.graph_batch_size,
    )
    rows = buffer[int(start) : int(start) + int(length)]
    assert rows[:, 0].tolist() == [0, 0, 1]  # rank 0's padding, then one row of rank 1
    assert reference_bounds(layout, 1) == (4, 3)
    assert torch.equal(buffer[4:7], layout.expected_rows(1))
