"""One test per hazard of docs/hazards.md that the CPU reference and the layout model guard.

Hazards 1 (implicit sync from tensor slice bounds) and 8 (stale cached GPU
bounds) need the GPU-tensor path; they are tested with it (``test_gpu_path_*.py``).
Numbers are sglang issues/PRs unless marked vLLM.
"""

from __future__ import annotations

import pytest
import torch

from dpslice import DPLayout, DPSlice, Mode, RowSpan, dp_local_slice
from dpslice.errors import CountExceedsExtentError, CountsLengthError, CountsUnavailableError
from tests.engine import engine_slice, pad_rows, real_rows, reference_slice


def test_hazard_2_capture_none_counts_raise_counts_unavailable_not_type_error():
    """Review of sglang #24550 (and #26684 for the indexer capturer): during CUDA-graph
    capture ``global_num_tokens_cpu`` is None; the slice must say so, not fail with an
    incidental ``TypeError`` from ``sum(None[:rank])``."""
    capture = DPLayout.capture(4, graph_batch_size=8)
    for rank in range(capture.dp_size):
        call = capture.call(rank)
        for entry_point in (reference_slice, engine_slice):
            with pytest.raises(CountsUnavailableError, match="capture") as raised:
                entry_point(call)
            assert not isinstance(raised.value, TypeError)


def test_hazard_3_prefill_graph_without_cuda_graph_batch_is_the_running_sum():
    """sglang #30712: prefill graphs run with ``can_run_graph`` true but
    ``cuda_graph_batch`` None, and ``rank * None`` raised TypeError.  That state is the
    prefill graph, whose counts the engine padded to the bucket and wrote back (#31116):
    the running sum over them is the rank's block, which is what the slice returns."""
    layout = DPLayout((3, 2), Mode.PREFILL_GRAPH, graph_batch_size=4)
    call = layout.call(1)
    assert (call.global_num_tokens_cpu, call.cuda_graph_batch) == ([4, 4], None)
    for entry_point in (reference_slice, engine_slice):
        own = entry_point(call)
        assert own == DPSlice(4, 4)
        assert layout.gathered(1)[own.slice].tolist() == real_rows(1, 2) + pad_rows(1, 2)


def test_hazard_4_speculative_decoding_extent_is_batch_size_times_num_tokens_per_bs():
    """Inference from the code (no upstream fix found): under EAGLE/MTP verify a rank owns
    ``bs * num_tokens_per_bs`` rows, so ``rank * cuda_graph_batch`` lands rank 1 in rank 0's
    padding.  Passing ``num_tokens_per_bs`` gives rank 1 its own rows."""
    layout = DPLayout((2, 2), Mode.GRAPH_REPLAY, graph_batch_size=2, num_tokens_per_bs=3)
    buffer = layout.gathered(1).tolist()
    # The buffer, by hand: each rank's 2 tokens and 4 padding rows.
    by_hand = real_rows(0, 2) + pad_rows(0, 4) + real_rows(1, 2) + pad_rows(1, 4)
    assert buffer == by_hand

    upstream_start = 1 * 2  # rank * cuda_graph_batch
    assert buffer[upstream_start : upstream_start + 2] == pad_rows(0, 2)

    own = engine_slice(layout.call(1))
    assert own == DPSlice(6, 2)
    assert buffer[own.slice] == real_rows(1, 2)


def test_hazard_5_stale_smaller_cuda_graph_batch_is_refused_not_misread():
    """Inference from sglang #30712: a ``cuda_graph_batch`` left over from another graph
    runner gives a wrong offset silently.  Where a count exceeds the stale extent, the slice
    refuses it; a stale extent larger than every count cannot be told from the counts."""
    layout = DPLayout((3, 4), Mode.GRAPH_REPLAY, graph_batch_size=4)
    with pytest.raises(CountExceedsExtentError, match="next rank's rows"):
        dp_local_slice([3, 4], 1, dp_size=2, can_run_graph=True, graph_extent=2)
    own = dp_local_slice([3, 4], 1, dp_size=2, can_run_graph=True, graph_extent=4)
    assert own == DPSlice(4, 4)
    assert layout.span(1) == RowSpan(own.start, own.length)


