"""Four correct implementations of sglang's capturer slice, written independently.

Each follows the slice rule (eager and prefill graph: the running sum of the
CPU counts; decode graph: the slot times the extent in rows; the length is the
slot's count) and validates only what its own answer needs: ``None`` counts,
the list's length.  None refuses a bool, a float or another rank's count
over the extent: inputs no engine produces.  Under the default contract they
pass; under ``--strict`` they fail on hardening only.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import reduce
from operator import add
from types import SimpleNamespace


def running_sum(*, global_num_tokens_cpu, dp_rank, dp_size, can_run_graph, graph_extent):
    """A loop over the counts ahead of the rank."""
    counts = global_num_tokens_cpu
    if counts is None:
        raise RuntimeError("no CPU counts during CUDA-graph capture; skip the slice")
    if len(counts) == 1:
        slot = 0
    elif len(counts) == dp_size:
        slot = dp_rank
    else:
        raise ValueError(f"{len(counts)} counts for a DP gather of {dp_size}")
    if can_run_graph and graph_extent is not None:
        return slot * graph_extent, counts[slot]
    start = 0
    for count in counts[:slot]:
        start += count
    return start, counts[slot]


def sglang_shaped(
    forward_batch=None,
    *,
    global_num_tokens_cpu,
    dp_rank,
    dp_size,
    can_run_graph,
    cuda_graph_batch,
    num_tokens_per_bs,
):
    """sglang's argument names: the graph's batch size and its rows per request."""
    counts = global_num_tokens_cpu
    if counts is None:
        raise LookupError("global_num_tokens_cpu is not populated in capture")
    slot = 0 if len(counts) == 1 else dp_rank
    if len(counts) not in (1, dp_size):
        raise ValueError("count list of another gather")
    if can_run_graph and cuda_graph_batch is not None:
        start = slot * cuda_graph_batch * num_tokens_per_bs
    else:
        start = sum(itertools.islice(counts, slot))
    return start, counts[slot]


@dataclass(frozen=True)
class Bounds:
    start: int
    length: int


def accumulated(*, global_num_tokens_cpu, dp_rank, can_run_graph, graph_extent, dp_size):
    """Prefix sums first, an object with ``.start`` and ``.length`` back."""
    if global_num_tokens_cpu is None:
        # A deliberate TypeError: the cause, not the class, makes it a refusal.
        raise TypeError("expected a list of counts, got None (CUDA-graph capture?)")
    counts = list(global_num_tokens_cpu)
    if len(counts) != 1 and len(counts) != dp_size:
        raise ValueError("wrong number of counts")
    slot = dp_rank if len(counts) > 1 else 0
    if can_run_graph and graph_extent is not None:
        return Bounds(slot * graph_extent, counts[slot])
    ends = list(itertools.accumulate(counts))
    return Bounds(ends[slot] - counts[slot], counts[slot])


def reduced(**call):
    """Takes everything as keywords, reads what it needs."""
    batch = SimpleNamespace(**call)
    if batch.global_num_tokens_cpu is None:
        raise NotImplementedError("the capture phase has no counts to slice by")
    counts = batch.global_num_tokens_cpu
    skipped = len(counts) == 1
    if not skipped and len(counts) != batch.dp_size:
        raise ValueError("counts and dp_size disagree")
    slot = 0 if skipped else batch.dp_rank
    if batch.can_run_graph and batch.graph_extent is not None:
        return slot * batch.graph_extent, counts[slot]
    return reduce(add, counts[:slot], 0), counts[slot]


IMPLEMENTATIONS = (running_sum, sglang_shaped, accumulated, reduced)
