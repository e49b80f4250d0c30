"""The guard interface, exercised through CPU-only mode: errors, nesting, allow, threads."""

from __future__ import annotations

import threading

import pytest
import torch

from dpslice import DPSliceError
from dpslice.pytest_plugin import cuda_available
from dpslice.sync import (
    CpuSyncGuard,
    CudaSyncGuard,
    ImplicitSyncError,
    StreamProbeGuard,
    SyncError,
    SyncModeUnavailableError,
    allow_sync,
    find_syncs,
    no_sync,
    resolve_mode,
)

no_gpu = pytest.mark.skipif(cuda_available(), reason="checks behaviour without a GPU")


class TestImplicitSyncError:
    def test_names_the_operation_and_the_users_file_and_line(self) -> None:
        with pytest.raises(ImplicitSyncError) as caught, no_sync("cpu"):
            int(torch.tensor(4))
        error = caught.value
        assert error.op == "Tensor.__int__"
        assert error.filename == __file__
        assert error.events[0].source == "int(torch.tensor(4))"  # the line the user wrote
        message = str(error)
        assert f"{__file__}:{error.lineno}" in message
        assert "int(torch.tensor(4))" in message
        assert "allow_sync" in message  # what to do

    def test_is_a_dpslice_error_and_a_runtime_error(self) -> None:
        assert issubclass(ImplicitSyncError, SyncError)
        assert issubclass(SyncError, DPSliceError)
        assert issubclass(SyncError, RuntimeError)

    def test_a_sync_inside_a_library_function_points_at_that_library_line(self) -> None:
        from dpslice.tensor_path import ForwardBatch, capturer_slice

        batch = ForwardBatch(torch.tensor([3, 5, 2]))
        with pytest.raises(ImplicitSyncError) as caught, no_sync("cpu"):
            capturer_slice(
                torch.arange(10), batch, dp_rank=1, can_run_graph=False, cuda_graph_batch=None
            )
        assert caught.value.filename.endswith("dpslice/tensor_path.py")


class TestGuardForms:
    def test_context_manager_without_a_sync_records_nothing(self) -> None:
        with no_sync("cpu") as guard:
            torch.arange(10)[2:5]
        assert guard.events == []

    def test_decorator_raises_at_the_first_sync(self) -> None:
        @no_sync("cpu")
        def read(tensor: torch.Tensor) -> int:
            return int(tensor)

        with pytest.raises(ImplicitSyncError, match=r"Tensor\.__int__"):
            read(torch.tensor(1))

    def test_decorated_function_may_recurse(self) -> None:
        @no_sync("cpu")
        def depth(n: int) -> int:
            return 0 if n == 0 else 1 + depth(n - 1)

        assert depth(3) == 3

    def test_a_guard_object_is_not_reentrant(self) -> None:
        guard = no_sync("cpu")
        with guard, pytest.raises(SyncError, match="not reentrant"), guard:
            pass

    def test_record_mode_collects_every_sync_and_lets_code_run_on(self) -> None:
        with no_sync("cpu", record=True) as guard:
            first = int(torch.tensor(1))
            second = torch.tensor([2, 3]).tolist()
        assert (first, second) == (1, [2, 3])
        assert [event.op for event in guard.events] == ["Tensor.__int__", "Tensor.tolist"]


class TestAllowAndNesting:
    def test_allow_sync_silences_intended_syncs(self) -> None:
        with no_sync("cpu") as guard:
            with allow_sync():
                int(torch.tensor(1))
            torch.arange(3) + 1
        assert guard.events == []

    def test_allow_sync_works_as_a_decorator(self) -> None:
        @allow_sync()
        def intended() -> int:
            return int(torch.tensor(7))

        with no_sync("cpu"):
            assert intended() == 7

    def test_the_innermost_guard_owns_what_it_sees(self) -> None:
        """find_syncs inside a raising guard records; the outer guard stays quiet."""
        with no_sync("cpu") as outer:
            events = find_syncs(lambda: int(torch.tensor(1)), mode="cpu")
        assert [event.op for event in events] == ["Tensor.__int__"]
        assert outer.events == []

    def test_outer_guard_reports_again_after_the_inner_one_exits(self) -> None:
        def recorded_then_unguarded() -> None:
            find_syncs(lambda: int(torch.tensor(1)), mode="cpu")
            int(torch.tensor(2))

        with pytest.raises(ImplicitSyncError, match=r"int\(torch\.tensor\(2\)\)"), no_sync("cpu"):
            recorded_then_unguarded()


class TestThreads:
    def test_a_guard_sees_only_its_own_thread(self) -> None:
        """Torch modes are thread-local and reporting follows a ContextVar."""
        release = threading.Event()
        seen_by_worker: list[str] = []

        def worker() -> None:
            release.wait(5)
            with no_sync("cpu", record=True) as guard:
                torch.tensor([1, 2]).tolist()
            seen_by_worker.extend(event.op for event in guard.events)

        thread = threading.Thread(target=worker)
        thread.start()
        with no_sync("cpu", record=True) as mine:
            release.set()
            thread.join(5)
            int(torch.tensor(1))
        assert [event.op for event in mine.events] == ["Tensor.__int__"]
        assert seen_by_worker == ["Tensor.tolist"]

    def test_an_unguarded_thread_is_not_reported(self) -> None:
        results: list[int] = []
        with no_sync("cpu") as guard:
            thread = threading.Thread(target=lambda: results.append(int(torch.tensor(5))))
            thread.start()
            thread.join(5)
        assert results == [5]
        assert guard.events == []


class TestModes:
    def test_auto_is_cuda_mode_on_a_gpu_and_cpu_mode_elsewhere(self) -> None:
        assert resolve_mode("auto") == ("cuda" if cuda_available() else "cpu")

    def test_unknown_mode_is_refused(self) -> None:
        with pytest.raises(ValueError, match="choose one of"):
            no_sync("gpu")  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("mode", "guard_type"),
        [("cuda", CudaSyncGuard), ("probe", StreamProbeGuard), ("cpu", CpuSyncGuard)],
    )
    def test_no_sync_builds_the_modes_guard(self, mode: str, guard_type: type) -> None:
        assert type(no_sync(mode)) is guard_type  # type: ignore[arg-type]

    @no_gpu
    @pytest.mark.parametrize("mode", ["cuda", "probe"])
    def test_gpu_modes_refuse_to_arm_without_a_gpu(self, mode: str) -> None:
        with pytest.raises(SyncModeUnavailableError, match="mode='cpu'"), no_sync(mode):  # type: ignore[arg-type]
            pass

    def test_probe_refuses_a_non_positive_sleep(self) -> None:
        with pytest.raises(ValueError, match="sleep_ms"):
            StreamProbeGuard(sleep_ms=0)
