"""Fixtures shared by dpslice's benchmarks (run with ``python -m pytest benchmarks``).

The benchmarks live outside ``testpaths``, so the default test run never
collects them.  This conftest provides

* ``slice_case``: the layouts every CPU benchmark is timed on (DP sizes 1, 8
  and 64, eager and CUDA-graph replay, the last rank so the prefix sum is as
  long as it gets);
* ``reference_slice``: the reference under test, slowed on purpose by
  ``DPSLICE_BENCH_SLOWDOWN_US`` microseconds of busy-waiting per call when that
  variable is set, so a comparison run can be shown to fail; only this
  conftest reads the variable;
* ``slice_paths`` and ``queued_gpu_work`` (see ``workloads.py``);
* the library, torch, CUDA and GPU versions in every saved JSON.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import pytest
import torch
from layouts import DP_SIZES, bench_layout
from workloads import QueuedGPUWork, SlicePaths

import dpslice
from dpslice import DPLayout, DPSlice, Mode, dp_local_slice

#: Microseconds of busy-waiting added to every reference call; unset or 0: none.
SLOWDOWN_ENV = "DPSLICE_BENCH_SLOWDOWN_US"

_CASES = [
    pytest.param((dp_size, mode), id=f"dp{dp_size}-{label}")
    for mode, label in ((Mode.SUM_LEN, "eager"), (Mode.GRAPH_REPLAY, "graph"))
    for dp_size in DP_SIZES
]


@pytest.fixture(params=_CASES)
def slice_case(request: pytest.FixtureRequest) -> tuple[DPLayout, int]:
    """A benchmark layout and the rank timed on it (the last one)."""
    dp_size, mode = request.param
    return bench_layout(dp_size, mode), dp_size - 1


def slowdown_us() -> float:
    """The injected slowdown in microseconds, from ``DPSLICE_BENCH_SLOWDOWN_US``."""
    raw = os.environ.get(SLOWDOWN_ENV, "").strip()
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise pytest.UsageError(f"{SLOWDOWN_ENV}={raw!r}: expected microseconds, e.g. 5") from None
    if value < 0:
        raise pytest.UsageError(f"{SLOWDOWN_ENV}={raw!r}: a slowdown cannot be negative")
    return value


def _slowed(delay_us: float) -> Callable[..., DPSlice]:
    delay_ns = round(delay_us * 1000)
    clock = time.perf_counter_ns

    def slowed_reference(*args: Any, **kwargs: Any) -> DPSlice:
        # Busy-wait: time.sleep cannot resolve microseconds.
        deadline = clock() + delay_ns
        while clock() < deadline:
            pass
        return dp_local_slice(*args, **kwargs)

    return slowed_reference


@pytest.fixture
def reference_slice(benchmark: Any) -> Callable[..., DPSlice]:
    """:func:`dpslice.dp_local_slice`, slowed when ``DPSLICE_BENCH_SLOWDOWN_US`` is set.

    Unslowed it is the library function itself, not a wrapper, so the timing
    carries no extra call.  A slowed benchmark says so in its ``extra_info``.
    """
    delay = slowdown_us()
    if delay == 0:
        return dp_local_slice
    benchmark.extra_info["slowdown_us"] = delay
    return _slowed(delay)


@pytest.fixture
def slice_paths(reference_slice: Callable[..., DPSlice]) -> SlicePaths:
    """Builds the reference and the tensor path as per-forward callables."""
    return SlicePaths(reference_slice)


@pytest.fixture(scope="session")
def queued_gpu_work() -> QueuedGPUWork:
    """Calibrated queued GPU work, session-wide; only ``cuda`` benchmarks ask for it."""
    return QueuedGPUWork.calibrate()


def pytest_benchmark_update_machine_info(
    config: pytest.Config, machine_info: dict[str, Any]
) -> None:
    """Record what the numbers depend on beside the CPU: library, torch, CUDA and the GPU."""
    import hypothesis

    machine_info["dpslice"] = dpslice.__version__
    machine_info["torch"] = torch.__version__
    machine_info["hypothesis"] = hypothesis.__version__
    machine_info["cuda"] = torch.version.cuda
    machine_info["gpu"] = _gpu_info()
    slowdown = slowdown_us()
    if slowdown:
        machine_info["slowdown_us"] = slowdown


def _gpu_info() -> dict[str, object] | None:
    # is_available() does not initialise CUDA; the property query does, but only
    # where a device exists, and the GPU benchmarks have initialised it anyway.
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    info: dict[str, object] = {
        "name": props.name,
        "capability": f"{props.major}.{props.minor}",
        "multiprocessors": props.multi_processor_count,
        "memory_gib": round(props.total_memory / 2**30, 1),
    }
    try:  # a private binding: absent from CPU builds, may move between releases
        version = int(torch._C._cuda_getDriverVersion())  # 13000 is CUDA 13.0
    except (AttributeError, RuntimeError, TypeError):
        return info
    info["driver_cuda"] = f"{version // 1000}.{version % 1000 // 10}"
    return info
