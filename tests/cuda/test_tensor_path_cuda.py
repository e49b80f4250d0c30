"""On a CUDA device, the GPU-tensor path and the reference slice the same view.

Both slice a real CUDA buffer (``layout.gathered(rank, device="cuda")``): the
reference with Python ints, the tensor path with its 0-dim CUDA tensors (it
syncs; that is hazard 1 of docs/hazards.md, tested elsewhere).  The two views must be the same
view of the same storage, and both must hold exactly the rank's own rows.
Counts near 2**31 are compared as bounds, without materialising buffers.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given, settings

from dpslice import DPLayout, Mode, dp_local_slice
from dpslice.specimens.tensor_path import (
    ForwardBatch,
    get_dp_local_info,
    tensor_path_slice,
    upstream_tensor_path_slice,
)
from dpslice.strategies import dp_layouts, layouts_and_ranks

pytestmark = pytest.mark.cuda

EAGER_AND_REPLAY = [Mode.SUM_LEN, Mode.MAX_LEN, Mode.GRAPH_REPLAY]
COUNT_DTYPES = [pytest.param(torch.int64, id="int64"), pytest.param(torch.int32, id="int32")]
INT32_MAX = 2**31 - 1

small_layouts = layouts_and_ranks(
    dp_layouts(modes=EAGER_AND_REPLAY, max_count=64, gather_skipped=False)
)
# Counts and attention-TP rounding stay within int32, so int32 count tensors exist.
large_layouts = layouts_and_ranks(
    dp_layouts(modes=EAGER_AND_REPLAY, max_count=INT32_MAX - 3, gather_skipped=False)
)


def reference_slice(layout: DPLayout, rank: int) -> slice:
    call = layout.call(rank)
    return dp_local_slice(
        call.global_num_tokens_cpu,
        rank,
        dp_size=call.dp_size,
        can_run_graph=call.can_run_graph,
        graph_extent=call.graph_extent,
    ).slice


def gpu_bounds(
    layout: DPLayout, rank: int, dtype: torch.dtype
) -> tuple[int | torch.Tensor, torch.Tensor]:
    counts = layout.global_num_tokens_gpu(rank, device="cuda", dtype=dtype)
    assert counts.is_cuda
    assert counts.dtype == dtype
    return tensor_path_slice(
        global_num_tokens_gpu=counts,
        dp_rank=rank,
        can_run_graph=layout.mode.is_graph,
        graph_extent=layout.graph_extent,
    )


@pytest.mark.parametrize("dtype", COUNT_DTYPES)
@settings(settings.get_profile("cuda"))
@given(layout_and_rank=small_layouts)
def test_tensor_path_and_reference_slice_the_same_cuda_view(
    dtype: torch.dtype, layout_and_rank: tuple[DPLayout, int]
) -> None:
    """Same storage, same offset, same shape, same rows; and they are the rank's own rows."""
    layout, rank = layout_and_rank
    buffer = layout.gathered(rank, device="cuda")
    start, length = gpu_bounds(layout, rank, dtype)
    assert length.is_cuda
    assert length.dim() == 0
    if not layout.mode.is_graph:
        assert isinstance(start, torch.Tensor)
        assert start.is_cuda
        assert start.dim() == 0

    by_reference = buffer[reference_slice(layout, rank)]
    by_tensors = buffer[start : start + length]  # two syncs eager, one under replay

    assert by_tensors.untyped_storage().data_ptr() == by_reference.untyped_storage().data_ptr()
    assert by_tensors.storage_offset() == by_reference.storage_offset()
    assert by_tensors.shape == by_reference.shape
    assert torch.equal(by_tensors, by_reference)
    assert torch.equal(by_reference, layout.expected_rows(rank, device="cuda"))


@pytest.mark.parametrize("dtype", COUNT_DTYPES)
@settings(settings.get_profile("cuda"))
@given(layout_and_rank=large_layouts)
def test_tensor_path_bounds_equal_the_oracles_near_int32_max(
    dtype: torch.dtype, layout_and_rank: tuple[DPLayout, int]
) -> None:
    """cumsum promotes int32 counts to int64 on CUDA too: prefix sums past 2**31 stay exact."""
    layout, rank = layout_and_rank
    start, length = gpu_bounds(layout, rank, dtype)
    span = layout.span(rank)
    assert (int(start), int(length)) == (span.first_row, span.num_rows)
    found = reference_slice(layout, rank)
    assert (found.start, found.stop) == (span.first_row, span.first_row + span.num_rows)


