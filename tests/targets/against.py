"""Pairs for ``dpslice check NEW --against OLD``: slices that differ from the reference
in one way each."""

from __future__ import annotations

from dpslice import dp_local_slice


def off_by_one(*, global_num_tokens_cpu, dp_rank, dp_size, can_run_graph, graph_extent):
    """The reference's slice, starting one row late on every rank above 0."""
    start, length = dp_local_slice(
        global_num_tokens_cpu,
        dp_rank,
        dp_size=dp_size,
        can_run_graph=can_run_graph,
        graph_extent=graph_extent,
    )
    return start + (dp_rank > 0), length


def reads_device_counts(
    *, global_num_tokens_cpu, global_num_tokens_gpu, dp_rank, dp_size, can_run_graph, graph_extent
):
    """The reference's answer, after reading the device counts on the host: a sync on CUDA."""
    total = int(global_num_tokens_gpu.sum())
    start, length = dp_local_slice(
        global_num_tokens_cpu,
        dp_rank,
        dp_size=dp_size,
        can_run_graph=can_run_graph,
        graph_extent=graph_extent,
    )
    assert total >= 0
    return start, length
