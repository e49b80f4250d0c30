"""Run the check in a supervised worker: the parent owns the verdict, whatever the target does.

``BatterySupervisor(...).run()`` runs the battery, ``RoundTripSupervisor(...).run()`` the
round trip, each in a worker process (:mod:`dpslice.supervision.worker`) that
imports the target; this process never does.  The worker reports every step
(see its module docstring); the parent keeps the results, watches the clock
and the worker's life, and:

* a call that takes longer than ``timeout`` seconds (measured from the
  worker's record of the call to its next event), or a worker that dies in a
  call (``os._exit``, a segfault), is a FAIL of the property being checked,
  with the layout and the call in flight; the worker's process group is
  killed and a fresh worker runs the remaining properties;
* a target whose import hangs past ``timeout``, ends the process or crashes
  is a bad target (:class:`~dpslice.check.target.BadTargetError`), like an
  import that raises;
* ``KeyboardInterrupt`` (and anything else raised here) kills the worker's
  process group before propagating; :meth:`BatterySupervisor.partial_report`
  (or :meth:`RoundTripSupervisor.partial_report`) then holds what finished.

Every worker's group is killed before the worker is reaped, at every exit.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, NoReturn, Protocol

import dpslice
from dpslice.check.inflight import (
    aborted_result,
    ended,
    hung,
    signal_cause,
    signal_name,
    started_result,
)
from dpslice.check.results import CheckReport, PropertyResult, Stop, Verdict
from dpslice.check.target import Target
from dpslice.errors import BadTargetError, CheckBrokeError, CheckConfigError, UnknownPropertyError
from dpslice.isolation import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_IMPORT_TIMEOUT,
    DEFAULT_MAX_EXAMPLES,
    DEFAULT_RUN_TIMEOUT,
    GATHER_ALLOWANCE,
    STARTUP_ALLOWANCE,
    check_call_timeout,
    kill_tree,
    start_worker,
    stop_requested,
    wait_exit_unreaped,
)
from dpslice.supervision.worker import Job

__all__ = [
    "BatterySupervisor",
    "Listener",
    "RoundTripSupervisor",
    "Workers",
]

#: Seconds the check's own work may take between two events (drawing, the
#: oracle, Hypothesis's bookkeeping), when that exceeds the call timeout.
OWN_WORK_ALLOWANCE = 60.0
#: Seconds a call may be in flight before a spare worker starts, in case it hangs.
_SPARE_AFTER = 1.0
#: Seconds between progress ticks while a property runs.
_TICK = 0.25
#: Seconds the parent lets the worker's records accumulate between two reads.
_BATCH_S = 0.02
#: The event pipe's capacity (Linux default 64 KiB: about 150 call records).
_PIPE_BYTES = 1 << 20
#: Consecutive workers that may die outside any call before the check gives up.
_MAX_JOBS_WITHOUT_RESULT = 2
#: Properties in a row whose first call hangs before the check concludes that
#: every call hangs and runs no more: a target that hangs in one state only
#: has its first call, the simplest layout, return in most properties.
HANGS_BEFORE_GIVING_UP = 3


class Listener(Protocol):
    """Told of the run's progress, for live output; every method may ignore it."""

    live: bool

    def loaded(self, target: Target) -> None: ...

    def started(self, name: str) -> None: ...

    def tick(self, name: str | None, calls: int, seconds: float) -> None: ...

    def finished(self, result: PropertyResult) -> None: ...


# -- one worker ----------------------------------------------------------------


@dataclass(frozen=True)
class _Died:
    """How the worker's process ended: an exit code, or a signal's name."""

    exitcode: int | None
    signal_name: str | None

    def __str__(self) -> str:
        if self.signal_name is not None:
            cause = signal_cause(self.signal_name)
            return f"killed by {self.signal_name}" + (f": {cause}" if cause else "")
        return f"exit code {self.exitcode}"


_BOOT = (
    "import os, sys\n"
    "cwd = os.getcwd()\n"
    # The check's imports come from the installed packages, never from the
    # working directory (a local numpy.py); targets in it still load (appended).
    "sys.path[:] = [p for p in sys.path if p not in ('', cwd)] + [sys.argv[3], cwd]\n"
    "from dpslice.supervision.worker import main\n"
    "main(sys.argv[1:3] + sys.argv[4:])\n"
)


