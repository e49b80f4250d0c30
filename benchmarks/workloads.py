"""What the benchmarks time: the two slice paths and queued GPU work (layouts: ``layouts.py``).

Kept apart from ``conftest.py`` so benchmark modules can import it by name
(``benchmarks/`` is on ``sys.path`` under pytest's default import mode), and
so the two paths are built once, the same way on the CPU and on the GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from call_parts import named_call

from dpslice import DPLayout, DPSlice, Mode, SliceCall
from dpslice.specimens.tensor_path import ForwardBatch, capturer_slice

__all__ = ["FLOOR_DP_SIZES", "FLOOR_MODES", "FLOOR_PATHS", "PATHS", "QueuedGPUWork", "SlicePaths"]

#: ``reference``: Python-int bounds from the CPU counts (dpslice.dp_local_slice).
#: ``tensor``: the pre-#24550 capturer, bounds from a cumsum on the counts' device.
PATHS = ("reference", "tensor")
#: The reference against the floor under it, every path slicing the same way:
#: ``bare``: ``gathered[start : start + length]`` with both ints computed beforehand;
#: ``unchecked``: the same ints computed inline from the counts with no check
#: (the prefix sum, or rank * extent): the arithmetic any per-forward slice does;
#: ``no_checks``: that arithmetic behind ``dp_local_slice``'s signature, called
#: with its keywords and returning its ``DPSlice`` (``call_parts.named_call``),
#: checking nothing: what any reference of this signature pays before its checks.
FLOOR_PATHS = ("reference", "no_checks", "unchecked", "bare")
#: The layouts the floor is measured on: the last rank of DP 8 and DP 64, eager
#: (the prefix sum) and CUDA-graph replay (rank * extent).
FLOOR_DP_SIZES = (8, 64)
FLOOR_MODES = {"eager": Mode.SUM_LEN, "graph": Mode.GRAPH_REPLAY}
_ALL_PATHS = (*PATHS, "no_checks", "unchecked", "bare")


@dataclass(frozen=True)
class SlicePaths:
    """Builds any path as a zero-argument callable: one forward's rows of the buffer.

    ``reference_slice`` is the reference under test (the benchmark conftest may
    slow it down on purpose).  Everything that does not happen per forward in
    an engine (the counts tensor on the device, the gathered buffer) is made
    before the callable is returned, so only the per-forward work is timed.
    """

    reference_slice: Callable[..., DPSlice]

    def build(
        self, path: str, layout: DPLayout, rank: int, gathered: torch.Tensor
    ) -> Callable[[], torch.Tensor]:
        call = layout.call(rank)
        if path in ("reference", "no_checks"):
            reference_slice = self.reference_slice if path == "reference" else named_call
            counts, dp_size = call.global_num_tokens_cpu, call.dp_size
            can_run_graph, graph_extent = call.can_run_graph, call.graph_extent

            def reference_rows() -> torch.Tensor:
                # Unpacked and sliced as the bare path slices: the difference is the call.
                start, length = reference_slice(
                    counts,
                    rank,
                    dp_size=dp_size,
                    can_run_graph=can_run_graph,
                    graph_extent=graph_extent,
                )
                return gathered[start : start + length]

            return reference_rows
        if path == "bare":
            span = layout.span(rank)
            first_row, num_rows = span.first_row, span.num_rows

            def bare_rows() -> torch.Tensor:
                return gathered[first_row : first_row + num_rows]

            return bare_rows
        if path == "unchecked":
            return _unchecked_rows(call, gathered)
        if path == "tensor":
            counts_on_device = layout.global_num_tokens_gpu(rank, device=gathered.device)

            def tensor_rows() -> torch.Tensor:
                # A new batch object per forward, as engines make: the cumsum
                # runs every time instead of hitting the cached bounds.
                return capturer_slice(
                    gathered,
                    ForwardBatch(counts_on_device),
                    dp_rank=rank,
                    can_run_graph=call.can_run_graph,
                    cuda_graph_batch=call.graph_extent,
                )

            return tensor_rows
        raise ValueError(f"path must be one of {_ALL_PATHS}; got {path!r}")


def _unchecked_rows(call: SliceCall, gathered: torch.Tensor) -> Callable[[], torch.Tensor]:
    """The reference's arithmetic inline, with none of its checks: what bounds it from below."""
    counts = call.global_num_tokens_cpu
    if counts is None:
        raise ValueError("the unchecked path needs CPU counts; a capture layout has none")
    slot = call.dp_rank if len(counts) == call.dp_size else 0
    extent = call.graph_extent
    if call.can_run_graph and extent is not None:

        def unchecked_replay_rows() -> torch.Tensor:
            start = slot * extent
            return gathered[start : start + counts[slot]]

        return unchecked_replay_rows

    def unchecked_rows() -> torch.Tensor:
        start = sum(counts[:slot])
        return gathered[start : start + counts[slot]]

    return unchecked_rows


class QueuedGPUWork:
    """Enqueues ``torch.cuda._sleep`` kernels of a requested length in milliseconds.

    The spin kernel counts clock cycles; cycles per millisecond are measured
    once with CUDA events (the median of five ~10 ms spins), so a queue depth
    means the same wall time on any card.
    """

    def __init__(self, cycles_per_ms: float) -> None:
        self.cycles_per_ms = cycles_per_ms

    @classmethod
    def calibrate(cls, probe_cycles: int = 20_000_000, repeats: int = 5) -> QueuedGPUWork:
        torch.cuda._sleep(1000)  # load the kernel before timing it
        torch.cuda.synchronize()
        rates = []
        for _ in range(repeats):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            torch.cuda._sleep(probe_cycles)
            end.record()
            end.synchronize()
            rates.append(probe_cycles / start.elapsed_time(end))
        rates.sort()
        return cls(rates[len(rates) // 2])

    def enqueue(self, queue_ms: float) -> None:
        """Put ``queue_ms`` of GPU work on the current stream; returns at once."""
        if queue_ms > 0:
            torch.cuda._sleep(round(queue_ms * self.cycles_per_ms))

    def measure(self, queue_ms: float) -> float:
        """How long ``enqueue(queue_ms)`` keeps the GPU busy, in ms, by CUDA events."""
        torch.cuda.synchronize()
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        self.enqueue(queue_ms)
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))
