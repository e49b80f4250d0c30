"""The guard interface, exercised through CPU-only mode: errors, nesting, allow, threads."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode

from dpslice.errors import ImplicitSyncError, InvalidInputError, SyncError, SyncModeUnavailableError
from dpslice.pytest_plugin import cuda_available
from dpslice.sync import (
    CpuSyncGuard,
    CudaSyncGuard,
    StreamProbeGuard,
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

    def test_is_a_runtime_error_not_a_dpslice_error(self) -> None:
        assert issubclass(ImplicitSyncError, SyncError)
        assert issubclass(SyncError, RuntimeError)
        assert not issubclass(SyncError, (InvalidInputError, ValueError))

    def test_a_sync_inside_a_library_function_points_at_that_library_line(self) -> None:
        from dpslice.specimens.tensor_path import ForwardBatch, capturer_slice

        batch = ForwardBatch(torch.tensor([3, 5, 2]))
        with pytest.raises(ImplicitSyncError) as caught, no_sync("cpu"):
            capturer_slice(
                torch.arange(10), batch, dp_rank=1, can_run_graph=False, cuda_graph_batch=None
            )
        assert caught.value.filename.endswith("dpslice/specimens/tensor_path.py")


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


def swallowing(read: Callable[[], object]) -> None:
    """What a careless block does: catch everything around a sync and carry on."""
    with contextlib.suppress(Exception):
        read()


class TestSwallowedSync:
    """A block that catches the guard's error and carries on still fails, at the guard's exit."""

    def test_a_sync_the_block_swallows_fails_at_exit(self) -> None:
        with pytest.raises(ImplicitSyncError) as caught, no_sync("cpu"):
            swallowing(lambda: int(torch.tensor(1)))
        error = caught.value
        assert error.caught
        assert error.op == "Tensor.__int__"
        assert "caught the error raised at the sync" in str(error)
        # The error raised at the sync, with its traceback, is the cause.
        assert isinstance(error.__cause__, ImplicitSyncError)
        assert error.__cause__.lineno == error.lineno

    def test_a_decorated_function_that_swallows_fails(self) -> None:
        @no_sync("cpu")
        def careless() -> None:
            swallowing(lambda: torch.tensor([1, 2]).tolist())

        with pytest.raises(ImplicitSyncError, match=r"Tensor\.tolist"):
            careless()

    def test_every_swallowed_sync_is_listed(self) -> None:
        def body() -> None:
            swallowing(lambda: int(torch.tensor(1)))
            swallowing(lambda: int(torch.tensor(2)))

        with pytest.raises(ImplicitSyncError) as caught, no_sync("cpu"):
            body()
        assert len(caught.value.events) == 2

    def test_the_blocks_own_later_error_is_kept_as_the_context(self) -> None:
        def body() -> None:
            swallowing(lambda: int(torch.tensor(1)))
            raise KeyError("later")

        with pytest.raises(ImplicitSyncError) as caught, no_sync("cpu"):
            body()
        assert isinstance(caught.value.__context__, KeyError)

    def test_an_error_raised_from_the_sync_error_is_left_alone(self) -> None:
        """Converting the sync error into one's own is not swallowing it."""

        def body() -> None:
            try:
                int(torch.tensor(1))
            except ImplicitSyncError as error:
                raise LookupError("wrapped") from error

        with pytest.raises(LookupError) as caught, no_sync("cpu"):
            body()
        assert isinstance(caught.value.__cause__, ImplicitSyncError)

    def test_a_keyboard_interrupt_is_never_replaced(self) -> None:
        def body() -> None:
            swallowing(lambda: int(torch.tensor(1)))
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt), no_sync("cpu"):
            body()

    def test_a_recording_guard_never_raises(self) -> None:
        with no_sync("cpu", record=True) as guard:
            int(torch.tensor(1))
        assert len(guard.events) == 1


def overlapping_tasks(first: Callable[[], Any], second: Callable[[], Any]) -> dict[str, str]:
    """Run two asyncio tasks whose guarded blocks overlap; the first block ends first.

    Task a enters ``first()``'s guard, task b enters ``second()``'s, a leaves,
    then b syncs once inside its guard.  Returns what each task saw.
    """
    outcome: dict[str, str] = {}

    async def main() -> None:
        a_in, b_in, a_out = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def a() -> None:
            with first():
                a_in.set()
                await b_in.wait()
            outcome["a"] = "left cleanly"
            a_out.set()

        async def b() -> None:
            await a_in.wait()
            try:
                with second():
                    b_in.set()
                    await a_out.wait()
                    int(torch.tensor(1))
                outcome["b"] = "no error: the sync went unseen"
            except ImplicitSyncError as error:
                outcome["b"] = f"ImplicitSyncError: {error.op}"

        await asyncio.wait_for(asyncio.gather(a(), b()), timeout=10)

    asyncio.run(main())
    return outcome