class _Worker:
    """One worker process, the leader of its own process group, and its event pipe."""

    def __init__(self, env: dict[str, str], *, warm: bool = False) -> None:
        # ``warm``: a spare, started ahead of need, also imports the battery (and
        # torch) while it waits, so that it starts on its job at once.
        read_fd, write_fd = os.pipe()
        # Room for a few thousand call records: the parent reads them in batches
        # (see :meth:`receive`), and the worker must not block on a full pipe meanwhile.
        with contextlib.suppress(AttributeError, OSError):
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)  # type: ignore[attr-defined,unused-ignore]
        root = str(Path(dpslice.__file__).resolve().parents[1])
        # Ctrl-C or SIGTERM between starting the process and registering it
        # would leave it unkillable from here: both wait until it is registered.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            self.process = start_worker(
                [sys.executable, "-c", _BOOT, str(write_fd), str(os.getpid()), root]
                + (["warm"] if warm else []),
                pass_fds=[write_fd],
                stdin=subprocess.PIPE,
                # What the target prints goes to stderr: stdout is the report's.
                stdout=2,
                env=env,
            )
            _LIVE[self.process.pid] = self
            self.conn = Connection(read_fd, writable=False)
            self.pidfd: int | None = None
            with contextlib.suppress(AttributeError, OSError):
                self.pidfd = os.pidfd_open(self.process.pid)  # type: ignore[attr-defined,unused-ignore]
        finally:
            os.close(write_fd)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def give(self, job: Job) -> None:
        """Send a job; a worker imports the check first, so a spare one is ready at once.

        A worker that ended its last job with ``done`` takes another.
        """
        assert self.process.stdin is not None
        with contextlib.suppress(OSError):  # it died: seen as a death below
            self.process.stdin.write(pickle.dumps(job))
            self.process.stdin.flush()

    def receive(self, timeout: float) -> list[bytes] | None:
        """The messages that arrive within ``timeout`` s (maybe none); ``None`` once it died.

        Raises:
            KeyboardInterrupt: a stop was requested (:func:`~dpslice.isolation.request_stop`).
        """
        if stop_requested() is not None:
            raise KeyboardInterrupt
        watched: list[Any] = [self.conn]
        if self.pidfd is not None:
            watched.append(self.pidfd)
        ready = wait(watched, timeout=max(0.0, min(timeout, 1.0)))
        messages = self.drain()
        if messages:
            # Let records pile up a moment: one wake-up per batch, not per call, so
            # this process takes little of the CPU the worker checks with.
            time.sleep(_BATCH_S)
        elif messages is not None and (self.pidfd in ready or (not ready and self.exited())):
            return None
        return messages

    def drain(self) -> list[bytes] | None:
        """The messages waiting in the pipe, without blocking; ``None`` once it closed
        with none left."""
        messages: list[bytes] = []
        try:
            while self.conn.poll():
                messages.append(self.conn.recv_bytes())
        except (EOFError, OSError):
            return messages or None
        return messages

    def exited(self) -> bool:
        """Whether the process has ended (it is not reaped yet)."""
        return wait_exit_unreaped(self.process.pid, 0.0)

    def death(self) -> _Died:
        """How it ended, once it has (it is not reaped yet)."""
        wait_exit_unreaped(self.process.pid, 5.0)
        try:
            found = os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            code = self.process.returncode
            return _Died(code, None) if code is None or code >= 0 else _signal(-code)
        if found is None:
            return _Died(None, None)
        if found.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
            return _signal(found.si_status)
        return _Died(found.si_status, None)

    def stop(self) -> None:
        """Kill its whole process group, then reap it; safe to call again."""
        _LIVE.pop(self.process.pid, None)
        kill_tree(self.process.pid)  # before reaping: the group id is still reserved
        with contextlib.suppress(OSError):
            self.process.wait()
        self.conn.close()
        if self.pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self.pidfd)
            self.pidfd = None


