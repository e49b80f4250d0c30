"""The check's worker process: load the target, run the job, tell the parent every step.

The parent (:mod:`dpslice.supervision.supervisor`) never imports the target; this
process does, in a process group of its own (:mod:`dpslice.isolation`),
so whatever the target does (hang, exit, crash, start threads) the parent
still owns the verdict, the report and the exit status.

Jobs (each a :class:`Job`) arrive pickled on stdin, one after another; each
ends with ``("done",)``, and the worker waits for the next until stdin
closes.  Events go to the parent over a pipe, one ``send_bytes`` each: a tag byte, then a pickle::

    b"C" (layout, call, gpu_counts)   a call of the target is about to run
    b"R"                              it returned (or raised): the call's clock stops
    b"E" ("loading", spec)            the target's import starts
         ("loaded", target, names, versions)   the target (without its function),
                                      the properties, the versions it runs with
         ("bad_usage", message)       a property named that does not exist
         ("bad_target", message)      it cannot be loaded: one line for the user
         ("start", name, statement)   a property starts
         ("result", PropertyResult)   it finished (arguments as reprs)
         ("distributed", CheckReport)  the round trip's report (arguments as reprs)
         ("broke", traceback text)    the check itself broke (then the worker exits)
         ("done",)

The ``b"C"`` and ``b"R"`` records are the hot path (one pair per call of the
target): a pickle of the check's own small dataclasses and two pipe writes,
about 10 us.  A
``BaseException`` from the target is caught here and is the property's FAIL;
a hang or an ended process is judged by the parent from the last record.
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from types import ModuleType
from typing import Any, NoReturn

from dpslice.isolation import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_MAX_EXAMPLES,
    DEFAULT_RUN_TIMEOUT,
    become_subreaper,
    die_with_parent,
)

__all__ = ["Job", "main"]

_RECORD = pickle.HIGHEST_PROTOCOL


@dataclass(frozen=True)
class Job:
    """What one worker runs.

    Attributes:
        spec: the target, as named.
        device: where ``global_num_tokens_gpu`` is built.
        properties: the properties to run, in order; ``None``: every registered one.
        exclude: properties not to run.
        limit: run only the first ``limit`` of them; ``loaded`` still names them all
            (the plan), so that other workers can take the rest.
        max_examples, seed, strict: as for :func:`~dpslice.check.runner.run_property`.
        load_options: more keywords for :func:`~dpslice.check.target.load_target`
            (``contract``; ``against``, which adds the comparisons to the battery).
        dp_size: run the round trip on this many ranks instead of the battery.
        backend, call_timeout, run_timeout: the round trip's.
    """

    spec: str
    device: str = "cpu"
    properties: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    limit: int | None = None
    max_examples: int = DEFAULT_MAX_EXAMPLES
    seed: int = 0
    strict: bool = False
    load_options: dict[str, Any] = field(default_factory=dict)
    dp_size: int | None = None
    backend: str = "gloo"
    call_timeout: float = DEFAULT_CALL_TIMEOUT
    run_timeout: float = DEFAULT_RUN_TIMEOUT


class _Channel:
    """The pipe to the parent; a write that fails means the parent is gone: leave."""

    def __init__(self, fd: int) -> None:
        self.conn = Connection(fd, readable=False)
        self._modules: dict[str, ModuleType] = {}

    def keep_modules(self) -> None:
        """Remember the check's own modules, which every record's classes live in.

        A target that removes them from ``sys.modules`` would make pickle import
        them afresh, with new classes that are not the records' own.
        """
        self._modules = {
            name: module
            for name, module in sys.modules.items()
            if name == "dpslice" or name.startswith("dpslice.")
        }

    def dumps(self, record: object) -> bytes:
        try:
            return pickle.dumps(record, _RECORD)
        except pickle.PicklingError:
            sys.modules.update(self._modules)
            return pickle.dumps(record, _RECORD)

    def event(self, *event: object) -> None:
        self.send(b"E" + self.dumps(event))

    def send(self, data: bytes) -> None:
        try:
            self.conn.send_bytes(data)
        except OSError:
            os._exit(1)


def _exited_at_import(spec: str, exc: BaseException) -> str:
    return (
        f"importing the target {spec} raised {type(exc).__name__}({exc}); a target must "
        "import without exiting, crashing or blocking"
    )


def _battery(job: Job, channel: _Channel) -> None:
    from dpslice.check import calls
    from dpslice.check.inflight import (
        aborted_result,
        portable_result,
        portable_target,
        raised_base,
        started_result,
    )
    from dpslice.check.outcome import safe_repr
    from dpslice.check.registry import Property, registered, select
    from dpslice.check.results import versions
    from dpslice.check.runner import run_property
    from dpslice.check.target import load_target
    from dpslice.errors import (
        BadTargetError,
        DeviceError,
        InvalidContractError,
        UnknownPropertyError,
    )

    try:  # the names first: a typo is a usage error before the target is imported
        chosen: Sequence[Property[Any]] = (
            select(job.properties)
            if job.properties is not None
            else registered(compared=job.load_options.get("against") is not None)
        )
        select(job.exclude)
    except UnknownPropertyError as exc:
        channel.event("bad_usage", str(exc))
        return
    chosen = [prop for prop in chosen if prop.name not in job.exclude]
    if not chosen:
        channel.event(
            "bad_usage",
            "every property is excluded: nothing would run; exclude fewer, or drop --property",
        )
        return

    channel.event("loading", job.spec)
    try:
        target = load_target(job.spec, device=job.device, **job.load_options)
    except (BadTargetError, DeviceError, InvalidContractError) as exc:
        channel.event("bad_target", str(exc))
        return
    except BaseException as exc:  # sys.exit() or the like at import: a bad target too
        channel.event("bad_target", _exited_at_import(job.spec, exc))
        return
    channel.event(
        "loaded", portable_target(target), tuple(prop.name for prop in chosen), versions()
    )

    last: list[Any] = [None, 0]  # the call in flight, and calls in this property
    send, dumps = channel.send, channel.dumps

    class Recorder:
        def calling(self, layout: object, call: object, gpu_counts: list[int]) -> None:
            record = (layout, call, gpu_counts)
            last[0] = record
            last[1] += 1
            send(b"C" + dumps(record))

        def returned(self) -> None:
            send(b"R")

    calls.call_observer = Recorder()
    channel.keep_modules()
    for prop in chosen[: job.limit]:
        started = started_result(prop.name, prop.statement, tier=prop.tier)
        channel.event("start", started)
        last[:] = [None, 0]
        began = time.perf_counter()
        try:
            result = run_property(
                prop, target, max_examples=job.max_examples, seed=job.seed, strict=job.strict
            )
        except BaseException as exc:
            if last[0] is None:
                result = replace(
                    started,
                    seconds=time.perf_counter() - began,
                    note=f"the check itself broke, before calling the target ({safe_repr(exc)})",
                )
            else:
                result = aborted_result(
                    started,
                    examples=last[1],
                    seconds=time.perf_counter() - began,
                    target=target,
                    record=last[0],
                    outcome=raised_base(exc, target),
                )
        result = portable_result(result)
        try:
            channel.event("result", result)
        except Exception as exc:  # a result that cannot be pickled: say so instead
            note = f"its counterexample could not be reported ({exc!r})"
            channel.event("result", replace(result, counterexamples=(), note=note))


def _round_trip(job: Job, channel: _Channel) -> None:
    from dpslice.check.inflight import portable_result, portable_target
    from dpslice.check.results import versions
    from dpslice.distributed import run_round_trip
    from dpslice.distributed.round_trip import load_round_trip_target
    from dpslice.errors import BadTargetError, CheckConfigError

    channel.event("loading", job.spec)
    try:
        target = load_round_trip_target(job.spec)
    except BadTargetError as exc:
        channel.event("bad_target", " ".join(str(exc).split()))
        return
    except BaseException as exc:  # sys.exit() or the like at import: a bad target too
        channel.event("bad_target", _exited_at_import(job.spec, exc))
        return
    channel.event("loaded", portable_target(target), (), versions())
    assert job.dp_size is not None
    try:
        report = run_round_trip(
            job.spec,
            dp_size=job.dp_size,
            backend=job.backend,
            max_examples=job.max_examples,
            seed=job.seed,
            call_timeout=job.call_timeout,
            timeout=job.run_timeout,
        )
    except CheckConfigError as exc:  # too few GPUs, a bad backend
        channel.event("bad_target", " ".join(str(exc).split()))
        return
    report = replace(
        report,
        target=portable_target(report.target),
        results=tuple(map(portable_result, report.results)),
    )
    channel.event("distributed", report)


def _import_path() -> None:
    # Like ``python -m`` for naming targets, but behind the installed packages:
    # a local numpy.py or secrets.py must not shadow the check's own imports.
    cwd = os.getcwd()
    sys.path[:] = [entry for entry in sys.path if entry not in ("", cwd)]
    sys.path.append(cwd)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The worker's entry point: ``argv`` is ``[events fd, parent pid]``, then ``warm`` for a spare.

    A spare worker (started ahead of need, after a call had to be stopped)
    imports the whole battery while it waits for its job.
    """
    words = list(argv or sys.argv[1:])
    fd, parent_pid = (int(word) for word in words[:2])
    die_with_parent(parent_pid)
    become_subreaper()  # what the target detaches stays below, for the parent to kill
    # The parent blocks these while it starts a worker; the target gets them as usual.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    os.set_inheritable(fd, False)  # a subprocess of the target must not hold the pipe open
    faulthandler.enable()  # a crash in native code prints the Python stack to stderr
    _import_path()
    channel = _Channel(fd)
    # Jobs come on what was stdin; the target's stdin is /dev/null, so that
    # nothing it reads (input(), a subprocess) takes the next job's bytes.
    jobs = os.fdopen(os.dup(0), "rb")
    os.set_inheritable(jobs.fileno(), False)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    try:
        # The check's own imports first: a spare worker waits here, ready.
        import dpslice.check.runner  # noqa: F401

        if "warm" in words[2:]:
            from dpslice.check.registry import builtin

            builtin()

        # One job after another, each ended by "done", until the parent closes
        # the pipe: a worker that finished a job is ready for the next at once.
        while True:
            try:
                job: Job = pickle.load(jobs)
            except EOFError:
                break
            (_battery if job.dp_size is None else _round_trip)(job, channel)
            channel.event("done")
    except BaseException as exc:
        try:
            text = traceback.format_exc()
        except Exception:  # an exception whose __str__ raises: its type says enough
            text = type(exc).__name__
        channel.event("broke", text)
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    sys.stderr.flush()
    # Not a normal exit: threads the target started must not keep the process alive.
    os._exit(0)
