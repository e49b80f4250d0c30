"""CUDA mode's bookkeeping, run anywhere: torch's debug-mode switch is replaced by a fake.

The fake behaves as torch does: while the mode is "error", a synchronising
call raises ``RuntimeError("called a synchronizing CUDA operation")`` before
it syncs.  A synchronising call is simulated with ``Tensor.apply_``, a torch
function that runs a Python callback.  tests/cuda/ checks the same behaviour
against the real debug mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import torch

from dpslice.errors import ImplicitSyncError
from dpslice.sync import CudaSyncGuard, allow_sync, cuda_mode, find_syncs, no_sync
from dpslice.sync.cuda_mode import DEBUG_MODE_ERROR_TEXT, pageable_copy_reason

ERROR, WARN, DEFAULT = 2, 1, 0


class FakeDebugMode:
    """Stands in for torch.cuda's process-wide sync debug mode."""

    def __init__(self, mode: int = DEFAULT) -> None:
        self.mode = mode
        self.lock = threading.Lock()

    def available(self) -> bool:
        return True

    def get(self) -> int:
        return self.mode

    def set(self, mode: int) -> None:
        self.mode = mode

    def synchronising_call(self, tensor: torch.Tensor) -> torch.Tensor:
        """A torch call that syncs: it raises first if the debug mode is "error"."""

        def read(value: float) -> float:
            if self.mode == ERROR:
                raise RuntimeError(DEBUG_MODE_ERROR_TEXT)
            return value + 1

        return tensor.apply_(read)


class DeviceSynchronized(Exception):
    """Raised by the stand-in for torch.cuda.synchronize: the real call would have run."""


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDebugMode]:
    fake = FakeDebugMode()
    monkeypatch.setattr(cuda_mode, "_switch", fake)

    def synchronize(device: object = None) -> None:
        raise DeviceSynchronized

    # The hooks wrap whatever torch.cuda.synchronize is when they install, so
    # whether it "ran" is visible on a CPU build and on a GPU alike.
    monkeypatch.setattr(torch.cuda, "synchronize", synchronize)
    yield fake
    assert cuda_mode._STATE.guards == 0, "a test left CUDA mode armed"


class TestDebugModeSwitching:
    def test_arms_error_mode_and_restores_the_previous_mode(self, fake_cuda: FakeDebugMode) -> None:
        fake_cuda.mode = WARN
        with no_sync("cuda"):
            assert fake_cuda.mode == ERROR
        assert fake_cuda.mode == WARN

    def test_nested_guards_restore_only_when_the_outermost_exits(
        self, fake_cuda: FakeDebugMode
    ) -> None:
        with no_sync("cuda"):
            with no_sync("cuda"):
                pass
            assert fake_cuda.mode == ERROR
        assert fake_cuda.mode == DEFAULT

    def test_threads_leaving_in_any_order_restore_the_previous_mode(
        self, fake_cuda: FakeDebugMode
    ) -> None:
        fake_cuda.mode = WARN
        inside = threading.Barrier(4)
        modes_seen: list[int] = []

        def guarded(delay_exit: threading.Event) -> None:
            with no_sync("cuda"):
                inside.wait(5)
                modes_seen.append(fake_cuda.mode)
                delay_exit.wait(5)

        gates = [threading.Event() for _ in range(4)]
        threads = [threading.Thread(target=guarded, args=(gate,)) for gate in gates]
        for thread in threads:
            thread.start()
        for gate, thread in zip(reversed(gates), reversed(threads), strict=True):
            gate.set()
            thread.join(5)
        assert modes_seen == [ERROR] * 4
        assert fake_cuda.mode == WARN

    def test_allow_sync_relaxes_the_mode_and_re_arms_it(self, fake_cuda: FakeDebugMode) -> None:
        with no_sync("cuda"):
            with allow_sync():
                assert fake_cuda.mode == DEFAULT
                fake_cuda.synchronising_call(torch.zeros(2))
            assert fake_cuda.mode == ERROR


class TestReporting:
    def test_a_debug_mode_error_becomes_an_implicit_sync_error_naming_the_call(
        self, fake_cuda: FakeDebugMode
    ) -> None:
        with pytest.raises(ImplicitSyncError) as caught, no_sync("cuda"):
            fake_cuda.synchronising_call(torch.zeros(2))
        assert caught.value.op == "Tensor.apply_"
        # The innermost frame outside torch that made the call: the fake's own line.
        assert caught.value.filename == __file__
        assert caught.value.events[0].source == "return tensor.apply_(read)"
        assert DEBUG_MODE_ERROR_TEXT in str(caught.value.__cause__)

    def test_recording_reruns_the_call_relaxed_so_the_code_runs_on(
        self, fake_cuda: FakeDebugMode
    ) -> None:
        tensor = torch.zeros(2)
        events = find_syncs(lambda: fake_cuda.synchronising_call(tensor), mode="cuda")
        assert [event.op for event in events] == ["Tensor.apply_"]
        assert tensor.tolist() == [1.0, 1.0]  # the call completed, once

    def test_a_debug_mode_error_outside_any_torch_call_is_still_located(
        self, fake_cuda: FakeDebugMode
    ) -> None:
        with pytest.raises(ImplicitSyncError) as caught, no_sync("cuda"):
            raise RuntimeError(DEBUG_MODE_ERROR_TEXT)  # as from a C++ extension would
        assert caught.value.filename == __file__
        assert caught.value.events[0].source.startswith("raise RuntimeError")

    def test_unrelated_runtime_errors_pass_through(self, fake_cuda: FakeDebugMode) -> None:
        with pytest.raises(RuntimeError, match="size of tensor") as caught, no_sync("cuda"):
            torch.zeros(2) + torch.zeros(3)
        assert not isinstance(caught.value, ImplicitSyncError)