#: Every worker started and not yet stopped, by pid: :func:`_stop_all` ends them.
_LIVE: dict[int, _Worker] = {}
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _stop_all() -> None:
    for worker in list(_LIVE.values()):
        worker.stop()


def _signal(number: int) -> _Died:
    return _Died(None, signal_name(number))


@contextlib.contextmanager
def _environment() -> Any:
    """The worker's environment: Hypothesis's directory where the user asked, or a temporary one."""
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


class Workers:
    """Where the battery's workers come from, and where one goes back when its job is done.

    A worker that finished its job is kept and takes the next one at once: a
    run of single-property jobs (the pytest plugin's tests, ``-j N``) pays one
    start-up per worker.  A worker that had to be stopped is replaced; with
    ``warm_ahead`` the replacement is started beside the worker handed out,
    importing the battery (and torch) while that one runs, so that a target
    that hangs every property costs the timeout, not a restart, each.
    :meth:`close` stops the workers kept; a worker handed out is its taker's to
    stop or give back.

    Use it as a context manager: ``with Workers(env) as workers:``.
    """

    def __init__(self, env: dict[str, str], *, warm_ahead: bool = False) -> None:
        self.env = env
        self.warm_ahead = warm_ahead
        self._idle: list[_Worker] = []
        self._spares: list[_Worker] = []

    def take(self) -> _Worker:
        """A worker for the next job: one that finished its last, a warm spare, or a new one."""
        if self._idle:
            return self._idle.pop()
        worker = self._spares.pop(0) if self._spares else _Worker(self.env)
        if self.warm_ahead and not self._spares:
            try:
                self._spares.append(_Worker(self.env, warm=True))
            except BaseException:
                worker.stop()
                raise
        return worker

    def prepare(self, ready: int = 1) -> None:
        """Start warm spares until ``ready`` workers wait for a job: the worker in use may
        have to be stopped, or more jobs are about to run side by side."""
        while len(self._idle) + len(self._spares) < ready:
            self._spares.append(_Worker(self.env, warm=True))

    def give_back(self, worker: _Worker) -> None:
        """Keep ``worker``, which finished its job, for the next one."""
        self._idle.append(worker)

    def close(self) -> None:
        for worker in (*self._idle, *self._spares):
            worker.stop()
        self._idle, self._spares = [], []

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# -- the battery -----------------------------------------------------------------


class _Phase(enum.Enum):
    """Where a worker is in its job, as its events tell."""

    STARTING = "starting"  # Python and the check's imports
    LOADING = "loading"  # the target's import
    BETWEEN = "between"  # between two properties
    PROPERTY = "property"  # in a property, outside any call of the target
    CALL = "call"  # in a call of the target
    DONE = "done"  # the job finished


class _How(enum.Enum):
    """How a worker was stopped before it finished its job."""

    HUNG = "hung"  # no event within the phase's deadline
    DIED = "died"  # its process ended
    BROKE = "broke"  # the check's own code failed in it


@dataclass
class _Abort:
    """Why a worker was stopped before it finished, and in which phase; ``broke``: how
    the check's own code failed, in one line."""

    how: _How
    phase: _Phase
    died: _Died | None = None
    broke: str | None = None


@dataclass
class _Assignment:
    """One worker on one job, as this process follows it."""

    worker: _Worker
    #: The properties the job runs, once known (the plan's, for a job sent before it).
    runs: tuple[str, ...] | None
    phase: _Phase = _Phase.STARTING
    deadline: float = 0.0
    #: When a spare worker starts, in case the call in flight hangs.
    spare_at: float | None = None
    #: The property in progress and when it started.
    current: tuple[PropertyResult, float] | None = None
    #: Calls of the target seen in the current property.
    calls: int = 0
    #: The last call's record (``b"C"``), while it may be in flight.
    record: bytes | None = None
    #: Properties this job finished.
    finished: int = 0
    abort: _Abort | None = None


