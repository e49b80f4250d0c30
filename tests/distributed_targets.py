"""Misbehaving slice implementations for tests/test_distributed.py, loaded by file path.

Each delegates to the reference slice except on the rank and layouts where it
misbehaves, so the round trip fails for exactly the reason the test names.
"""

from __future__ import annotations

import os
import time

import torch

from dpslice.reference import DPSlice, dp_local_slice

#: The exit code of :func:`exit_on_rank_1`, so a test can recognise it.
EXIT_CODE = 7


def _reference(
    global_num_tokens_cpu: list[int], dp_rank: int, dp_size: int, can_run_graph: bool,
    graph_extent: int | None,
) -> DPSlice:  # fmt: skip
    return dp_local_slice(
        global_num_tokens_cpu,
        dp_rank,
        dp_size=dp_size,
        can_run_graph=can_run_graph,
        graph_extent=graph_extent,
    )


def exit_on_rank_1(
    global_num_tokens_cpu: list[int], dp_rank: int, dp_size: int, can_run_graph: bool,
    graph_extent: int | None,
) -> DPSlice:  # fmt: skip
    """Rank 1 dies outright (no traceback) on the first layout with 3 or more tokens."""
    if dp_rank == 1 and sum(global_num_tokens_cpu) >= 3:
        os._exit(EXIT_CODE)
    return _reference(global_num_tokens_cpu, dp_rank, dp_size, can_run_graph, graph_extent)


def hang_on_rank_1(
    global_num_tokens_cpu: list[int], dp_rank: int, dp_size: int, can_run_graph: bool,
    graph_extent: int | None,
) -> DPSlice:  # fmt: skip
    """Rank 1 never returns (a stuck target), so its peers wait for a layout it never finishes."""
    while dp_rank == 1:
        time.sleep(3600)
    return _reference(global_num_tokens_cpu, dp_rank, dp_size, can_run_graph, graph_extent)


def raise_on_rank_1(
    global_num_tokens_cpu: list[int], dp_rank: int, dp_size: int, can_run_graph: bool,
    graph_extent: int | None,
) -> DPSlice:  # fmt: skip
    """Rank 1 raises on replay layouts: a target bug, reported as a counterexample."""
    if dp_rank == 1 and can_run_graph:
        raise KeyError("no graph runner for this batch")
    return _reference(global_num_tokens_cpu, dp_rank, dp_size, can_run_graph, graph_extent)


def mutate_gpu_counts_on_rank_1(
    global_num_tokens_cpu: list[int], global_num_tokens_gpu: torch.Tensor, dp_rank: int,
    dp_size: int, can_run_graph: bool, graph_extent: int | None,
) -> DPSlice:  # fmt: skip
    """Rank 1 writes to the GPU counts tensor, so it no longer agrees with the CPU list."""
    if dp_rank == 1:
        global_num_tokens_gpu[-1] += 1
    return _reference(global_num_tokens_cpu, dp_rank, dp_size, can_run_graph, graph_extent)


def float_bounds(
    global_num_tokens_cpu: list[int], dp_rank: int, dp_size: int, can_run_graph: bool,
    graph_extent: int | None,
) -> tuple[float, float]:  # fmt: skip
    """Returns float bounds, which would slice by truncation."""
    found = _reference(global_num_tokens_cpu, dp_rank, dp_size, can_run_graph, graph_extent)
    return float(found.start), float(found.length)


def tensor_bounds(
    global_num_tokens_cpu: list[int], global_num_tokens_gpu: torch.Tensor, dp_rank: int,
    dp_size: int, can_run_graph: bool, graph_extent: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The pre-#24550 shape: 0-dim tensor bounds computed from the GPU counts."""
    slot = 0 if global_num_tokens_gpu.numel() == 1 else dp_rank
    length = global_num_tokens_gpu[slot]
    if can_run_graph:
        assert graph_extent is not None
        return torch.tensor(slot * graph_extent), length
    return torch.cumsum(global_num_tokens_gpu, dim=0)[slot] - length, length
