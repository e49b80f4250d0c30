"""The battery and the round trip, run through the runner: the verdict is this process's.

This process never imports the target.  A call that hangs past ``timeout`` or ends its
process is a FAIL of the property in progress, with the call in flight; an import that
hangs, exits or crashes is a bad target; ``KeyboardInterrupt`` stops every worker, and
``partial_report`` holds what finished.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import KW_ONLY, dataclass, field, replace
from typing import Any, NoReturn, Protocol

from dpslice.check.inflight import (
    aborted,
    aborted_counterexample,
    aborted_result,
    import_failed,
    started_result,
    stopped_text,
)
from dpslice.check.results import CheckReport, PropertyResult, Stop, Verdict
from dpslice.check.target import Target
from dpslice.errors import (
    BadTargetError,
    CheckBrokeError,
    CheckConfigError,
    DeviceError,
    InvalidContractError,
    UnknownPropertyError,
)
from dpslice.isolation import (
    BATTERY_IMPORTS,
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_IMPORT_TIMEOUT,
    DEFAULT_MAX_EXAMPLES,
    DEFAULT_RUN_TIMEOUT,
    OWN_WORK_ALLOWANCE,
    check_call_timeout,
    request_stop,
    signal_order,
    stop_requested,
)
from dpslice.runner import How, Job, Limits, Phase, Stopped, Worker, environment, follow
from dpslice.runner import Workers as _Workers
from dpslice.runner.worker import CallRecorder, Channel

#: Consecutive workers that may die outside any call before the check gives up.
_MAX_JOBS_WITHOUT_RESULT = 2
#: Properties in a row whose first call hangs before the check concludes that
#: every call hangs and runs no more: a target that hangs in one state only
#: has its first call, the simplest layout, return in most properties.
HANGS_BEFORE_GIVING_UP = 3


@dataclass(frozen=True)
class BatteryJob:
    """What one worker runs: the properties (``None``: every registered one) but those
    excluded, only ``limit`` of them after the first ``skip`` (:class:`Loaded` still names
    them all, the plan, so that other workers can take the rest)."""

    spec: str
    device: str
    properties: tuple[str, ...] | None
    exclude: tuple[str, ...]
    max_examples: int
    seed: int
    strict: bool
    load_options: dict[str, Any]
    skip: int = 0
    limit: int | None = None


@dataclass(frozen=True)
class Loaded:
    """The target (without its function), the properties planned, the versions it runs with."""

    target: Target
    plan: tuple[str, ...]
    versions: dict[str, str]


@dataclass(frozen=True)
class Progress:
    """A property started (its result so far) or, ``done``, finished."""

    result: PropertyResult
    done: bool = False


def run_battery(channel: Channel, job: BatteryJob) -> None:
    """The battery's job, in a runner worker: load the target, run the properties, tell
    the supervisor every step (or the error, a bad target or a usage error, it raises).
    A ``BaseException`` from the target is the property's FAIL here; a hang or an ended
    process is judged by the supervisor."""
    from dpslice.check import calls
    from dpslice.check.inflight import (
        exited_at_import,
        portable_result,
        portable_target,
        raised_base,
    )
    from dpslice.check.outcome import safe_repr
    from dpslice.check.registry import registered, select
    from dpslice.check.results import versions
    from dpslice.check.runner import run_property
    from dpslice.check.target import load_target

    try:  # the names first: a typo is a usage error before the target is imported
        chosen = (
            select(job.properties)
            if job.properties is not None
            else registered(compared=job.load_options.get("against") is not None)
        )
        select(job.exclude)
    except UnknownPropertyError as exc:
        return channel.note(UnknownPropertyError(str(exc)))
    chosen = tuple(prop for prop in chosen if prop.name not in job.exclude)
    if not chosen:
        return channel.note(
            UnknownPropertyError(
                "every property is excluded: nothing would run; exclude fewer, or drop --property"
            )
        )
    channel.loading(job.spec)
    try:
        target = load_target(job.spec, device=job.device, **job.load_options)
    except (BadTargetError, DeviceError, InvalidContractError) as exc:
        return channel.note(BadTargetError(str(exc)))
    except BaseException as exc:  # sys.exit() or the like at import: a bad target too
        return channel.note(BadTargetError(exited_at_import(job.spec, exc)))
    channel.note(Loaded(portable_target(target), tuple(prop.name for prop in chosen), versions()))
    calls.call_observer = recorder = CallRecorder(channel)
    channel.keep_modules()
    for prop in chosen[job.skip :][: job.limit]:
        started = started_result(prop.name, prop.statement, tier=prop.tier)
        channel.note(Progress(started))
        recorder.last, recorder.calls = None, 0
        began = time.perf_counter()
        try:
            result = run_property(
                prop, target, max_examples=job.max_examples, seed=job.seed, strict=job.strict
            )
        except BaseException as exc:
            seconds = time.perf_counter() - began
            if recorder.last is None:
                note = f"the check itself broke, before calling the target ({safe_repr(exc)})"
                result = replace(started, seconds=seconds, note=note)
            else:
                found = aborted_counterexample(target, recorder.last, raised_base(exc, target))
                result = aborted_result(started, found, examples=recorder.calls, seconds=seconds)
        result = portable_result(result)
        try:
            channel.note(Progress(result, done=True))
        except Exception as exc:  # a result that cannot be pickled: say so instead
            note = f"its counterexample could not be reported ({exc!r})"
            channel.note(Progress(replace(result, counterexamples=(), note=note), done=True))
    return None


class Listener(Protocol):
    """Told of the run's progress, for live output."""

    live: bool

    def loaded(self, target: Target) -> None: ...

    def started(self, name: str) -> None: ...

    def tick(self, name: str | None, calls: int, seconds: float) -> None: ...

    def finished(self, result: PropertyResult) -> None: ...