def _last_line(text: str) -> str:
    """The last line of a traceback: the error, as one line."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no traceback"


def _never_loaded(**_: object) -> NoReturn:
    raise RuntimeError("the target was never loaded: the check broke before it could be")


class BatterySupervisor:
    """The battery against ``spec``, run in workers; :meth:`run` returns the report.

    ``jobs`` workers run properties side by side (``dpslice check -j``), each
    property in one worker with its own seed: the verdicts, counterexamples
    and report order are those of ``jobs=1``.

    Attributes:
        target: the target as the worker loaded it (without its function), once loaded.
        results: the properties finished so far, in the plan's order.
    """

    def __init__(
        self,
        spec: str,
        *,
        device: str = "cpu",
        properties: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        max_examples: int = DEFAULT_MAX_EXAMPLES,
        seed: int = 0,
        timeout: float = DEFAULT_CALL_TIMEOUT,
        listener: Listener | None = None,
        load_options: dict[str, Any] | None = None,
        strict: bool = False,
        import_timeout: float = DEFAULT_IMPORT_TIMEOUT,
        workers: Workers | None = None,
        jobs: int = 1,
    ) -> None:
        check_call_timeout(timeout)
        if jobs < 1:
            raise CheckConfigError(f"jobs={jobs}: at least one worker must run the battery")
        self.spec = spec
        self.strict = strict
        self.device = device
        self.properties = tuple(properties) if properties is not None else None
        self.exclude = tuple(exclude)
        self.max_examples = max_examples
        self.seed = seed
        self.timeout = timeout
        self.import_timeout = import_timeout
        self.listener = listener
        self.load_options = dict(load_options or {})
        self.jobs = jobs
        self.target: Target | None = None
        #: The worker's :func:`~dpslice.check.results.versions`, once it loaded the target.
        self.versions: dict[str, str] | None = None
        self._done: dict[str, PropertyResult] = {}
        self._told = 0  # results passed to the listener, in the plan's order
        self._plan: tuple[str, ...] | None = None
        self._began = time.perf_counter()
        self._workers = workers
        self._running: list[_Assignment] = []
        self._first_calls_hung: list[str] = []  # properties in a row whose first call hung
        self._stopped: Stop | None = None

    @property
    def results(self) -> list[PropertyResult]:
        order = {name: index for index, name in enumerate(self._plan or ())}
        return sorted(self._done.values(), key=lambda result: order.get(result.name, 0))

    def unloaded_report(self) -> CheckReport:
        """The report of a run that never loaded its target: no property ran.

        For a check that broke before the target loaded (torch failing to import
        in the worker, say): the JSON still says what was asked and that nothing
        was judged.
        """
        target = Target(
            spec=self.spec,
            function=_never_loaded,
            name=self.spec.rpartition(":")[2],
            accepts=frozenset(),
            source_file=None,
            device=self.device,
        )
        return CheckReport(
            target=target,
            seed=self.seed,
            max_examples=self.max_examples,
            results=(),
            seconds=time.perf_counter() - self._began,
            strict=self.strict,
            properties=self.properties,
            versions=self.versions,
            stopped=Stop.BROKE,
            not_run=self.properties or (),
        )

    def partial_report(self) -> CheckReport | None:
        """What finished so far as a report; ``None`` before the target loaded."""
        if self.target is None:
            return None
        return CheckReport(
            target=self.target,
            seed=self.seed,
            max_examples=self.max_examples,
            results=tuple(self.results),
            seconds=time.perf_counter() - self._began,
            strict=self.strict,
            properties=self.properties,
            versions=self.versions,
            stopped=self._stopped,
            not_run=self.remaining() if self._stopped is not None else (),
        )

    def run(self) -> CheckReport:
        """Run every property, restarting a worker after each call that never came back.

        Raises:
            BadTargetError: the target cannot be loaded (its import raised, hung
                past the timeout, ended the process), or breaks the convention.
            CheckBrokeError: the check itself broke.
        """
        self._began = time.perf_counter()
        with contextlib.ExitStack() as stack:
            workers = self._workers
            if workers is None:
                workers = stack.enter_context(Workers(stack.enter_context(_environment())))
            try:
                self._run(workers)
            finally:
                self._stop_running()
        report = self.partial_report()
        assert report is not None
        return report

    def remaining(self) -> tuple[str, ...]:
        """The properties planned and not finished, in order; all asked for before the plan."""
        return self._remaining() or ()

    def _remaining(self) -> tuple[str, ...] | None:
        if self._plan is None:
            return self.properties
        return tuple(name for name in self._plan if name not in self._done)

    def _run(self, workers: Workers) -> None:
        fruitless = 0  # jobs in a row stopped before they finished a property
        while True:
            self._start_jobs(workers)
            if not self._running:
                return
            for job in self._step(workers):
                self._running.remove(job)
                abort = job.abort
                if abort is None:
                    workers.give_back(job.worker)
                    fruitless = 0
                    continue
                if abort.how is _How.DIED:
                    abort.died = job.worker.death()
                job.worker.stop()
                workers.warm_ahead = True
                judged = self._judge(job, abort)
                if len(self._first_calls_hung) >= HANGS_BEFORE_GIVING_UP:
                    self._stopped = Stop.HUNG
                    return
                fruitless = fruitless + 1 if job.finished == 0 and not judged else 0
                if fruitless > _MAX_JOBS_WITHOUT_RESULT:
                    self._stop_running()
                    self._give_up(abort)
                    return

    def _start_jobs(self, workers: Workers) -> None:
        """Give jobs to idle slots: before the plan is known, one job that loads the
        target (and, with ``jobs > 1``, runs only the first property); then the rest,
        all in one job with ``jobs == 1``, one property a job otherwise."""
        if self._plan is None:
            if self._running:
                return
            if self.jobs > 1:
                workers.prepare(self.jobs)  # all start now; one loads the target
            self._give(workers, self.properties, limit=1 if self.jobs > 1 else None)
            return
        taken = {name for job in self._running for name in job.runs or ()}
        free = [name for name in self._plan if name not in self._done and name not in taken]
        if self.jobs == 1:
            if free and not self._running:
                self._give(workers, tuple(free))
            return
        for name in free[: self.jobs - len(self._running)]:
            self._give(workers, (name,))

    def _give(
        self, workers: Workers, properties: tuple[str, ...] | None, limit: int | None = None
    ) -> None:
        worker = workers.take()
        try:
            worker.give(
                Job(
                    spec=self.spec,
                    device=self.device,
                    properties=properties,
                    exclude=self.exclude,
                    limit=limit,
                    max_examples=self.max_examples,
                    seed=self.seed,
                    strict=self.strict,
                    load_options=self.load_options,
                )
            )
        except BaseException:
            worker.stop()
            raise
        runs = properties if self._plan is not None else None
        job = _Assignment(worker, runs, deadline=time.monotonic() + STARTUP_ALLOWANCE)
        self._running.append(job)

    def _stop_running(self) -> None:
        for job in self._running:
            job.worker.stop()
        self._running = []

    def _step(self, workers: Workers) -> list[_Assignment]:
        """Wait for the running workers' events (or a deadline), handle them, and return
        the jobs that ended: done (``abort`` is ``None``), or stopped answering, or died.

        A call still in flight after :data:`_SPARE_AFTER` seconds (or half the
        timeout) may hang: a spare worker starts then, so that the next
        property need not wait for one.

        Raises:
            KeyboardInterrupt: a stop was requested (:func:`~dpslice.isolation.request_stop`).
        """
        if stop_requested() is not None:
            raise KeyboardInterrupt
        live = self.listener is not None and self.listener.live
        now = time.monotonic()
        wake = min(
            min(job.deadline, job.spare_at if job.spare_at is not None else job.deadline)
            for job in self._running
        )
        watched: list[Any] = [job.worker.conn for job in self._running]
        watched += [job.worker.pidfd for job in self._running if job.worker.pidfd is not None]
        timeout = min(wake - now, _TICK) if live else wake - now
        ready = set(wait(watched, timeout=max(0.0, min(timeout, 1.0))))
        ended: list[_Assignment] = []
        received = False
        for job in list(self._running):
            now = time.monotonic()
            if job.spare_at is not None and now >= job.spare_at:
                workers.prepare()
                job.spare_at = None
            quiet = job.worker.conn not in ready and job.worker.pidfd not in ready
            # Without a pidfd, only polling tells a worker that ended without a word.
            unseen_end = job.worker.pidfd is None and job.worker.exited()
            if quiet and now < job.deadline and not unseen_end:
                continue
            messages = job.worker.drain()
            if messages is None or (not messages and job.worker.exited()):
                job.abort = _Abort(_How.DIED, job.phase)
            elif not messages and now >= job.deadline:
                # What arrived while this process was busy counts: a call whose
                # return is already in the pipe did not hang (drained just now).
                job.abort = _Abort(_How.HUNG, job.phase)
            else:
                received = received or bool(messages)
                self._handle(job, messages or [])
            if job.abort is not None or job.phase is _Phase.DONE:
                ended.append(job)
        if live and self.listener is not None:
            self._tick()
        if received and not ended:
            # Let records pile up a moment: one wake-up per batch, not per call, so
            # this process takes little of the CPU the workers check with.
            time.sleep(_BATCH_S)
        return ended

    def _tick(self) -> None:
        assert self.listener is not None
        current = [job.current for job in self._running if job.current is not None]
        if current:
            started, began = min(current, key=lambda pair: pair[1])
            calls = sum(job.calls for job in self._running)
            self.listener.tick(started.name, calls, time.perf_counter() - began)
        else:
            self.listener.tick(None, 0, time.perf_counter() - self._began)

    def _handle(self, job: _Assignment, messages: list[bytes]) -> None:
        """One worker's events, in order; a ``broke`` event sets ``job.abort``."""
        now = time.monotonic()
        own_work = max(self.timeout, OWN_WORK_ALLOWANCE)
        for data in messages:
            tag = data[:1]
            if tag == b"C":
                job.record = data
                job.calls += 1
                job.phase, job.deadline = _Phase.CALL, now + self.timeout
                job.spare_at = now + min(_SPARE_AFTER, self.timeout / 2)
                continue
            if tag == b"R":
                job.phase, job.deadline, job.spare_at = _Phase.PROPERTY, now + own_work, None
                continue
            event = pickle.loads(data[1:])
            kind = event[0]
            if kind == "loading":
                job.phase, job.deadline = _Phase.LOADING, now + self.import_timeout
            elif kind == "loaded":
                if self._plan is None:
                    self.target, self.versions, self._plan = event[1], event[3], event[2]
                    # Timed from here, as run_check is: the start-up is not the check's.
                    self._began = time.perf_counter()
                    if self.listener is not None:
                        self.listener.loaded(event[1])
                if job.runs is None:
                    job.runs = event[2][:1] if self.jobs > 1 else event[2]
                job.phase, job.deadline = _Phase.BETWEEN, now + own_work
            elif kind == "bad_usage":
                raise UnknownPropertyError(event[1])
            elif kind == "bad_target":
                raise BadTargetError(event[1])
            elif kind == "start":
                job.current = (event[1], time.perf_counter())
                job.calls, job.record = 0, None
                if self.listener is not None:
                    self.listener.started(event[1].name)
                job.phase, job.deadline = _Phase.PROPERTY, now + own_work
            elif kind == "result":
                job.current = None
                job.finished += 1
                self._first_calls_hung.clear()
                self._finish(self._as_seen(job, event[1]))
                job.phase, job.deadline = _Phase.BETWEEN, now + own_work
            elif kind == "broke":
                job.abort = _Abort(_How.BROKE, job.phase, broke=_last_line(event[1]))
                return
            elif kind == "done":
                job.phase = _Phase.DONE
                return

    def _give_up(self, abort: _Abort) -> None:
        for name in self._remaining() or ():
            note = f"not run: the check's worker kept failing outside any call ({abort.how.value})"
            self._finish(started_result(name, "", note=note))

    def _finish(self, result: PropertyResult) -> None:
        """Keep ``result``; tell the listener of every result now due, in the plan's order."""
        self._done[result.name] = result
        if self.listener is None:
            return
        plan = self._plan or tuple(self._done)
        while self._told < len(plan) and plan[self._told] in self._done:
            self._told += 1
            self.listener.finished(self._done[plan[self._told - 1]])

    def _as_seen(self, job: _Assignment, result: PropertyResult) -> PropertyResult:
        """The worker's result, held to what this process saw of the property's calls.

        Code in the worker's process could rewrite the check there; a verdict
        on a property that applies stands only on calls this process saw.
        """
        if result.verdict in (Verdict.NOT_APPLICABLE, Verdict.ERROR):
            return result
        if job.calls == 0:
            return replace(
                result,
                verdict=Verdict.ERROR,
                examples=0,
                counterexamples=(),
                note=f"the worker reported {result.verdict.value} with no call of the target "
                "seen: a verdict the check cannot stand behind (does the target change "
                "dpslice in its process?)",
            )
        return replace(result, examples=min(result.examples, job.calls))

    def _judge(self, job: _Assignment, abort: _Abort) -> bool:
        """Turn a stopped worker into its current property's result, or an error; whether
        a property was in progress (and so has its result)."""
        limit, flag = (
            (self.import_timeout, "--import-timeout")
            if abort.phase is _Phase.LOADING
            else (self.timeout, "--timeout")
        )
        what = {
            _How.HUNG: f"did not finish within {limit:g} s ({flag})",
            _How.DIED: f"ended the process ({abort.died})",
            _How.BROKE: f"broke ({abort.broke})",
        }[abort.how]
        if abort.phase is _Phase.STARTING or (
            abort.how is _How.BROKE and abort.phase is _Phase.LOADING
        ):
            raise CheckBrokeError(
                f"the check's worker {what} before loading the target; "
                "run `python -c 'import dpslice.check'` to see why"
            )
        if abort.phase is _Phase.LOADING:
            raise BadTargetError(
                f"importing the target {self.spec} {what}; a target must import without "
                "exiting, crashing or blocking (raise --import-timeout if it is merely slow)"
            )
        if job.current is None:
            return False  # between properties: the next worker runs the rest
        started, began = job.current
        seconds = time.perf_counter() - began
        if abort.how is _How.BROKE:
            note = f"the check itself broke, not the target: {abort.broke}"
            self._finish(
                replace(
                    started, verdict=Verdict.ERROR, examples=job.calls, seconds=seconds, note=note
                )
            )
            return True
        if abort.phase is _Phase.CALL and job.record is not None and self.target is not None:
            if abort.how is _How.HUNG and job.calls == 1:
                self._first_calls_hung.append(started.name)
            else:
                self._first_calls_hung.clear()
            record = pickle.loads(job.record[1:])
            outcome = (
                hung(self.timeout)
                if abort.how is _How.HUNG
                else ended(
                    abort.died.exitcode if abort.died else None,
                    abort.died.signal_name if abort.died else None,
                )
            )
            self._finish(
                aborted_result(
                    started,
                    examples=job.calls,
                    seconds=seconds,
                    target=self.target,
                    record=record,
                    outcome=outcome,
                )
            )
            return True
        stalled = (
            f"stopped answering for {max(self.timeout, OWN_WORK_ALLOWANCE):g} s"
            if abort.how is _How.HUNG
            else f"ended ({abort.died})"
        )
        self._finish(
            replace(
                started,
                verdict=Verdict.ERROR,
                examples=job.calls,
                seconds=seconds,
                note=f"the check's worker {stalled} outside any call of the target",
            )
        )
        return True


