"""The engine's side of a slice, shared by the core tests.

* :func:`reference_slice` and :func:`engine_slice` call the reference with a
  :class:`~dpslice.SliceCall` the way an engine would: with the extent in rows,
  or through sglang's ``get_dp_local_slice_cpu`` with the graph's batch size.
* :func:`real_rows` and :func:`pad_rows` spell out a gathered buffer by hand,
  so expected buffers in the tests are written, not computed by the model.
"""

from __future__ import annotations

from dataclasses import dataclass

from dpslice import PAD_ROW, DPSlice, SliceCall, dp_local_slice, get_dp_local_slice_cpu

__all__ = ["ForwardBatch", "engine_slice", "pad_rows", "real_rows", "reference_slice"]


@dataclass(frozen=True)
class ForwardBatch:
    """The one field of an engine's forward batch the slice reads."""

    global_num_tokens_cpu: list[int] | None


def reference_slice(call: SliceCall) -> DPSlice:
    """The reference slice of ``call``, given the graph extent in rows."""
    return dp_local_slice(
        call.global_num_tokens_cpu,
        call.dp_rank,
        dp_size=call.dp_size,
        can_run_graph=call.can_run_graph,
        graph_extent=call.graph_extent,
    )


def engine_slice(call: SliceCall) -> DPSlice:
    """The slice through sglang's entry point: the graph's batch size and rows per request."""
    return get_dp_local_slice_cpu(
        ForwardBatch(call.global_num_tokens_cpu),
        call.can_run_graph,
        call.cuda_graph_batch,
        dp_rank=call.dp_rank,
        dp_size=call.dp_size,
        num_tokens_per_bs=call.num_tokens_per_bs,
    )


def real_rows(rank: int, count: int) -> list[list[int]]:
    """Tags of ``count`` real tokens of ``rank``, ``[rank, 0] .. [rank, count - 1]``, as
    ``Tensor.tolist()`` gives them."""
    return [[rank, local_row] for local_row in range(count)]


def pad_rows(rank: int, count: int) -> list[list[int]]:
    """Tags of ``count`` padding rows that ``rank`` contributed, as ``tolist()`` gives them."""
    return [[rank, PAD_ROW] for _ in range(count)]