@pytest.mark.parametrize("mode", [Mode.GRAPH_CAPTURE, Mode.GRAPH_REPLAY], ids=lambda m: m.name)
def test_hazard_6_gathered_buffer_scales_with_dp_size(mode):
    """sglang #26123, #26860, #26913, #31116: the capture buffer was sized for one rank, too
    small for rank > 0.  The gathered buffer has ``dp_size * extent`` rows and the last
    rank's rows end exactly there."""
    for dp_size in range(1, 9):
        if mode is Mode.GRAPH_CAPTURE:
            layout = DPLayout.capture(dp_size, graph_batch_size=8)
        else:
            layout = DPLayout((8,) * dp_size, mode, graph_batch_size=8)
        last = dp_size - 1
        assert layout.gathered_rows(last) == dp_size * 8
        assert len(layout.gathered(last)) == dp_size * 8
        assert layout.span(last) == RowSpan(last * 8, 8)


def test_hazard_7_one_entry_list_is_this_ranks_own_and_other_lengths_are_refused():
    """Upstream ``dp_slot_in``: a one-entry list means the all-gather was skipped and the
    entry is this rank's own (slot 0); any other length must equal the gather width."""
    layout = DPLayout((4, 5, 6, 7), gather_skipped=True)
    own = reference_slice(layout.call(3))
    assert own == DPSlice(0, 7)
    assert layout.gathered(3)[own.slice].tolist() == real_rows(3, 7)
    for wrong in ([], [1, 2], [1, 2, 3], [1, 2, 3, 4, 5]):
        with pytest.raises(CountsLengthError, match="one count per DP rank"):
            dp_local_slice(wrong, 3, dp_size=4)


def test_hazard_9_prefix_sums_past_int32_and_int64_are_exact():
    """``torch.cumsum(..., dtype=torch.int32)`` wraps past 2**31 - 1 and int64 wraps past
    2**63 - 1, silently; the reference sums Python ints and is exact.  An empty prefix is 0,
    not ``empty[-1]``'s IndexError."""
    near_int32 = [2**31 - 1, 2**31 - 1, 5]
    wrapped = torch.cumsum(torch.tensor(near_int32, dtype=torch.int32), 0, dtype=torch.int32)
    assert wrapped[1].item() == -2  # 2**32 - 2 wrapped
    promoted = torch.cumsum(torch.tensor(near_int32, dtype=torch.int32), 0)
    assert promoted.dtype == torch.int64  # the default promotes, and is right here
    assert dp_local_slice(near_int32, 2, dp_size=3) == DPSlice(2**32 - 2, 5)
    assert promoted[1].item() == 2**32 - 2

    near_int64 = [2**62, 2**62, 1]
    assert torch.cumsum(torch.tensor(near_int64), 0)[1].item() == -(2**63)
    assert dp_local_slice(near_int64, 2, dp_size=3) == DPSlice(2**63, 1)

    with pytest.raises(IndexError):
        torch.cumsum(torch.tensor([], dtype=torch.int64), 0)[-1]
    assert dp_local_slice([0, 3], 0, dp_size=2) == DPSlice(0, 0)


def test_hazard_10_ranks_with_only_local_tokens_are_sliced_without_a_totals_check():
    """vLLM #37879, #39917: the capturer asserts that the summed counts match the rows it
    holds, which fails where ranks see only their local tokens.  With the gather skipped,
    rank 1 holds 5 rows while the ranks' counts sum to 12, and its one-entry list still
    slices exactly its rows."""
    layout = DPLayout((3, 5, 4), gather_skipped=True)
    buffer = layout.gathered(1)
    assert sum(layout.counts) != len(buffer)
    own = reference_slice(layout.call(1))
    assert own == DPSlice(0, 5)
    assert buffer[own.slice].tolist() == real_rows(1, 5)
