"""The stream probe's bookkeeping, run anywhere: the stream and its sleep kernel are faked.

The fake stream is busy after each probe kernel is enqueued and goes idle
when the code under test "waits" (a torch call whose callback drains it).
tests/cuda/ checks the real probe against real waits.
"""

from __future__ import annotations

import time

import pytest
import torch

from dpslice.errors import ImplicitSyncError
from dpslice.sync import StreamProbeGuard, allow_sync, find_syncs, probe


class FakeStream:
    def __init__(self) -> None:
        self.idle = True
        self.kernels = 0

    def enqueue(self, cycles: int) -> None:
        self.kernels += 1
        self.idle = False

    def query(self) -> bool:
        return self.idle

    def synchronize(self) -> None:
        self.idle = True

    def wait(self, tensor: torch.Tensor) -> torch.Tensor:
        """A torch call (``Tensor.apply_``) during which the host waits for the GPU."""

        def drain(value: float) -> float:
            self.idle = True
            return value

        return tensor.apply_(drain)


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch) -> FakeStream:
    fake = FakeStream()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: fake)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(probe, "cycles_per_ms", lambda device: 1000.0)
    monkeypatch.setattr(probe, "_sleep", fake.enqueue)
    return fake


def test_a_wait_is_attributed_to_the_call_and_line(stream: FakeStream) -> None:
    with pytest.raises(ImplicitSyncError) as caught, StreamProbeGuard():
        stream.wait(torch.zeros(2))
    assert caught.value.op == "Tensor.apply_"
    assert caught.value.events[0].source == "return tensor.apply_(drain)"


def test_calls_that_leave_the_stream_busy_are_not_reported(stream: FakeStream) -> None:
    events = find_syncs(lambda: torch.arange(4)[1:3] + 1, mode="probe")
    assert events == ()


def test_every_wait_is_recorded_and_the_probe_re_arms_after_each(stream: FakeStream) -> None:
    tensor = torch.zeros(2)

    def twice() -> None:
        stream.wait(tensor)
        tensor.add_(1)
        stream.wait(tensor)

    events = find_syncs(twice, mode="probe")
    assert [event.op for event in events] == ["Tensor.apply_", "Tensor.apply_"]
    assert stream.kernels >= 3  # one on entry, one after each wait


def test_an_allowed_wait_is_not_reported(stream: FakeStream) -> None:
    def intended() -> None:
        with allow_sync():
            stream.wait(torch.zeros(2))

    assert find_syncs(intended, mode="probe") == ()


def test_a_queue_drained_early_outside_torch_calls_is_reported_at_exit(
    stream: FakeStream,
) -> None:
    events = find_syncs(stream.synchronize, mode="probe", sleep_ms=60_000)
    assert [event.op for event in events] == ["(a wait outside any torch call)"]


def test_a_queue_that_may_have_drained_by_itself_is_not_blamed(stream: FakeStream) -> None:
    def slow_host_code() -> None:
        time.sleep(0.02)
        stream.idle = True  # the kernel ran out while the host computed

    assert find_syncs(slow_host_code, mode="probe", sleep_ms=1) == ()