# -- the round trip ----------------------------------------------------------------


class RoundTripSupervisor:
    """The round trip of ``spec`` (:func:`dpslice.distributed.run_round_trip`),
    driven from a supervised worker: ``timeout`` bounds each call, ``import_timeout``
    the target's import.  :meth:`run` returns its report.
    """

    def __init__(
        self,
        spec: str,
        *,
        dp_size: int,
        backend: str = "gloo",
        max_examples: int = 500,
        seed: int = 0,
        timeout: float = DEFAULT_CALL_TIMEOUT,
        run_timeout: float = DEFAULT_RUN_TIMEOUT,
        import_timeout: float = DEFAULT_IMPORT_TIMEOUT,
        listener: Listener | None = None,
    ) -> None:
        self.spec = spec
        self.job = Job(
            spec=spec,
            max_examples=max_examples,
            seed=seed,
            dp_size=dp_size,
            backend=backend,
            call_timeout=timeout,
            run_timeout=run_timeout,
        )
        self.import_timeout = import_timeout
        self.listener = listener
        self.target: Target | None = None
        self.versions: dict[str, str] | None = None
        self._began = time.perf_counter()

    def partial_report(self, why: str = "interrupted before a verdict") -> CheckReport | None:
        """The report of a run that reached no verdict; ``None`` before the target loaded."""
        from dpslice.check.results import RoundTrip, round_trip_result

        if self.target is None:
            return None
        job = self.job
        assert job.dp_size is not None
        return CheckReport(
            target=self.target,
            seed=job.seed,
            max_examples=job.max_examples,
            results=(
                round_trip_result(
                    Verdict.ERROR, seconds=time.perf_counter() - self._began, note=why
                ),
            ),
            seconds=time.perf_counter() - self._began,
            round_trip=RoundTrip(
                dp_size=job.dp_size,
                backend=job.backend,
                call_timeout=job.call_timeout,
                run_timeout=job.run_timeout,
            ),
            versions=self.versions,
        )

    def run(self) -> CheckReport:
        """Run the round trip in a worker.

        Returns:
            The report, with the one property ``round_trip_rows``; its verdict
            is ERROR when the driver itself died or stopped answering.

        Raises:
            BadTargetError: the target cannot be loaded, or the round trip
                cannot run here (a bad backend, too few GPUs).
            CheckBrokeError: the check itself broke.
        """
        job, listener = self.job, self.listener
        # The driver enforces every budget itself; this one only catches a driver
        # that stopped answering: the run, a start-up and a layout, and margin.
        driver_budget = (
            job.run_timeout + STARTUP_ALLOWANCE + 2 * (job.call_timeout + GATHER_ALLOWANCE) + 30.0
        )
        self._began = began = time.perf_counter()
        with _environment() as env:
            try:
                worker = _Worker(env)
                worker.give(job)
                phase, deadline = "starting", time.monotonic() + STARTUP_ALLOWANCE
                while True:
                    now = time.monotonic()
                    if now >= deadline:
                        how, died = "hung", None
                        break
                    messages = worker.receive(deadline - now)
                    if messages is None:
                        how, died = "died", worker.death()
                        break
                    if listener is not None and listener.live:
                        listener.tick(None, 0, time.perf_counter() - began)
                    for data in messages:
                        event = pickle.loads(data[1:])
                        if event[0] == "loading":
                            phase, deadline = "loading", time.monotonic() + self.import_timeout
                        elif event[0] == "loaded":
                            self.target, self.versions = event[1], event[3]
                            if listener is not None:
                                listener.loaded(event[1])
                            phase, deadline = "round trip", time.monotonic() + driver_budget
                        elif event[0] == "bad_target":
                            raise BadTargetError(event[1])
                        elif event[0] == "broke":
                            if self.target is None:
                                raise CheckBrokeError(
                                    f"the check's worker broke: {_last_line(event[1])}"
                                )
                            stopped = self.partial_report(
                                f"the check itself broke, not the target: {_last_line(event[1])}"
                            )
                            assert stopped is not None
                            return stopped
                        elif event[0] == "distributed":
                            report: CheckReport = event[1]
                            return report
            finally:
                _stop_all()
        budget = {"round trip": driver_budget, "loading": self.import_timeout}.get(
            phase, job.call_timeout
        )
        what = f"did not finish within {budget:g} s" if how == "hung" else f"ended ({died})"
        if phase == "loading":
            raise BadTargetError(
                f"importing the target {self.spec} {what}; a target must import without "
                "exiting, crashing or blocking (raise --import-timeout if it is merely slow)"
            )
        stopped = self.partial_report(f"the round trip's driver {what}")
        if phase == "starting" or stopped is None:
            raise CheckBrokeError(f"the check's worker {what} before loading the target")
        return stopped