class TestContexts:
    def test_a_sync_the_block_swallows_fails_at_exit(self, fake_cuda: FakeDebugMode) -> None:
        def careless() -> None:
            with contextlib.suppress(Exception):
                fake_cuda.synchronising_call(torch.zeros(2))

        with pytest.raises(ImplicitSyncError) as caught, no_sync("cuda"):
            careless()
        assert caught.value.caught
        assert caught.value.op == "Tensor.apply_"

    def test_a_tasks_guard_keeps_catching_after_an_overlapping_tasks_guard_exits(
        self, fake_cuda: FakeDebugMode
    ) -> None:
        outcome: dict[str, str] = {}

        async def main() -> None:
            a_in, b_in, a_out = asyncio.Event(), asyncio.Event(), asyncio.Event()

            async def a() -> None:
                with no_sync("cuda"):
                    a_in.set()
                    await b_in.wait()
                a_out.set()

            async def b() -> None:
                await a_in.wait()
                try:
                    with no_sync("cuda"):
                        b_in.set()
                        await a_out.wait()
                        fake_cuda.synchronising_call(torch.zeros(2))
                    outcome["b"] = "no error: the sync went unseen"
                except ImplicitSyncError as error:
                    outcome["b"] = f"ImplicitSyncError: {error.op}"

            await asyncio.wait_for(asyncio.gather(a(), b()), timeout=10)

        asyncio.run(main())
        assert outcome == {"b": "ImplicitSyncError: Tensor.apply_"}
        assert torch._C._len_torch_function_stack() == 0


class TestHooks:
    def test_device_synchronize_is_reported_before_it_runs(self, fake_cuda: FakeDebugMode) -> None:
        with pytest.raises(ImplicitSyncError) as caught, no_sync("cuda"):
            torch.cuda.synchronize()
        assert caught.value.op == "torch.cuda.synchronize"
        assert caught.value.events[0].source == "torch.cuda.synchronize()"

    @pytest.mark.parametrize(
        "owner", [torch.cuda.Event, torch.cuda.Stream], ids=["event", "stream"]
    )
    def test_event_and_stream_synchronize_are_reported(
        self, fake_cuda: FakeDebugMode, owner: type
    ) -> None:
        match = rf"{owner.__name__}\.synchronize"
        with pytest.raises(ImplicitSyncError, match=match), no_sync("cuda"):
            owner.synchronize(None)

    def test_hooks_are_removed_when_the_last_guard_exits(self, fake_cuda: FakeDebugMode) -> None:
        originals = (torch.cuda.synchronize, vars(torch.cuda.Event)["synchronize"])
        with no_sync("cuda"):
            assert torch.cuda.synchronize is not originals[0]
        assert (torch.cuda.synchronize, vars(torch.cuda.Event)["synchronize"]) == originals

    def test_pageable_non_blocking_upload_is_reported_before_it_runs(
        self, fake_cuda: FakeDebugMode
    ) -> None:
        with pytest.raises(ImplicitSyncError, match="pageable"), no_sync("cuda"):
            torch.ones(2).to("cuda", non_blocking=True)

    def test_without_extra_hooks_only_the_debug_mode_is_left(
        self, fake_cuda: FakeDebugMode
    ) -> None:
        guard = CudaSyncGuard(record=True, extra_hooks=False)
        with guard, pytest.raises(DeviceSynchronized):
            torch.cuda.synchronize()
        assert guard.events == []

    def test_an_allowed_synchronize_is_not_reported(self, fake_cuda: FakeDebugMode) -> None:
        guard = CudaSyncGuard(record=True)
        with guard, allow_sync(), pytest.raises(DeviceSynchronized):
            torch.cuda.synchronize()
        assert guard.events == []


def device(kind: str, pinned: bool = False) -> SimpleNamespace:
    """A tensor stand-in: only the device and pinning matter to the copy check."""
    return SimpleNamespace(device=torch.device(kind), is_pinned=lambda: pinned)


@pytest.mark.parametrize(
    ("func", "args", "kwargs", "flagged"),
    [
        pytest.param(torch.Tensor.copy_, (device("cpu"), device("cuda"), True), {}, True,
                     id="d2h-into-pageable"),
        pytest.param(torch.Tensor.copy_, (device("cpu", True), device("cuda")),
                     {"non_blocking": True}, False, id="d2h-into-pinned"),
        pytest.param(torch.Tensor.copy_, (device("cuda"), device("cpu")),
                     {"non_blocking": True}, True, id="h2d-from-pageable"),
        pytest.param(torch.Tensor.copy_, (device("cpu"), device("cuda")), {}, False,
                     id="blocking-d2h-is-the-debug-modes-job"),
        pytest.param(torch.Tensor.cuda, (device("cpu"),), {"non_blocking": True}, True,
                     id="cuda-from-pageable"),
        pytest.param(torch.Tensor.cuda, (device("cpu", True), None, True), {}, False,
                     id="cuda-from-pinned"),
    ],
)  # fmt: skip
def test_pageable_copy_reason(
    func: object, args: tuple[object, ...], kwargs: dict[str, object], flagged: bool
) -> None:
    assert (pageable_copy_reason(func, args, kwargs) is not None) is flagged
