"""The GPU modes on a real GPU: CUDA mode stops syncs before they happen, the probe sees them."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import torch

from dpslice.errors import ImplicitSyncError, SyncModeUnavailableError
from dpslice.sync import StreamProbeGuard, allow_sync, find_syncs, no_sync
from dpslice.sync.probe import cycles_per_ms

pytestmark = pytest.mark.cuda


def keep_gpu_busy(ms: float = 200.0) -> None:
    torch.cuda._sleep(round(cycles_per_ms(torch.cuda.current_device()) * ms))


@pytest.fixture(autouse=True)
def idle_gpu_and_default_debug_mode() -> Iterator[None]:
    torch.cuda.synchronize()
    yield
    torch.cuda.synchronize()
    assert torch.cuda.get_sync_debug_mode() == 0, "a guard left the debug mode armed"


class TestCudaMode:
    def test_raises_before_the_sync_naming_the_op_and_line(self) -> None:
        count = torch.tensor(3, device="cuda")
        keep_gpu_busy()
        with pytest.raises(ImplicitSyncError) as caught, no_sync("cuda"):
            int(count)
        assert not torch.cuda.current_stream().query(), "error mode must stop before the wait"
        assert caught.value.op == "Tensor.__int__"
        assert caught.value.events[0].source == "int(count)"

    def test_restores_the_previous_debug_mode(self) -> None:
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with no_sync("cuda"):
                assert torch.cuda.get_sync_debug_mode() == 2
            assert torch.cuda.get_sync_debug_mode() == 1
        finally:
            torch.cuda.set_sync_debug_mode("default")

    def test_allow_sync_lets_an_intended_sync_through(self) -> None:
        count = torch.tensor(3, device="cuda")
        with no_sync("cuda"):
            with allow_sync():
                assert int(count) == 3
            torch.arange(4, device="cuda")[1:3]

    def test_guarded_threads_each_see_their_own_sync(self) -> None:
        errors: dict[int, str] = {}
        start = threading.Barrier(3)

        def guarded(index: int) -> None:
            count = torch.tensor(index, device="cuda")
            start.wait(10)
            try:
                with no_sync("cuda"):
                    count.item()
            except ImplicitSyncError as error:
                errors[index] = error.op

        threads = [threading.Thread(target=guarded, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == {0: "Tensor.item", 1: "Tensor.item", 2: "Tensor.item"}

    def test_an_unguarded_thread_meets_torchs_own_error_while_armed(self) -> None:
        """Documented cost of a process-global setting: torch has no per-thread mode."""
        outcome: list[BaseException] = []
        count = torch.tensor(1, device="cuda")

        def unguarded() -> None:
            try:
                count.item()
            except RuntimeError as error:
                outcome.append(error)

        with no_sync("cuda"):
            thread = threading.Thread(target=unguarded)
            thread.start()
            thread.join(30)
        assert len(outcome) == 1
        assert not isinstance(outcome[0], ImplicitSyncError)

    @pytest.mark.parametrize(
        ("code", "op"),
        [
            pytest.param(lambda: torch.cuda.synchronize(), "torch.cuda.synchronize", id="device"),
            pytest.param(
                lambda: torch.cuda.current_stream().synchronize(),
                "torch.cuda.Stream.synchronize",
                id="stream",
            ),
        ],
    )
    def test_hooks_name_device_and_stream_synchronize_once(self, code: object, op: str) -> None:
        """The debug mode also stops a stream sync; the hook reports it, and only once."""
        events = find_syncs(code, mode="cuda")  # type: ignore[arg-type]
        assert [event.op for event in events] == [op]
        assert events[0].filename == __file__

    def test_pinned_non_blocking_copies_pass(self) -> None:
        pinned = torch.ones(1024).pin_memory()
        on_gpu = torch.empty(1024, device="cuda")
        assert find_syncs(lambda: on_gpu.copy_(pinned, non_blocking=True), mode="cuda") == ()


class TestStreamProbe:
    def test_names_the_op_and_line_of_a_wait(self) -> None:
        count = torch.tensor(3, device="cuda")
        with pytest.raises(ImplicitSyncError) as caught, StreamProbeGuard():
            int(count)
        assert caught.value.op == "Tensor.__int__"
        assert caught.value.events[0].source == "int(count)"

    def test_a_wait_outside_torch_functions_is_named_through_its_c_call(self) -> None:
        events = find_syncs(lambda: torch.cuda.synchronize(), mode="probe")
        assert len(events) == 1
        assert events[0].op == "torch.cuda.synchronize"
        assert events[0].filename == __file__

    def test_records_every_wait_and_nothing_else(self) -> None:
        buffer = torch.arange(16, device="cuda")
        start, stop = torch.tensor(2, device="cuda"), torch.tensor(5, device="cuda")

        def several() -> None:
            buffer[2:5].sum()  # no wait (once its kernel is loaded)
            buffer[start:stop]  # one call, waits
            buffer.nonzero()  # waits
            torch.cumsum(buffer, 0)  # no wait

        with allow_sync():
            several()  # the first launch of a kernel loads it, which blocks the host too
            torch.cuda.synchronize()
        events = find_syncs(several, mode="probe")
        assert [event.op for event in events] == ["Tensor.__getitem__", "Tensor.nonzero"]

    def test_refuses_to_run_inside_capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        scratch = torch.zeros(1, device="cuda")
        with torch.cuda.graph(graph):
            scratch.add_(1)
            with pytest.raises(SyncModeUnavailableError, match="capture"), StreamProbeGuard():
                pass


class TestSameVerdictAsCpuOnlyMode:
    """``sync_free`` in CUDA mode gives the verdicts CPU-only mode gives (with provenance)."""

    @pytest.mark.parametrize(
        ("target", "verdict"),
        [
            ("dpslice.reference:dp_local_slice", "PASS"),
            ("dpslice.specimens.tensor_path:tensor_path_slice", "FAIL"),
            ("tests/sync_verdict_targets.py:int32_cpu_count_slice", "PASS"),
            ("tests/sync_verdict_targets.py:gpu_count_slice", "FAIL"),
            ("tests/sync_verdict_targets.py:cpu_bounds_beside_gpu_counts", "PASS"),
        ],
    )
    def test_sync_free_verdict(self, target: str, verdict: str) -> None:
        from dpslice.check import run_check

        result = run_check(target, max_examples=30, seed=0, properties=["sync_free"], device="cuda")
        assert result.results[0].verdict.name == verdict, result.results[0]