class Workers(_Workers):
    """The battery's workers: their fork server imports the battery (and torch)."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(env, warm=BATTERY_IMPORTS)


@dataclass
class _Assignment:
    """One worker on one battery job, as this process follows it."""

    worker: Worker
    #: The properties the job runs, once known (the plan's, for a job sent before it).
    runs: tuple[str, ...] | None
    #: For a job sent before the plan was known, where in the plan its property is.
    skip: int = 0
    #: The property in progress, when it started, and the worker's calls before it.
    current: tuple[PropertyResult, float, int] | None = None
    #: Properties this job finished.
    finished: int = 0

    @property
    def calls(self) -> int:
        """Calls of the target seen in the current property."""
        return self.worker.calls - (self.current[2] if self.current else 0)


def _never_loaded(**_: object) -> NoReturn:
    raise RuntimeError("the target was never loaded: the check broke before it could be")


class BatterySupervisor:
    """The battery against ``spec``, run in workers; :meth:`run` returns the report.

    ``jobs`` workers run properties side by side (``dpslice check -j``), each
    property in one worker with its own seed: the verdicts, counterexamples
    and report order are those of ``jobs=1``.
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
        workers: _Workers | None = None,
        jobs: int = 1,
    ) -> None:
        check_call_timeout(timeout)
        if jobs < 1:
            raise CheckConfigError(f"jobs={jobs}: at least one worker must run the battery")
        #: What every job runs; each takes its own properties.
        self.job = BatteryJob(
            spec,
            device,
            tuple(properties) if properties is not None else None,
            tuple(exclude),
            max_examples,
            seed,
            strict,
            dict(load_options or {}),
        )
        self.limits = Limits(
            load=import_timeout, call=timeout, work=max(timeout, OWN_WORK_ALLOWANCE)
        )
        self.listener = listener
        self.jobs = jobs
        #: The target as the worker loaded it (without its function), and its versions.
        self.target: Target | None = None
        self.versions: dict[str, str] | None = None
        self._done: dict[str, PropertyResult] = {}
        self._told = 0  # results passed to the listener, in the plan's order
        self._plan: tuple[str, ...] | None = None
        self._began = time.perf_counter()
        self._workers = workers
        self._running: dict[Worker, _Assignment] = {}
        self._first_calls_hung: list[str] = []  # properties in a row whose first call hung
        self._stopped: Stop | None = None

    @property
    def results(self) -> list[PropertyResult]:
        """The properties finished so far, in the plan's order."""
        order = {name: index for index, name in enumerate(self._plan or ())}
        return sorted(self._done.values(), key=lambda result: order.get(result.name, 0))

    def unloaded_report(self) -> CheckReport:
        """The report of a run that never loaded its target: no property ran."""
        spec = self.job.spec
        target = Target(
            spec=spec,
            function=_never_loaded,
            name=spec.rpartition(":")[2],
            accepts=frozenset(),
            source_file=None,
            device=self.job.device,
        )
        return replace(self._report(target, Stop.BROKE), results=())

    def partial_report(self) -> CheckReport | None:
        """What finished so far as a report; ``None`` before the target loaded."""
        return None if self.target is None else self._report(self.target, self._stopped)

    def _report(self, target: Target, stopped: Stop | None) -> CheckReport:
        return CheckReport(
            target=target,
            seed=self.job.seed,
            max_examples=self.job.max_examples,
            results=tuple(self.results),
            seconds=time.perf_counter() - self._began,
            strict=self.job.strict,
            properties=self.job.properties,
            versions=self.versions,
            stopped=stopped,
            not_run=self.remaining() if stopped is not None else (),
        )

    def run(self) -> CheckReport:
        """Run every property, restarting a worker after each call that never came back.

        Raises:
            BadTargetError: the target cannot be loaded (its import raised, hung
                past the timeout, ended the process), or breaks the convention.
            UnknownPropertyError: a property named does not exist.
            CheckBrokeError: the check itself broke.
        """
        self._began = time.perf_counter()
        with contextlib.ExitStack() as stack:
            stack.enter_context(signal_order())
            workers = self._workers
            if workers is None:
                workers = stack.enter_context(Workers(stack.enter_context(environment())))
            try:
                self._run(workers)
            finally:
                self._stop_running()
        report = self.partial_report()
        assert report is not None
        return report

    def remaining(self) -> tuple[str, ...]:
        """The properties planned and not finished, in order; all asked for before the plan."""
        if self._plan is None:
            return self.job.properties or ()
        return tuple(name for name in self._plan if name not in self._done)

    def _run(self, workers: _Workers) -> None:
        fruitless = 0  # jobs in a row stopped before they finished a property
        while True:
            self._start_jobs(workers)
            if not self._running:
                return
            tick = self._tick if self.listener is not None and self.listener.live else None
            for worker in follow(list(self._running), self._note, tick=tick):
                job = self._running.pop(worker)
                if worker.stopped is None:
                    workers.give_back(worker)
                    fruitless = 0
                    continue
                worker.stop()
                judged = self._judge(job, worker.stopped)
                if len(self._first_calls_hung) >= HANGS_BEFORE_GIVING_UP:
                    self._stopped = Stop.HUNG
                    return
                fruitless = fruitless + 1 if job.finished == 0 and not judged else 0
                if fruitless > _MAX_JOBS_WITHOUT_RESULT:
                    self._stop_running()
                    for name in self.remaining():
                        note = (
                            "not run: the check's worker kept failing outside any call "
                            f"({worker.stopped.how.value})"
                        )
                        self._finish(started_result(name, "", note=note))
                    return

    def _start_jobs(self, workers: _Workers) -> None:
        """Give jobs to idle slots: before the plan is known, one job that loads the
        target and runs every property, or with ``jobs > 1`` one job a worker that runs
        the plan's first, second... property (each worker names the plan before it
        imports the target: the first to do so tells it); then one property a job."""
        if self._plan is None:
            if self._running:
                return
            if self.jobs == 1:
                self._give(workers, self.job.properties)
                return
            # No more workers import the target than there are properties to run.
            asked = self.job.properties
            first = self.jobs if asked is None else min(self.jobs, len(asked))
            for skip in range(first):
                self._give(workers, asked, skip=skip, limit=1)
            return
        taken = {name for job in self._running.values() for name in job.runs or ()}
        free = [name for name in self._plan if name not in self._done and name not in taken]
        if self.jobs == 1:
            if free and not self._running:
                self._give(workers, tuple(free))
            return
        for name in free[: self.jobs - len(self._running)]:
            self._give(workers, (name,))

    def _give(
        self,
        workers: _Workers,
        properties: tuple[str, ...] | None,
        skip: int = 0,
        limit: int | None = None,
    ) -> None:
        job = replace(self.job, properties=properties, skip=skip, limit=limit)
        worker = workers.take()
        try:
            worker.give(Job(f"{__name__}:run_battery", (job,)), self.limits)
        except BaseException:
            worker.stop()
            raise
        runs = properties if self._plan is not None else None
        self._running[worker] = _Assignment(worker, runs, skip)

    def _stop_running(self) -> None:
        for worker in self._running:
            worker.stop()
        self._running = {}

    def _tick(self) -> None:
        assert self.listener is not None
        current = [job.current for job in self._running.values() if job.current is not None]
        if current:
            started, began, _ = min(current, key=lambda now: now[1])
            calls = sum(job.calls for job in self._running.values())
            self.listener.tick(started.name, calls, time.perf_counter() - began)
        else:
            self.listener.tick(None, 0, time.perf_counter() - self._began)

    def _note(self, worker: Worker, note: object) -> None:
        job = self._running[worker]
        if isinstance(note, Loaded):
            if self._plan is None:
                self.target, self.versions, self._plan = note.target, note.versions, note.plan
                # Timed from here, as run_check is: the start-up is not the check's.
                self._began = time.perf_counter()
                if self.listener is not None:
                    self.listener.loaded(note.target)
                # Every job sent before the plan was known runs the property at its place.
                for started in self._running.values():
                    if started.runs is None:
                        skip = started.skip
                        started.runs = note.plan[skip : skip + 1] if self.jobs > 1 else note.plan
        elif isinstance(note, Exception):  # a bad target, or a usage error
            raise note
        elif isinstance(note, Progress) and not note.done:
            job.current = (note.result, time.perf_counter(), worker.calls)
            if self.listener is not None:
                self.listener.started(note.result.name)
        elif isinstance(note, Progress):
            seen = self._as_seen(job, note.result)
            job.current = None
            job.finished += 1
            self._first_calls_hung.clear()
            self._finish(seen)

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
        """The worker's result, held to what this process saw of the property's calls:
        code in the worker's process could rewrite the check there."""
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

    def _judge(self, job: _Assignment, stopped: Stopped) -> bool:
        """Turn a stopped worker into its current property's result, or an error; whether
        a property was in progress (and so has its result)."""
        what = stopped_text(stopped)
        if stopped.phase is Phase.STARTING or (
            stopped.how is How.BROKE and stopped.phase is Phase.LOADING
        ):
            raise CheckBrokeError(
                f"the check's worker {what} before loading the target; "
                "run `python -c 'import dpslice.check'` to see why"
            )
        if stopped.phase is Phase.LOADING:
            raise import_failed(self.job.spec, what)
        if job.current is None:
            return False  # between properties: the next worker runs the rest
        started, began, _ = job.current
        seconds = time.perf_counter() - began
        if stopped.broke is not None:
            note = f"the check itself broke, not the target: {stopped.broke.last_line}"
        elif stopped.record is not None and self.target is not None:
            if stopped.how is How.HUNG and job.calls == 1:
                self._first_calls_hung.append(started.name)
            else:
                self._first_calls_hung.clear()
            found = aborted_counterexample(
                self.target, stopped.record, aborted(stopped, "the worker")
            )
            self._finish(aborted_result(started, found, examples=job.calls, seconds=seconds))
            return True
        elif stopped.how is How.HUNG:
            note = (
                f"the check's worker stopped answering for {self.limits.work:g} s outside "
                "any call of the target"
            )
        else:
            note = f"the check's worker ended ({stopped.ending}) outside any call of the target"
        self._finish(
            replace(started, verdict=Verdict.ERROR, examples=job.calls, seconds=seconds, note=note)
        )
        return True


