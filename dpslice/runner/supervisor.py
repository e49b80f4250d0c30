"""The supervisor's side: start workers, give them jobs, follow their events against
the clock, and stop them, with everything they started, at every exit.

One event loop (:func:`follow`) holds every deadline of every worker: its
start-up, the target's import, each call of the target, the job's own work
between two events and the whole job.  A worker that passes one, or whose
process ends, or whose job raises, is stopped, and its :class:`Stopped` says
how and where, with the call in flight.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from dpslice.isolation import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_IMPORT_TIMEOUT,
    OWN_WORK_ALLOWANCE,
    STARTUP_ALLOWANCE,
    kill_tree,
    stop_requested,
)
from dpslice.runner.forkserver import ForkServer
from dpslice.runner.protocol import (
    Broke,
    Done,
    Ending,
    How,
    Job,
    Limit,
    Loading,
    Note,
    Phase,
    Stopped,
)
from dpslice.runner.worker import BOARD_HEADER, read_board

__all__ = ["Limits", "Worker", "Workers", "environment", "follow", "stop_all"]

#: Seconds between ticks while a listener shows progress.
_TICK = 0.25
#: Seconds between two looks at the call boards of workers that are busy.
_LOOK = 0.05
#: Reads of a call board's header before a look gives up on one the worker keeps rewriting.
_READS = 5
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@dataclass(frozen=True)
class Limits:
    """Seconds a worker gets: to start, to import the target, for one call of it,
    between two events outside calls, and for the whole job."""

    start: float = STARTUP_ALLOWANCE
    load: float = DEFAULT_IMPORT_TIMEOUT
    call: float = DEFAULT_CALL_TIMEOUT
    work: float = OWN_WORK_ALLOWANCE
    job: float = math.inf


class Worker:
    """One worker process, the leader of its own process group, and its event pipe.

    While it runs a job: its :attr:`phase`, the calls of the target it made, the
    record of the last one, and at the end :attr:`value` or :attr:`stopped`.
    """

    def __init__(self, env: dict[str, str], *, warm: Sequence[str] = ()) -> None:
        read_fd, write_fd = os.pipe()
        jobs_read, jobs_write = os.pipe()
        self.conn = Connection(read_fd, writable=False)
        self._jobs = os.fdopen(jobs_write, "wb")
        self._board, path = tempfile.mkstemp(prefix="dpslice-calls-")
        os.unlink(path)
        os.ftruncate(self._board, BOARD_HEADER)
        try:
            self._server = ForkServer.for_env(env)
            self.pid = self._server.fork(env, warm, (write_fd, jobs_read, self._board))
        except BaseException:
            self.conn.close()
            self._jobs.close()
            os.close(self._board)
            raise
        finally:
            os.close(write_fd)
            os.close(jobs_read)
        _LIVE[self.pid] = self
        self.pidfd: int | None = None
        with contextlib.suppress(AttributeError, OSError):
            self.pidfd = os.pidfd_open(self.pid)  # type: ignore[attr-defined,unused-ignore]
        self.phase = Phase.DONE
        self.limits = Limits()
        self.deadline = self.job_deadline = math.inf
        self._sequence = self._first = 0  # on the call board: now, and at the job's start
        self.value: Any = None
        self.stopped: Stopped | None = None

    def give(self, job: Job, limits: Limits) -> None:
        """Send ``job``; a worker that finished its last job takes the next at once."""
        now = time.monotonic()
        self.phase, self.limits = Phase.STARTING, limits
        self.deadline, self.job_deadline = now + limits.start, now + limits.job
        self._first = self._sequence
        self.value, self.stopped = None, None
        with contextlib.suppress(OSError):  # it died: seen as an ending by follow()
            self._jobs.write(pickle.dumps(job))
            self._jobs.flush()

    @property
    def calls(self) -> int:
        """The calls of the target its job has made (each an odd step of the sequence)."""
        return (self._sequence + 1) // 2 - (self._first + 1) // 2

    @property
    def busy(self) -> bool:
        return self.phase is not Phase.DONE and self.stopped is None

    def drain(self) -> list[bytes] | None:
        """The messages waiting, without blocking; ``None`` once the pipe closed with none."""
        messages: list[bytes] = []
        try:
            while self.conn.poll():
                messages.append(self.conn.recv_bytes())
        except (EOFError, OSError):
            return messages or None
        return messages

    def exited(self) -> bool:
        """Whether the process has ended (it is not reaped yet)."""
        return self._server.peek(self.pid) is not None

    def ending(self) -> Ending:
        """How it ended, once it has (it is not reaped yet)."""
        deadline = time.monotonic() + 5.0
        while (status := self._server.peek(self.pid)) is None:
            if time.monotonic() >= deadline:
                return Ending(None)
            time.sleep(0.01)
        return Ending.of(status)

    def stop(self) -> None:
        """Kill its whole process group and what it adopted, then reap it; safe to repeat."""
        if _LIVE.pop(self.pid, None) is None:
            return
        if not self._server.broken:  # else it died with the server, which killed all below
            kill_tree(self.pid)  # before reaping: the group id is still reserved
        self._server.release(self.pid)
        self.conn.close()
        with contextlib.suppress(OSError):
            self._jobs.close()
        os.close(self._board)
        if self.pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self.pidfd)
            self.pidfd = None

    def _stop_as(self, how: How, **details: Any) -> None:
        record = None
        if self.phase is Phase.CALL:
            header = self._read_board()
            if header is not None:
                data = os.pread(self._board, header[2], BOARD_HEADER)
                with contextlib.suppress(Exception):  # a record the worker died writing
                    record = pickle.loads(data)
        self.stopped = Stopped(how, self.phase, record=record, **details)

    def _read_board(self) -> tuple[int, float, int] | None:
        for _ in range(_READS):
            header = read_board(self._board)
            if header is not None:
                return header
        return None

    def _look(self) -> None:
        """Read the call board: a call started or came back since the last look."""
        if self.phase is Phase.DONE or self.stopped is not None:
            return
        header = self._read_board()
        if header is None:  # still torn: the next look reads it
            return
        sequence, when, _ = header
        if sequence == self._sequence:
            return
        self._sequence = sequence
        if sequence % 2:
            self.phase, self.deadline = Phase.CALL, when + self.limits.call
        elif self.phase is Phase.CALL:
            self.phase, self.deadline = Phase.WORKING, when + self.limits.work

    def _handle(self, messages: list[bytes], on_note: Callable[[Worker, Any], None]) -> None:
        now = time.monotonic()
        limits = self.limits
        for data in messages:
            # The calls before the event count; an odd sequence is a call in flight
            # (a BaseException out of the target breaks the job in the call).
            self._sequence = int.from_bytes(data[:8], "little")
            if self._sequence % 2:
                self.phase = Phase.CALL
            event = pickle.loads(data[8:])
            if isinstance(event, Loading):
                self.phase, self.deadline = Phase.LOADING, now + limits.load
            elif isinstance(event, Note):
                self.phase, self.deadline = Phase.WORKING, now + limits.work
                on_note(self, event.payload)
            elif isinstance(event, Done):
                self.phase, self.value = Phase.DONE, event.value
                return
            elif isinstance(event, Broke):
                self._stop_as(How.BROKE, broke=event)
                return
            if self.stopped is not None:  # on_note stopped it
                return

    def _late(self, now: float) -> None:
        if now >= self.job_deadline and self.job_deadline <= self.deadline:
            self._stop_as(How.HUNG, limit=Limit.JOB, seconds=self.limits.job)
            return
        limit = {
            Phase.STARTING: Limit.START,
            Phase.LOADING: Limit.LOAD,
            Phase.CALL: Limit.CALL,
        }.get(self.phase, Limit.WORK)
        self._stop_as(How.HUNG, limit=limit, seconds=getattr(self.limits, limit.value))


#: Every worker started and not yet stopped, by pid: :func:`stop_all` ends them.
_LIVE: dict[int, Worker] = {}


def stop_all() -> None:
    """Stop every worker still running, and the fork servers."""
    for worker in list(_LIVE.values()):
        worker.stop()
    ForkServer.close_all()


def follow(
    workers: Sequence[Worker],
    on_note: Callable[[Worker, Any], None] = lambda worker, payload: None,
    *,
    until: float = math.inf,
    tick: Callable[[], None] | None = None,
) -> list[Worker]:
    """Wait for the busy workers' events, handle them in order, and return the workers
    whose job ended in this step: done (:attr:`Worker.value`), or :attr:`Worker.stopped`.

    Returns ``[]`` once ``until`` (a ``time.monotonic()``) passes first.  ``tick`` is
    called about every 0.25 s.  A stopped worker is not killed here: its taker does.

    Raises:
        KeyboardInterrupt: a stop was requested (:func:`~dpslice.isolation.request_stop`).
    """
    next_tick = time.monotonic() + _TICK
    while True:
        if stop_requested() is not None:
            raise KeyboardInterrupt
        busy = [worker for worker in workers if worker.busy]
        now = time.monotonic()
        if not busy or now >= until:
            return []
        wake = min(until, *(min(w.deadline, w.job_deadline) for w in busy))
        watched: list[Any] = [worker.conn for worker in busy]
        watched += [worker.pidfd for worker in busy if worker.pidfd is not None]
        ready = set(wait(watched, timeout=max(0.0, min(wake - now, _LOOK))))
        ended = []
        for worker in busy:
            if worker.conn in ready or worker.pidfd in ready:
                messages = worker.drain()
                if messages:
                    worker._handle(messages, on_note)
            else:
                messages = []
            worker._look()
            now = time.monotonic()
            if worker.busy:
                if messages is None or (worker.pidfd is None and worker.exited()):
                    # Ended without a word: without a pidfd, only polling tells.
                    worker._stop_as(How.ENDED, ending=worker.ending())
                elif now >= min(worker.deadline, worker.job_deadline):
                    worker._late(now)
            if not worker.busy:
                ended.append(worker)
        if tick is not None and time.monotonic() >= next_tick:
            tick()
            next_tick = time.monotonic() + _TICK
        if ended:
            return ended


class Workers:
    """Where workers come from, and where one goes back when its job is done.

    A worker that finished its job is kept and takes the next at once; a new one is
    forked from the fork server, which imported ``warm`` for it.  Use it as a
    context manager.
    """

    def __init__(self, env: dict[str, str], *, warm: Sequence[str] = ()) -> None:
        self.env = env
        self.warm = tuple(warm)
        self._idle: list[Worker] = []

    def take(self) -> Worker:
        """A worker for the next job: one that finished its last, or a new one."""
        return self._idle.pop() if self._idle else Worker(self.env, warm=self.warm)

    def give_back(self, worker: Worker) -> None:
        """Keep ``worker``, which finished its job, for the next one."""
        self._idle.append(worker)

    def close(self) -> None:
        for worker in self._idle:
            worker.stop()
        self._idle = []

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def environment() -> Iterator[dict[str, str]]:
    """The workers' environment: Hypothesis's directory where the user asked, or a
    temporary one, removed after."""
    env = dict(os.environ)
    if "HYPOTHESIS_STORAGE_DIRECTORY" in env:
        yield env
        return
    directory = tempfile.mkdtemp(prefix="dpslice-hypothesis-")
    env["HYPOTHESIS_STORAGE_DIRECTORY"] = directory
    try:
        yield env
    finally:
        # A signal arriving now waits until the directory is gone.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            shutil.rmtree(directory, ignore_errors=True)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
