"""CUDA-graph capture: the reference slice captures and replays; the GPU-tensor path cannot.

Capture records kernels without running them, and nothing may wait on the
stream meanwhile.  The reference computes its bounds in Python ints, so its
slice is a plain view and the copy out of it replays against whatever the
buffer holds at replay time.  The tensor path reads its bounds with
``item()``, a synchronisation, which capture forbids ("operation not
permitted when stream is capturing").  A failed capture can leave the CUDA
context unusable, so the failing captures run in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from hypothesis import given, settings

from dpslice import DPLayout, Mode, dp_local_slice
from dpslice.strategies import dp_layouts, layouts_and_ranks

pytestmark = pytest.mark.cuda

CAPTURE_ERROR = "operation not permitted when stream is capturing"


@settings(settings.get_profile("cuda_small"))
@given(
    layout_and_rank=layouts_and_ranks(
        dp_layouts(
            modes=[Mode.SUM_LEN, Mode.MAX_LEN, Mode.GRAPH_REPLAY],
            max_count=64,
            max_dp_size=8,
            gather_skipped=False,
        )
    )
)
def test_reference_slice_captures_and_replays_the_buffers_new_contents(
    layout_and_rank: tuple[DPLayout, int],
) -> None:
    layout, rank = layout_and_rank
    buffer = layout.gathered(rank, device="cuda")
    out = torch.full((layout.owned_rows(rank), 2), -7, dtype=torch.int64, device="cuda")
    replays = torch.zeros((), dtype=torch.int64, device="cuda")  # keeps the graph non-empty
    call = layout.call(rank)

    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        found = dp_local_slice(  # pure Python: nothing here touches the stream
            call.global_num_tokens_cpu,
            rank,
            dp_size=call.dp_size,
            can_run_graph=call.can_run_graph,
            graph_extent=call.graph_extent,
        )
        out.copy_(buffer[found.slice])
        replays.add_(1)
    torch.cuda.synchronize()
    assert bool((out == -7).all()), "capture must record the copy, not run it"

    buffer.mul_(-1).sub_(3)  # new contents, same storage: what the next forward writes
    graph.replay()
    torch.cuda.synchronize()
    assert int(replays) == 1
    assert torch.equal(out, -layout.expected_rows(rank, device="cuda") - 3)


CAPTURE_SCRIPT = """
import traceback

import torch

from dpslice import DPLayout, Mode, dp_local_slice
from dpslice.specimens.tensor_path import ForwardBatch, capturer_slice

layout = {layout!r}
buffer = layout.gathered(1, device="cuda")
batch = ForwardBatch.from_layout(layout, 1, device="cuda")
call = layout.call(1)
graph = torch.cuda.CUDAGraph()
try:
    with torch.cuda.graph(graph):
        if {gpu_path!r}:
            rows = capturer_slice(buffer, batch, dp_rank=1, can_run_graph=call.can_run_graph,
                                  cuda_graph_batch=call.cuda_graph_batch)
        else:
            found = dp_local_slice(call.global_num_tokens_cpu, 1, dp_size=call.dp_size,
                                   can_run_graph=call.can_run_graph,
                                   graph_extent=call.graph_extent)
            rows = buffer[found.slice].clone()
except Exception as error:
    traceback.print_exc()
    print("REJECTED", type(error).__name__, isinstance(error, RuntimeError))
    raise SystemExit(3)
print("CAPTURED")
"""

LAYOUTS = [
    pytest.param(DPLayout((3, 5, 2)), id="eager-two-tensor-bounds"),
    pytest.param(
        DPLayout((3, 5, 2), Mode.GRAPH_REPLAY, graph_batch_size=8), id="replay-tensor-stop"
    ),
]


def capture_in_subprocess(layout: DPLayout, *, gpu_path: bool) -> subprocess.CompletedProcess[str]:
    script = CAPTURE_SCRIPT.format(layout=layout, gpu_path=gpu_path)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_gpu_tensor_path_is_rejected_during_capture(layout: DPLayout) -> None:
    result = capture_in_subprocess(layout, gpu_path=True)
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    assert CAPTURE_ERROR in output
    assert result.stdout.rstrip().endswith("True"), output  # a RuntimeError (or subclass)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_same_harness_captures_the_reference(layout: DPLayout) -> None:
    """The control: the subprocess itself is sound, only the tensor bounds fail."""
    result = capture_in_subprocess(layout, gpu_path=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("CAPTURED")