def wrap_int32(value: int) -> int:
    return (value + 2**31) % 2**32 - 2**31


@settings(settings.get_profile("cuda_small"))
@given(layout_and_rank=large_layouts)
def test_forcing_an_int32_cumsum_wraps_exactly_like_twos_complement_hazard_9(
    layout_and_rank: tuple[DPLayout, int],
) -> None:
    """With ``dtype=torch.int32`` the start is the true start modulo 2**32, so wrong past 2**31."""
    layout, rank = layout_and_rank
    counts = layout.global_num_tokens_gpu(rank, device="cuda", dtype=torch.int32)
    start, _ = get_dp_local_info(ForwardBatch(counts), rank, cumsum_dtype=torch.int32)
    true_start = sum(layout.gpu_counts(rank)[:rank])
    assert int(start) == wrap_int32(true_start)
    assert (int(start) == true_start) is (true_start <= INT32_MAX)


def test_forced_int32_cumsum_example_hazard_9() -> None:
    counts = torch.tensor([INT32_MAX, 1, 5], dtype=torch.int32, device="cuda")
    promoted, _ = get_dp_local_info(ForwardBatch(counts), 2)
    forced, _ = get_dp_local_info(ForwardBatch(counts), 2, cumsum_dtype=torch.int32)
    assert (int(promoted), int(forced)) == (2**31, -(2**31))


replay_with_speculation = layouts_and_ranks(
    dp_layouts(modes=[Mode.GRAPH_REPLAY], min_dp_size=2, max_count=64, gather_skipped=False)
).filter(lambda pair: pair[0].num_tokens_per_bs > 1 and pair[1] > 0)


@settings(settings.get_profile("cuda_small"))
@given(layout_and_rank=replay_with_speculation)
def test_upstreams_request_count_extent_disagrees_with_the_oracle_and_the_oracle_is_right(
    layout_and_rank: tuple[DPLayout, int],
) -> None:
    """Hazard 4 (docs/hazards.md).  Upstream multiplied the rank by ``bs``; rank r's rows
    start at ``r * bs * n``.

    Which is right is read off the buffer itself: every row is tagged with the
    rank that contributed it.  Upstream's slice starts in a lower rank's rows;
    the oracle's (and the reference's) holds exactly this rank's own rows.
    """
    layout, rank = layout_and_rank
    assume(layout.owned_rows(rank) > 0)  # two empty slices cannot disagree
    buffer = layout.gathered(rank, device="cuda")
    start, length = upstream_tensor_path_slice(
        global_num_tokens_gpu=layout.global_num_tokens_gpu(rank, device="cuda"),
        dp_rank=rank,
        can_run_graph=True,
        cuda_graph_batch=layout.graph_batch_size,
    )
    upstream_rows = buffer[start : start + length]
    assert int(upstream_rows[0, 0]) < rank, "upstream's first row belongs to a lower rank"
    assert not torch.equal(upstream_rows, layout.expected_rows(rank, device="cuda"))
    assert torch.equal(
        buffer[reference_slice(layout, rank)], layout.expected_rows(rank, device="cuda")
    )


@pytest.mark.parametrize("rank", [1, 2])
def test_skipped_gather_breaks_the_tensor_path_for_ranks_above_zero_hazard_7(rank: int) -> None:
    """A one-entry count tensor is still indexed by the rank; the reference uses slot 0."""
    layout = DPLayout((3, 5, 2), gather_skipped=True)
    counts = layout.global_num_tokens_gpu(rank, device="cuda")
    with pytest.raises(IndexError):
        tensor_path_slice(global_num_tokens_gpu=counts, dp_rank=rank)
    buffer = layout.gathered(rank, device="cuda")
    assert torch.equal(
        buffer[reference_slice(layout, rank)], layout.expected_rows(rank, device="cuda")
    )
