"""What the benchmarks time: the two slice paths and queued GPU work (layouts: ``layouts.py``).

Kept apart from ``conftest.py`` so benchmark modules can import it by name
(``benchmarks/`` is on ``sys.path`` under pytest's default import mode), and
so the two paths are built once, the same way on the CPU and on the GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from dpslice import DPLayout, DPSlice
from dpslice.specimens.tensor_path import ForwardBatch, capturer_slice

__all__ = ["PATHS", "QueuedGPUWork", "SlicePaths"]

#: ``reference``: Python-int bounds from the CPU counts (dpslice.dp_local_slice).
#: ``tensor``: the pre-#24550 capturer, bounds from a cumsum on the counts' device.
PATHS = ("reference", "tensor")


@dataclass(frozen=True)
class SlicePaths:
    """Builds either path as a zero-argument callable: one forward's rows of the buffer.

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
        if path == "reference":
            reference_slice = self.reference_slice
            counts = call.global_num_tokens_cpu

            def reference_rows() -> torch.Tensor:
                bounds = reference_slice(
                    counts,
                    rank,
                    dp_size=call.dp_size,
                    can_run_graph=call.can_run_graph,
                    graph_extent=call.graph_extent,
                )
                return gathered[bounds.start : bounds.stop]

            return reference_rows
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
        raise ValueError(f"path must be one of {PATHS}; got {path!r}")


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