class TestAsyncioTasks:
    """Guards are per context: an asyncio task's guard is its own, whatever other tasks do."""

    def test_a_guard_keeps_catching_after_an_overlapping_tasks_guard_exits(self) -> None:
        outcome = overlapping_tasks(lambda: no_sync("cpu"), lambda: no_sync("cpu"))
        assert outcome == {"a": "left cleanly", "b": "ImplicitSyncError: Tensor.__int__"}

    def test_an_unguarded_task_is_not_reported_while_another_is_guarded(self) -> None:
        seen: list[str] = []

        async def main() -> None:
            started = asyncio.Event()
            done = asyncio.Event()

            async def guarded() -> None:
                with no_sync("cpu", record=True) as guard:
                    started.set()
                    await done.wait()
                seen.extend(event.op for event in guard.events)

            async def unguarded() -> None:
                await started.wait()
                assert int(torch.tensor(5)) == 5
                done.set()

            await asyncio.wait_for(asyncio.gather(guarded(), unguarded()), timeout=10)

        asyncio.run(main())
        assert seen == []

    def test_another_tasks_torch_mode_survives_a_guard_leaving_under_it(self) -> None:
        """Task b pushes its own torch mode over a's guard; a leaves; b's mode stays on top."""
        calls: list[str] = []

        class Counting(TorchFunctionMode):
            def __torch_function__(
                self,
                func: Any,
                types: Any,
                args: tuple[Any, ...] = (),
                kwargs: dict[str, Any] | None = None,
            ) -> Any:
                calls.append(getattr(func, "__name__", "?"))
                return func(*args, **(kwargs or {}))

        async def main() -> None:
            a_in, b_in, a_out = asyncio.Event(), asyncio.Event(), asyncio.Event()

            async def a() -> None:
                with no_sync("cpu"):
                    a_in.set()
                    await b_in.wait()
                a_out.set()

            async def b() -> None:
                await a_in.wait()
                with Counting():
                    b_in.set()
                    await a_out.wait()
                    torch.ones(1).neg()

            await asyncio.wait_for(asyncio.gather(a(), b()), timeout=10)

        asyncio.run(main())
        assert "neg" in calls
        assert torch._C._len_torch_function_stack() == 0
        assert torch._C._len_torch_dispatch_stack() == 0


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

    def test_a_guard_keeps_catching_after_an_overlapping_threads_guard_exits(self) -> None:
        a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
        outcome: dict[str, str] = {}

        def a() -> None:
            with no_sync("cpu"):
                a_in.set()
                b_in.wait(5)
            outcome["a"] = "left cleanly"
            a_out.set()

        def b() -> None:
            a_in.wait(5)
            try:
                with no_sync("cpu"):
                    b_in.set()
                    a_out.wait(5)
                    int(torch.tensor(1))
                outcome["b"] = "no error: the sync went unseen"
            except ImplicitSyncError as error:
                outcome["b"] = f"ImplicitSyncError: {error.op}"

        threads = [threading.Thread(target=a), threading.Thread(target=b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert outcome == {"a": "left cleanly", "b": "ImplicitSyncError: Tensor.__int__"}

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


class TestDecoratingCoroutinesAndGenerators:
    def test_a_coroutine_is_guarded_across_its_awaits(self) -> None:

        @no_sync(mode="cpu")
        async def reads_a_count() -> int:
            await asyncio.sleep(0)
            return int(torch.tensor(3))

        with pytest.raises(ImplicitSyncError, match=r"Tensor\.__int__"):
            asyncio.run(reads_a_count())

    @pytest.mark.parametrize("kind", ["generator", "async generator"])
    def test_a_generator_function_is_refused(self, kind: str) -> None:
        def steps() -> Any:
            yield int(torch.tensor(3))

        async def async_steps() -> Any:
            yield int(torch.tensor(3))

        with pytest.raises(TypeError, match="cannot decorate the generator function"):
            no_sync(mode="cpu")(steps if kind == "generator" else async_steps)
