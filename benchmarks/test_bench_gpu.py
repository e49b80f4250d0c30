"""Host time of the slice on a GPU: the reference against the GPU-tensor path.

Both paths locate rank 7's rows of a DP-8 eager layout and slice them out of
the gathered buffer on the GPU.  The reference computes the bounds as Python
ints from the CPU counts, so the slice is a view made without asking the GPU
anything; the tensor path computes them with a cumsum on the GPU, and using
the 0-dim tensors as slice bounds calls ``item()``, which waits for every
kernel queued before it.

Each round enqueues ``queue_ms`` of GPU work (a calibrated
``torch.cuda._sleep``) in ``benchmark.pedantic``'s *setup*, times one slice,
then in *teardown* records whether the stream was still busy and synchronises.
Both the enqueue and the synchronisation stay outside the timed region, and
pytest-benchmark still owns the statistics, the saved JSON and
``--benchmark-compare``, which a manual timer in ``extra_info`` would lose.

The host enters the timed call in one of two states (``host``):

* ``cold``: as the previous round left it, after blocking until the GPU
  drained; behind a queue the reference's host time is then bimodal
  (docs/benchmarks.md);
* ``warm``: the same slice also runs once, untimed, on the drained stream just
  before the queue is enqueued, as an engine's scheduler thread is warm from
  the work before it.  The tensor path's warm-up call syncs on an idle stream,
  so its timed call still waits for the whole queue.

Target: behind 10 ms of queued work the reference takes <= 50 us of host time
while the tensor path waits >= 9 ms; on an idle GPU the reference is >= 5x faster.

``test_reference_vs_bare`` times the reference the same way against its floor,
every path slicing with ``gathered[start : start + length]``: ``bare`` with both
ints computed beforehand, ``unchecked`` with the reference's arithmetic inline
and none of its checks, ``no_checks`` with that arithmetic behind the
reference's signature and ``DPSlice`` (a call that checks nothing); DP 8 and
64, eager and graph replay, idle and behind 10 ms.  Target: reference / bare
<= 1.2 (``python benchmarks/floor.py RESULTS.json`` prints the ratios).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytest
import torch
from layouts import bench_layout
from workloads import (
    FLOOR_DP_SIZES,
    FLOOR_MODES,
    FLOOR_PATHS,
    PATHS,
    QueuedGPUWork,
    SlicePaths,
)

from dpslice import DPSlice, Mode

pytestmark = pytest.mark.cuda

#: GPU work queued before the slice, in ms; 0 is an idle GPU.
QUEUE_DEPTHS_MS = (0, 0.1, 1, 10, 50)
#: About two seconds of queued work per benchmark, 20 to 200 rounds.
QUEUED_SECONDS_PER_BENCHMARK = 2.0
DP_SIZE = 8
HOST_STATES = ("cold", "warm")
#: The reference against the bare slice: an idle GPU, and 10 ms of work queued.
FLOOR_QUEUE_DEPTHS_MS = (0, 10)


def _rounds(queue_ms: float) -> int:
    if queue_ms == 0:
        return 500
    return max(20, min(200, round(QUEUED_SECONDS_PER_BENCHMARK * 1000 / queue_ms)))


def _queue_id(queue_ms: float) -> str:
    return "idle" if queue_ms == 0 else f"{queue_ms:g}ms"


def _time_behind_queue(
    benchmark: Any,
    slice_rows: Callable[[], torch.Tensor],
    queue_ms: float,
    host: str,
    queued_gpu_work: QueuedGPUWork,
) -> tuple[torch.Tensor, list[bool]]:
    """Time ``slice_rows`` behind ``queue_ms`` of queued work from a ``host``-state host.

    Returns the rows and, per timed round, whether the stream was still busy
    after the slice; records the queue and those counts in ``extra_info``.
    """
    stream = torch.cuda.current_stream()
    busy_after: list[bool] = []

    def enqueue_work() -> None:
        torch.cuda.synchronize()  # every round starts from a drained stream
        if host == "warm":
            slice_rows()
        queued_gpu_work.enqueue(queue_ms)

    def record_and_drain() -> None:
        busy_after.append(not stream.query())
        torch.cuda.synchronize()

    rows = benchmark.pedantic(
        slice_rows,
        setup=enqueue_work,
        teardown=record_and_drain,
        rounds=_rounds(queue_ms),
        warmup_rounds=3,
    )
    timed_busy = busy_after[len(busy_after) - _rounds(queue_ms) :]
    benchmark.extra_info.update(
        queue_ms=queue_ms,
        host=host,
        queue_ms_measured=round(queued_gpu_work.measure(queue_ms), 4) if queue_ms else 0.0,
        sleep_cycles_per_ms=round(queued_gpu_work.cycles_per_ms),
        rounds_stream_busy_after=sum(timed_busy),
        rounds=len(timed_busy),
    )
    return rows, timed_busy


def _assert_returned_before_the_queue_drained(timed_busy: list[bool], queue_ms: float) -> None:
    # Python-int bounds: the slice returned while the queued work still ran.
    # A slice that waited would leave the stream idle in every round.  Below
    # 10 ms a host preempted (or collecting garbage) between setup and
    # teardown can outlast the queue now and then, so there a few idle
    # rounds are tolerated; from 10 ms on, none is.
    required = len(timed_busy) if queue_ms >= 10 else math.ceil(0.9 * len(timed_busy))
    assert sum(timed_busy) >= required, (
        f"the stream was idle after {timed_busy.count(False)} of {len(timed_busy)} "
        "slices: the slice waited for the GPU"
    )


@pytest.mark.parametrize("host", HOST_STATES)
@pytest.mark.parametrize("queue_ms", QUEUE_DEPTHS_MS, ids=_queue_id)
@pytest.mark.parametrize("path", PATHS)
def test_host_time_vs_queue(
    benchmark,
    path: str,
    queue_ms: float,
    host: str,
    queued_gpu_work: QueuedGPUWork,
    slice_paths: SlicePaths,
) -> None:
    layout, rank = bench_layout(DP_SIZE, Mode.SUM_LEN), DP_SIZE - 1
    gathered = layout.gathered(rank, device="cuda")
    slice_rows = slice_paths.build(path, layout, rank, gathered)
    benchmark.group = f"gpu host time, {_queue_id(queue_ms)}, {host} host"
    rows, timed_busy = _time_behind_queue(benchmark, slice_rows, queue_ms, host, queued_gpu_work)
    benchmark.extra_info.update(path=path, dp_size=DP_SIZE, dp_rank=rank)

    assert torch.equal(rows, layout.expected_rows(rank, device="cuda"))
    if path == "tensor":
        # It read its bounds with item(): the host waited until the queue drained.
        assert not any(timed_busy), "the tensor path returned before the GPU drained"
    elif queue_ms > 0:
        _assert_returned_before_the_queue_drained(timed_busy, queue_ms)


@pytest.mark.parametrize("host", HOST_STATES)
@pytest.mark.parametrize("queue_ms", FLOOR_QUEUE_DEPTHS_MS, ids=_queue_id)
@pytest.mark.parametrize("mode", FLOOR_MODES)
@pytest.mark.parametrize("dp_size", FLOOR_DP_SIZES, ids=lambda dp_size: f"dp{dp_size}")
@pytest.mark.parametrize("path", FLOOR_PATHS)
def test_reference_vs_bare(
    benchmark,
    path: str,
    dp_size: int,
    mode: str,
    queue_ms: float,
    host: str,
    queued_gpu_work: QueuedGPUWork,
    slice_paths: SlicePaths,
) -> None:
    """The reference + slice against the bare slice of precomputed ints, same protocol.

    The last rank of a DP 8 or 64 layout, eager (prefix sum) or graph replay;
    ``unchecked`` computes the reference's ints inline with none of its checks;
    ``no_checks`` returns them from a call of the reference's signature, as a ``DPSlice``.
    ``python benchmarks/floor.py RESULTS.json`` prints the ratios to ``bare``.
    """
    layout, rank = bench_layout(dp_size, FLOOR_MODES[mode]), dp_size - 1
    gathered = layout.gathered(rank, device="cuda")
    slice_rows = slice_paths.build(path, layout, rank, gathered)
    benchmark.group = f"gpu floor {mode} dp{dp_size}, {_queue_id(queue_ms)}, {host} host"
    rows, timed_busy = _time_behind_queue(benchmark, slice_rows, queue_ms, host, queued_gpu_work)
    benchmark.extra_info.update(path=path, dp_size=dp_size, dp_rank=rank, mode=mode)

    assert torch.equal(rows, layout.expected_rows(rank, device="cuda"))
    if queue_ms > 0:
        _assert_returned_before_the_queue_drained(timed_busy, queue_ms)


def test_graph_replay(benchmark, reference_slice: Callable[..., DPSlice]) -> None:
    """Capture the reference slice (locate + copy the rows out) in a CUDA graph; time replay.

    The graph-replay layout is the case the reference serves inside graphs:
    start = rank * graph_extent.  Capture would fail for the tensor path
    (item() is not permitted while a stream captures), so only the reference runs.
    """
    layout, rank = bench_layout(DP_SIZE, Mode.GRAPH_REPLAY), DP_SIZE - 1
    call = layout.call(rank)
    gathered = layout.gathered(rank, device="cuda")
    expected = layout.expected_rows(rank, device="cuda")
    rows_out = torch.empty_like(expected)

    def slice_into_static_output() -> None:
        bounds = reference_slice(
            call.global_num_tokens_cpu,
            call.dp_rank,
            dp_size=call.dp_size,
            can_run_graph=call.can_run_graph,
            graph_extent=call.graph_extent,
        )
        rows_out.copy_(gathered[bounds.start : bounds.stop])

    # Warm up on a side stream before capture, as torch.cuda.graphs recommends.
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            slice_into_static_output()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()

    graph = torch.cuda.CUDAGraph()
    started = time.perf_counter()
    with torch.cuda.graph(graph):
        slice_into_static_output()
    torch.cuda.synchronize()
    capture_ms = (time.perf_counter() - started) * 1000

    rows_out.fill_(-7)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(rows_out, expected)

    replays = 1000
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    end.synchronize()

    benchmark.group = "gpu graph replay"
    benchmark.pedantic(graph.replay, teardown=torch.cuda.synchronize, rounds=500, warmup_rounds=10)
    benchmark.extra_info.update(
        path="reference",
        dp_size=DP_SIZE,
        dp_rank=rank,
        graph_extent=call.graph_extent,
        rows=expected.shape[0],
        capture_ms=round(capture_ms, 3),
        gpu_us_per_replay=round(start.elapsed_time(end) * 1000 / replays, 3),
    )
