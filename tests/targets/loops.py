"""Correct slices written as explicit loops over the ranks, one per preset contract.

Each is an independent second implementation of a slice the bundled code
already has (the reference, upstream's specimens), for ``--against``: two
correct implementations agree in every state their contract reaches.
"""

from __future__ import annotations


def capturer_loop(*, global_num_tokens_cpu, dp_rank, dp_size, can_run_graph, graph_extent):
    """sglang's capturer: the rank's real rows; a decode graph's blocks are the extent."""
    counts = global_num_tokens_cpu
    if counts is None:
        raise ValueError("no CPU counts during CUDA-graph capture")
    if len(counts) not in (1, dp_size):
        raise ValueError(f"{len(counts)} counts for a DP gather of {dp_size}")
    slot = 0 if len(counts) == 1 else dp_rank
    start = 0
    for rank in range(slot):
        start += graph_extent if can_run_graph and graph_extent is not None else counts[rank]
    return start, counts[slot]


def gather_loop(*, global_num_tokens_cpu, dp_rank, dp_size, can_run_graph, graph_extent):
    """sglang's gather: the rank's whole block; in a decode graph (or its capture) every
    rank's block is the extent."""
    if can_run_graph and graph_extent is not None:
        start = 0
        for _ in range(dp_rank):
            start += graph_extent
        return start, graph_extent
    counts = global_num_tokens_cpu
    if counts is None:
        raise ValueError("no CPU counts outside a decode graph")
    start = 0
    for rank in range(dp_rank):
        start += counts[rank]
    return start, counts[dp_rank]


gather_loop.__dpslice_contract__ = "sglang-gather"


def combine_loop(*, global_num_tokens_cpu, dp_rank):
    """vLLM's combine: the counts are an int32 CPU tensor, read as Python ints."""
    counts = [int(count) for count in global_num_tokens_cpu.tolist()]
    start = 0
    for rank in range(dp_rank):
        start += counts[rank]
    return start, counts[dp_rank]


combine_loop.__dpslice_contract__ = "vllm-dp"


def chunked_loop(*, global_num_tokens_cpu, dp_rank, chunk_size, chunk_index):
    """vLLM's chunked DP: each rank sends min(chunk_size, what is left) rows, at least one."""
    start = 0
    for rank, count in enumerate(global_num_tokens_cpu.tolist()):
        rows = max(1, min(chunk_size, int(count) - chunk_size * chunk_index))
        if rank == dp_rank:
            return start, rows
        start += rows
    raise ValueError(f"dp_rank {dp_rank} is not a rank of the gather")


chunked_loop.__dpslice_contract__ = "vllm-chunked"
