"""Hazard 1 of docs/hazards.md (sglang #24514, fixed by #24550): tensor slice bounds sync the host.

The pre-#24550 capturer sliced the gathered buffer with the 0-dim tensors of
``get_dp_local_info``; each bound is a ``Tensor.__index__`` -> ``item()`` ->
``cudaStreamSynchronize``.  The reference hands back Python ints and never
syncs.  CPU-only mode shows the two syncs anywhere; on a GPU, CUDA mode and
the stream probe show them for real.
"""

from __future__ import annotations

import pytest

from dpslice import DPLayout, Mode, dp_local_slice
from dpslice.specimens.tensor_path import ForwardBatch, capturer_slice
from dpslice.sync import find_syncs

EAGER = DPLayout((3, 5, 2))
REPLAY = DPLayout((3, 5, 2), Mode.GRAPH_REPLAY, graph_batch_size=8)
MODES = [
    pytest.param("cpu", "cpu", id="cpu-mode"),
    pytest.param("cuda", "cuda", id="cuda-mode", marks=pytest.mark.cuda),
    pytest.param("cuda", "probe", id="stream-probe", marks=pytest.mark.cuda),
]


def gpu_path_syncs(layout: DPLayout, device: str, mode: str) -> int:
    buffer = layout.gathered(1, device=device)
    batch = ForwardBatch.from_layout(layout, 1, device=device)
    events = find_syncs(
        lambda: capturer_slice(
            buffer,
            batch,
            dp_rank=1,
            can_run_graph=layout.mode.is_graph,
            cuda_graph_batch=layout.graph_batch_size,
        ),
        mode=mode,  # type: ignore[arg-type]
    )
    assert all(event.filename.endswith("dpslice/specimens/tensor_path.py") for event in events), (
        events
    )
    return len(events)


@pytest.mark.parametrize(("device", "mode"), MODES)
def test_eager_tensor_bounds_sync(device: str, mode: str) -> None:
    """Two tensor bounds: CPU mode counts both; CUDA mode and the probe stop at each call."""
    assert gpu_path_syncs(EAGER, device, mode) == (2 if mode == "cpu" else 1)


@pytest.mark.parametrize(("device", "mode"), MODES)
def test_graph_replay_tensor_stop_syncs(device: str, mode: str) -> None:
    """Under replay the start is an int, but the stop is still a tensor."""
    assert gpu_path_syncs(REPLAY, device, mode) == 1


@pytest.mark.parametrize(("device", "mode"), MODES)
@pytest.mark.parametrize("layout", [EAGER, REPLAY], ids=["eager", "replay"])
def test_the_reference_slice_never_syncs(device: str, mode: str, layout: DPLayout) -> None:
    buffer = layout.gathered(1, device=device)
    call = layout.call(1)

    def reference_slice() -> object:
        found = dp_local_slice(
            call.global_num_tokens_cpu,
            1,
            dp_size=call.dp_size,
            can_run_graph=call.can_run_graph,
            graph_extent=call.graph_extent,
        )
        return buffer[found.slice]

    assert find_syncs(reference_slice, mode=mode) == ()  # type: ignore[arg-type]
