"""The runner's fork server: workers forked from one process that imported once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dpslice.runner import How, Job, Limit, Limits, Phase, Worker, environment, follow, stop_all
from dpslice.runner.forkserver import ForkServer
from dpslice.runner.worker import BOARD_HEADER, read_board

JOBS = """
import os
import signal
import sys


def warm():
    import torch  # noqa: F401


def broken_warm():
    raise RuntimeError("the warm-up broke")


def state(channel, name):
    return "torch" in sys.modules, os.getppid(), os.environ.get(name)


def calls(channel, count, size):
    for number in range(count):
        channel.calling(("call", number))
        channel.returned()
    channel.note("after")
    channel.calling("x" * size)
    signal.pause()


def breaks_in_call(channel):
    channel.calling("the call")
    raise SystemExit(3)


def kill_parent(channel):
    os.kill(os.getppid(), signal.SIGKILL)
    signal.pause()
"""


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    (tmp_path / "runner_jobs.py").write_text(textwrap.dedent(JOBS))
    with environment() as env:
        env["PYTHONPATH"] = str(tmp_path)
        yield env
    stop_all()


def run(worker: Worker, job: Job) -> Worker:
    worker.give(job, Limits(start=60, job=60))
    while not (ended := follow([worker])):
        pass
    assert ended == [worker]
    return worker


def ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return int(stat.rpartition(b")")[2].split()[1])


def test_workers_are_forked_from_one_server_that_imported_for_them(
    env: dict[str, str],
) -> None:
    workers = [Worker(env, warm=("runner_jobs:warm",)) for _ in range(2)]
    server = ppid(workers[0].pid)
    assert server != os.getpid()
    assert ppid(server) == os.getpid()
    for worker in workers:
        imported, parent, _ = run(worker, Job("runner_jobs:state", ("X",))).value
        assert imported  # before the job imported anything
        assert parent == server
    for worker in workers:
        worker.stop()
    # The server ends with its last worker: nothing is left below this process.
    assert not Path(f"/proc/{server}").exists()


def test_each_worker_gets_its_own_environment(env: dict[str, str]) -> None:
    first = Worker(env)
    second = Worker({**env, "HYPOTHESIS_STORAGE_DIRECTORY": "elsewhere"})
    assert ppid(first.pid) == ppid(second.pid)
    job = Job("runner_jobs:state", ("HYPOTHESIS_STORAGE_DIRECTORY",))
    own = [run(worker, job).value[2] for worker in (first, second)]
    assert own == [env["HYPOTHESIS_STORAGE_DIRECTORY"], "elsewhere"]


def test_a_warm_up_that_raises_breaks_the_worker_with_its_traceback(
    env: dict[str, str],
) -> None:
    worker = run(Worker(env, warm=("runner_jobs:broken_warm",)), Job("runner_jobs:state", ("X",)))
    assert worker.stopped is not None
    assert worker.stopped.how is How.BROKE
    assert worker.stopped.broke is not None
    assert "the warm-up broke" in worker.stopped.broke.text


def test_a_target_that_kills_the_server_ends_its_own_worker_only(env: dict[str, str]) -> None:
    worker = run(Worker(env), Job("runner_jobs:kill_parent", ()))
    assert worker.stopped is not None
    assert worker.stopped.how is How.ENDED
    assert worker.stopped.ending is not None
    assert worker.stopped.ending.signal == "SIGKILL"
    worker.stop()
    # The next worker comes from a new server.
    assert run(Worker(env), Job("runner_jobs:state", ("X",))).value[0] is False


def test_the_call_in_flight_and_the_calls_made_come_from_the_call_board(
    env: dict[str, str],
) -> None:
    seen = []
    worker = Worker(env)
    size = 200_000  # larger than the board's first size: it grows
    worker.give(Job("runner_jobs:calls", (5, size)), Limits(start=60, call=0.5, job=60))
    while not follow([worker], lambda worker, payload: seen.append((payload, worker.calls))):
        pass
    assert seen == [("after", 5)]  # the calls made before the note, exactly
    assert worker.stopped is not None
    assert worker.stopped.how is How.HUNG
    assert worker.stopped.limit is Limit.CALL
    assert worker.stopped.record == "x" * size
    assert worker.calls == 6


def test_a_job_that_breaks_in_a_call_leaves_that_call_in_flight(env: dict[str, str]) -> None:
    worker = run(Worker(env), Job("runner_jobs:breaks_in_call", ()))
    assert worker.stopped is not None
    assert (worker.stopped.how, worker.stopped.phase) == (How.BROKE, Phase.CALL)
    assert worker.stopped.record == "the call"


def test_a_server_started_ahead_imports_before_the_first_fork(env: dict[str, str]) -> None:
    ForkServer.for_env(env, warm=("runner_jobs:warm",))
    imported, _, _ = run(Worker(env), Job("runner_jobs:state", ("X",))).value
    assert imported


WRITER = """
import os, sys, time
from dpslice.runner.worker import Channel

events_read, events_write = os.pipe()
channel = Channel(events_write, int(sys.argv[1]))
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    channel.calling(("a call", 1))
    channel.returned()
"""


def test_a_header_read_while_the_worker_writes_it_is_never_taken_for_a_state(
    tmp_path: Path,
) -> None:
    board = os.open(tmp_path / "board", os.O_RDWR | os.O_CREAT)
    os.ftruncate(board, BOARD_HEADER)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(board), "2"], pass_fds=(board,))
    taken = 0
    last = 0.0
    try:
        while writer.poll() is None:
            header = read_board(board)
            if header is None or header[0] == 0:
                continue
            sequence, when, size = header
            assert (size > 0) == bool(sequence % 2), header  # a call's record, or none
            assert last <= when <= time.monotonic(), header
            last = when
            taken += 1
    finally:
        writer.wait()
        os.close(board)
    assert writer.returncode == 0
    assert taken > 1000
