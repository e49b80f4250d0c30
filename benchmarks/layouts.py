"""The layouts the CPU and GPU benchmarks time, without importing torch.

Apart from ``workloads.py`` so that ``instructions.py`` can build the same
calls under valgrind, where importing torch would take minutes.
"""

from __future__ import annotations

from dpslice import DPLayout, Mode

__all__ = ["DP_SIZES", "GRAPH_BATCH_SIZE", "bench_layout"]

DP_SIZES = (1, 8, 64)

#: Rows each rank owns in the CUDA-graph layouts (``bs``; one token per request):
#: above every count :func:`bench_layout` draws.
GRAPH_BATCH_SIZE = 256


def _counts(dp_size: int) -> tuple[int, ...]:
    # Uneven, non-zero, decode-sized counts: a uniform list would let a
    # MAX_LEN-style shortcut look as cheap as the general case.
    return tuple(17 + (37 * rank) % 211 for rank in range(dp_size))


def bench_layout(dp_size: int, mode: Mode) -> DPLayout:
    """The layout a benchmark of ``dp_size`` ranks in ``mode`` (SUM_LEN or GRAPH_REPLAY) uses."""
    if mode is Mode.GRAPH_REPLAY:
        return DPLayout(_counts(dp_size), mode, graph_batch_size=GRAPH_BATCH_SIZE)
    if mode is not Mode.SUM_LEN:
        raise ValueError(f"benchmarks time SUM_LEN (eager) and GRAPH_REPLAY layouts, not {mode}")
    return DPLayout(_counts(dp_size), mode)
