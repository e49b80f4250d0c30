"""Slice implementations as source text, for tests that write them into a project of their own."""

#: The README's minimal capturer slice: every hazard holds, hardening WARNs.
MINIMAL_CAPTURER = """
def local_slice(*, global_num_tokens_cpu, dp_rank, dp_size, can_run_graph, graph_extent):
    counts = global_num_tokens_cpu
    if counts is None:
        raise ValueError("no CPU counts during CUDA-graph capture; skip the slice")
    if len(counts) not in (1, dp_size):
        raise ValueError(f"{len(counts)} counts for a DP gather of {dp_size}")
    slot = 0 if len(counts) == 1 else dp_rank
    if can_run_graph and graph_extent is not None:
        return slot * graph_extent, counts[slot]
    return sum(counts[:slot]), counts[slot]
"""