def _request_stop(signum: int, frame: object) -> None:
    if stop_requested() is None:
        request_stop(signum)


@contextlib.contextmanager
def _stop_between_calls() -> Iterator[None]:
    """SIGINT and SIGTERM only ask to stop while the round trip's search runs in this
    process: the runner's loop stops it at once, never inside Hypothesis's own code."""
    previous = {}
    with contextlib.suppress(ValueError):  # not the main thread: not this thread's signals
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, _request_stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@dataclass
class RoundTripSupervisor:
    """The round trip of ``spec`` on ``dp_size`` runner ranks: ``timeout`` bounds each call,
    ``import_timeout`` the target's import, ``run_timeout`` the run.  :meth:`run` returns
    its report."""

    spec: str
    _: KW_ONLY
    dp_size: int
    backend: str = "gloo"
    max_examples: int = DEFAULT_MAX_EXAMPLES
    seed: int = 0
    timeout: float = DEFAULT_CALL_TIMEOUT
    run_timeout: float = DEFAULT_RUN_TIMEOUT
    import_timeout: float = DEFAULT_IMPORT_TIMEOUT
    listener: Listener | None = None
    target: Target | None = field(default=None, init=False)
    versions: dict[str, str] | None = field(default=None, init=False)
    _began: float = field(default_factory=time.monotonic, init=False)

    def partial_report(self, why: str = "interrupted before a verdict") -> CheckReport | None:
        """The report of a run that reached no verdict; ``None`` before the target loaded."""
        if self.target is None:
            return None
        from dpslice.check.results import round_trip_result
        from dpslice.distributed.round_trip import round_trip_report  # imported by run()

        seconds = time.monotonic() - self._began
        return round_trip_report(
            self.target,
            round_trip_result(Verdict.ERROR, seconds=seconds, note=why),
            seed=self.seed,
            max_examples=self.max_examples,
            seconds=seconds,
            dp_size=self.dp_size,
            backend=self.backend,
            call_timeout=self.timeout,
            run_timeout=self.run_timeout,
            versions=self.versions,
        )

    def run(self) -> CheckReport:
        """Run the round trip on the runner's ranks.

        Raises:
            BadTargetError: the target cannot be loaded (its import raised, hung past
                ``import_timeout`` or ended a rank), or the round trip cannot run
                here (a bad backend, too few GPUs).
        """
        self._began = time.monotonic()
        listener = self.listener
        tick = None
        if listener is not None and listener.live:

            def tick() -> None:
                listener.tick(None, 0, time.monotonic() - self._began)

        with signal_order(), _stop_between_calls(), environment() as env:
            # Imported here: a signal that comes meanwhile only asks to stop.
            from dpslice.distributed.driver import RoundTripSession
            from dpslice.distributed.round_trip import run_on

            try:
                session = RoundTripSession(
                    dp_size=self.dp_size, backend=self.backend, call_timeout=self.timeout,
                    env=env, tick=tick,
                )  # fmt: skip
            except CheckConfigError as exc:
                raise BadTargetError(" ".join(str(exc).split())) from None
            with session:
                self.target, self.versions = session.load(self.spec, self.import_timeout)
                if listener is not None:
                    listener.loaded(self.target)
                return run_on(
                    session, self.target, seed=self.seed, max_examples=self.max_examples,
                    began=self._began, run_timeout=self.run_timeout, versions=self.versions,
                )  # fmt: skip
