"""The ``dpslice`` command line: a thin face over :mod:`dpslice.check`.

``dpslice check`` runs the property battery (``--device cuda`` builds the
count tensor on the GPU); ``dpslice check --distributed N`` runs the round
trip through real collectives instead (:func:`dpslice.distributed.run_round_trip`):
one property, judged, shrunk and reported as the battery's are.

The target runs in a supervised worker process (:mod:`dpslice.supervision.supervisor`):
whatever it does, this process prints the report, writes the JSON and JUnit
XML and decides the exit status.  Progress goes to stderr as the run goes,
when stderr is a terminal.

Exit status: 0 when every property holds (N/A counts as holding), 1 when one
fails (a call that hangs past ``--timeout``, exits or crashes the process
fails too) or ends in ERROR, 2 for a bad target (one that cannot be imported,
including an import that exits, crashes or hangs) or bad usage, and 2 when
every property holds but the ``--json`` or ``--junit-xml`` file could not be
written (a failure stays 1).  When the check itself breaks (its worker cannot
start, or its own code fails), the report of what finished is printed and
written, then one line ``dpslice: error: the check itself broke: <cause>`` on
stderr, and the status is 2.  Ctrl-C: 130, SIGTERM: 143, after the partial
report, which says it is incomplete.  Nothing ends in a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from dpslice._numpy_notice import silence_numpy_notice
from dpslice._version import __version__
from dpslice.check.options import (
    call_seconds,
    contract_name,
    job_count,
    positive_int,
    positive_seconds,
    seed_number,
)
from dpslice.isolation import DEFAULT_CALL_TIMEOUT, DEFAULT_IMPORT_TIMEOUT

if TYPE_CHECKING:
    from dpslice.check.results import CheckReport, PropertyResult, Stop
    from dpslice.check.target import Target
    from dpslice.supervision.supervisor import Listener

__all__ = ["DEFAULT_TARGET", "main"]

#: What ``dpslice check`` checks when no target is named.
DEFAULT_TARGET = "dpslice.reference:dp_local_slice"

EXIT_HOLDS, EXIT_FAILS, EXIT_USAGE = 0, 1, 2


_CHECK_DESCRIPTION = """\
Run the property battery against TARGET: package.module:function or
path/to/file.py:function (default: the bundled reference).
"""

_CHECK_EPILOG = """\
TARGET is called with keyword arguments only, those its signature names among
global_num_tokens_cpu, global_num_tokens_gpu, dp_rank, dp_size, can_run_graph,
graph_extent, cuda_graph_batch, num_tokens_per_bs, chunk_size and chunk_index,
and returns (start, length) as ints or 0-dim tensors
the properties and what each draws:  dpslice check --list
the call sites a target is judged as:  dpslice check --list-contracts

exit status: 0 every property holds (WARN and N/A included); 1 one FAILs or
ends in ERROR; 2 a bad target, bad usage, the check itself broke, or a passing
run whose --json or --junit-xml file could not be written; 130 Ctrl-C, 143
SIGTERM (the report printed then says it is incomplete)
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dpslice",
        description="Correctness suite for the DP-local slice of a gathered DP-attention buffer.",
        epilog="dpslice check --help: the check's options, and how it calls your function.",
    )
    parser.add_argument("--version", action="version", version=f"dpslice {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "check",
        help="check a slice implementation against the property battery",
        description=_CHECK_DESCRIPTION,
        epilog=_CHECK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("target", nargs="?", default=DEFAULT_TARGET, metavar="TARGET")
    check.add_argument(
        "--max-examples",
        type=positive_int,
        default=500,
        metavar="N",
        help="examples per property, before shrinking (default: 500)",
    )
    check.add_argument(
        "--seed", type=seed_number, metavar="S", help="Hypothesis seed (default: random, printed)"
    )
    check.add_argument(
        "--json", type=Path, metavar="PATH", help="also write the report as JSON to PATH"
    )
    check.add_argument(
        "--junit-xml",
        type=Path,
        metavar="PATH",
        help="also write the report as JUnit XML to PATH, one test case per property",
    )
    check.add_argument(
        "--property",
        action="append",
        dest="properties",
        metavar="NAME",
        help="run only this property (repeatable)",
    )
    check.add_argument(
        "--exclude-property",
        action="append",
        dest="excluded",
        metavar="NAME",
        help="run every property but this one (repeatable)",
    )
    check.add_argument(
        "-x",
        "--exitfirst",
        action="store_true",
        help="stop after the first property that FAILs or ends in ERROR; the rest are "
        "reported as not run",
    )
    check.add_argument("--list", action="store_true", help="list the properties and exit")
    check.add_argument(
        "--timeout",
        type=call_seconds,
        metavar="SECONDS",
        help="seconds one call of the target may take before it fails as "
        f"hung (default: {DEFAULT_CALL_TIMEOUT:g})",
    )
    check.add_argument(
        "--import-timeout",
        type=positive_seconds,
        metavar="SECONDS",
        help="seconds importing the target may take before it is a bad target "
        f"(default: {DEFAULT_IMPORT_TIMEOUT:g}; engines take tens of seconds)",
    )
    check.add_argument(
        "-j",
        "--jobs",
        type=job_count,
        metavar="N",
        help="run properties side by side in N workers: auto (the default) is one per "
        "usable CPU, at most 8; the report is the same for every N",
    )
    check.add_argument(
        "--quiet", action="store_true", help="no progress on stderr, only the report"
    )
    check.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show every counterexample of a WARN in full, not one line per kind",
    )
    check.add_argument(
        "--contract",
        type=contract_name,
        metavar="NAME",
        help="the call site the target is judged as: a preset (--list-contracts) or "
        "module:NAME of your own (default: the one the target names, else sglang-capturer)",
    )
    check.add_argument(
        "--list-contracts", action="store_true", help="list the contract presets and exit"
    )
    check.add_argument(
        "--against",
        metavar="OLD",
        help="compare TARGET with OLD (named as TARGET is): both are called with the same "
        "inputs in every state the contract (TARGET's, or --contract) reaches; a different "
        "answer FAILs, a different refusal of an invalid input WARNs",
    )
    check.add_argument(
        "--strict",
        action="store_true",
        help="a hardening property's failure (an input no engine produces, accepted) "
        "FAILs instead of WARNing",
    )
    check.add_argument(
        "--device",
        metavar="DEVICE",
        help="where global_num_tokens_gpu is built: cpu (default) or cuda, which also runs "
        "the sync property in CUDA mode and the CUDA view property",
    )
    round_trip = check.add_argument_group(
        "round trip", "check against buffers gathered by real torch.distributed collectives"
    )
    round_trip.add_argument(
        "--distributed",
        type=positive_int,
        metavar="N",
        help="run the round trip on N ranks instead of the battery",
    )
    round_trip.add_argument(
        "--backend", metavar="NAME", help="gloo (CPU, the default) or nccl (one GPU per rank)"
    )
    round_trip.add_argument(
        "--run-timeout",
        type=positive_seconds,
        metavar="SECONDS",
        help="seconds for the whole round trip, start-up and shrinking included; when they "
        "run out the verdict stands on the layouts checked (default: 600)",
    )
    return parser


def _error(message: str) -> int:
    print(f"dpslice: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _write_stdout(text: str) -> None:
    """Write ``text`` to stdout, flushed; a closed stdout (``| head``) ends it quietly."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Nobody reads it: point stdout at /dev/null, so that nothing written later,
        # nor the flush at exit, raises again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _list_contracts() -> int:
    from dpslice.contracts import DEFAULT_CONTRACT, PRESETS

    _write_stdout(
        "".join(
            f"{contract.name}{' (default)' if contract is DEFAULT_CONTRACT else ''}\n"
            f"    {contract.summary}\n    {contract.describe()}\n"
            for contract in PRESETS.values()
        )
    )
    return EXIT_HOLDS


def _list_properties() -> int:
    from dpslice.check.registry import registered

    _write_stdout(
        "".join(
            f"{prop.name}\n    {prop.statement}\n    draws: {prop.draws}\n"
            for prop in registered(compared=True)
        )
    )
    return EXIT_HOLDS


def _incompatible(args: argparse.Namespace) -> str | None:
    """Why these options cannot run together, or ``None``."""
    if args.distributed is None:
        alone = [
            flag
            for flag in ("--backend", "--run-timeout")
            if getattr(args, flag[2:].replace("-", "_")) is not None
        ]
        if alone:
            return f"{' and '.join(alone)}: only for the round trip; add --distributed N"
        return None
    clashes = [
        flag
        for flag, given in (
            ("--property", args.properties),
            ("--exclude-property", args.excluded),
            ("--device", args.device is not None),
            ("--list", args.list),
            ("--contract", args.contract is not None),
            ("--strict", args.strict),
            ("--against", args.against is not None),
            ("--jobs", args.jobs is not None),
        )
        if given
    ]
    if clashes:
        return (
            f"{', '.join(clashes)} cannot be combined with --distributed: the round trip is "
            "one property (every rank recovers exactly its own rows), on the devices of its "
            "--backend (gloo: CPU, nccl: one GPU per rank)"
        )
    return None


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: the partial report, then exit 143."""


class _Stopped(Exception):
    """The run ended early: ``report`` is what finished, if anything, ``status`` the exit
    status; ``broke`` what broke, or ``None`` for an interrupt."""

    def __init__(self, report: CheckReport | None, status: int, broke: str | None) -> None:
        super().__init__(broke or "interrupted")
        self.report = report
        self.status = status
        self.broke = broke


def _broke(exc: Exception) -> str:
    """What broke, in one line: ``the check itself broke: <cause>``."""
    from dpslice.errors import CheckBrokeError

    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    cause = lines[0] if lines else ""
    if len(lines) > 1:  # a heading, then a traceback, whose last line is the error
        cause = f"{cause.rstrip(':')} ({lines[-1]})"
    if not isinstance(exc, CheckBrokeError):
        cause = f"{type(exc).__name__}: {cause}" if cause else type(exc).__name__
    return f"the check itself broke: {cause}"


def _ended(exc: BaseException) -> tuple[Stop, int, str | None]:
    """How ``exc`` ends a run early: why it stopped, the exit status, and what broke
    (``None`` for an interrupt)."""
    from dpslice.check.results import Stop

    if isinstance(exc, KeyboardInterrupt):
        return Stop.INTERRUPTED, _interrupted(exc), None
    assert isinstance(exc, Exception)
    return Stop.BROKE, EXIT_USAGE, _broke(exc)


def _interrupted(exc: KeyboardInterrupt) -> int:
    from dpslice.isolation import stop_requested

    terminated = isinstance(exc, _Terminated) or stop_requested() == signal.SIGTERM
    return 128 + signal.SIGTERM if terminated else 130


class _FirstFailure(Exception):
    """-x: a property FAILed or ended in ERROR; the run stops there."""


class _ExitFirst:
    """A listener that stops the run at the first FAIL or ERROR (``-x``), passing every
    event on to ``progress``; the supervisor kills its worker as the exception leaves it."""

    def __init__(self, progress: Listener | None) -> None:
        self.progress = progress
        self.live = progress is not None and progress.live

    def loaded(self, target: Target) -> None:
        if self.progress is not None:
            self.progress.loaded(target)

    def started(self, name: str) -> None:
        if self.progress is not None:
            self.progress.started(name)

    def tick(self, name: str | None, calls: int, seconds: float) -> None:
        if self.progress is not None:
            self.progress.tick(name, calls, seconds)

    def finished(self, result: PropertyResult) -> None:
        from dpslice.check.results import Verdict

        if self.progress is not None:
            self.progress.finished(result)
        if result.verdict in (Verdict.FAIL, Verdict.ERROR):
            raise _FirstFailure(result.name)


def _battery(args: argparse.Namespace, progress: Listener | None) -> CheckReport | str:
    """Run the property battery; a usage error's message instead if it cannot start.

    Raises:
        _Stopped: interrupted, or the check itself broke; with what finished.
    """
    from dpslice.check.results import Stop
    from dpslice.check.target import check_device
    from dpslice.errors import BadTargetError, DeviceError, UnknownPropertyError
    from dpslice.supervision.supervisor import BatterySupervisor

    try:
        device = check_device(args.device or "cpu")
    except DeviceError as exc:
        return str(exc)
    options: dict[str, str] = {"contract": args.contract} if args.contract is not None else {}
    if args.against is not None:
        options["against"] = args.against
    # The property names are the worker's to check: this process would have to
    # import the battery, and torch with it, to know them.
    supervisor = BatterySupervisor(
        args.target,
        device=device,
        properties=args.properties,
        exclude=args.excluded or (),
        max_examples=args.max_examples,
        seed=args.seed,
        timeout=args.timeout or DEFAULT_CALL_TIMEOUT,
        import_timeout=args.import_timeout or DEFAULT_IMPORT_TIMEOUT,
        listener=_ExitFirst(progress) if args.exitfirst else progress,
        load_options=options,
        strict=args.strict,
        jobs=args.jobs,
    )
    try:
        return supervisor.run()
    except (BadTargetError, UnknownPropertyError) as exc:
        return str(exc)
    except _FirstFailure:
        stopped = supervisor.partial_report()
        assert stopped is not None  # a property finished, so the target had loaded
        not_run = supervisor.remaining()
        # The first failure may have been the last property: then the run is complete.
        return replace(stopped, stopped=Stop.EXITFIRST, not_run=not_run) if not_run else stopped
    except (KeyboardInterrupt, Exception) as exc:
        # Interrupted, or the check broke (CheckBrokeError, or a bug of its own):
        # what finished is still reported, never a traceback.
        why, status, broke = _ended(exc)
        finished = supervisor.partial_report()
        if finished is not None:
            finished = replace(finished, stopped=why, not_run=supervisor.remaining())
        elif why is Stop.BROKE:  # before the target loaded: a report that nothing ran
            finished = supervisor.unloaded_report()
        raise _Stopped(finished, status, broke) from None


def _round_trip(args: argparse.Namespace, progress: Listener | None) -> CheckReport | str:
    """Run the round trip; a usage error's message instead if it cannot start.

    Raises:
        _Stopped: interrupted, or the check itself broke; with the round trip's
            report if its target had loaded.
    """
    from dpslice.errors import BadTargetError
    from dpslice.isolation import DEFAULT_RUN_TIMEOUT
    from dpslice.supervision.supervisor import RoundTripSupervisor

    if (args.backend or "gloo") != "gloo":  # an unknown backend, or NCCL without the GPUs
        from dpslice.distributed.driver import RoundTripSession
        from dpslice.errors import CheckConfigError

        try:  # before any process starts; gloo needs no check (and no torch here)
            RoundTripSession(dp_size=args.distributed, backend=args.backend)
        except CheckConfigError as exc:
            return " ".join(str(exc).split())
    supervisor = RoundTripSupervisor(
        args.target,
        dp_size=args.distributed,
        backend=args.backend or "gloo",
        max_examples=args.max_examples,
        seed=args.seed,
        timeout=args.timeout or DEFAULT_CALL_TIMEOUT,
        run_timeout=args.run_timeout or DEFAULT_RUN_TIMEOUT,
        import_timeout=args.import_timeout or DEFAULT_IMPORT_TIMEOUT,
        listener=progress,
    )
    try:
        return supervisor.run()
    except BadTargetError as exc:
        return " ".join(str(exc).split())
    except (KeyboardInterrupt, Exception) as exc:
        why, status, broke = _ended(exc)
        # No verdict: the one property's ERROR says why.
        stopped = supervisor.partial_report() if broke is None else supervisor.partial_report(broke)
        if stopped is not None:
            stopped = replace(stopped, stopped=why)
        raise _Stopped(stopped, status, broke) from None


def _header(args: argparse.Namespace) -> list[str]:
    """What the run is, printed before anything starts."""
    if args.distributed is not None:
        return [
            f"dpslice check {args.target} --distributed {args.distributed} "
            f"--backend {args.backend or 'gloo'}",
            f"seed {args.seed}  max examples {args.max_examples}",
        ]
    against = f" --against {args.against}" if args.against is not None else ""
    return [
        f"dpslice check {args.target}{against}",
        f"seed {args.seed}  max examples {args.max_examples}  device {args.device or 'cpu'}"
        f"  jobs {args.jobs}",
    ]


def _unwritable(args: argparse.Namespace) -> str | None:
    """Why the ``--json`` or ``--junit-xml`` file cannot be written, asked before the run:
    a run that cannot keep its report would be lost, or would replace the target's source."""
    from dpslice.check.report import output_problem
    from dpslice.check.target import spec_source

    asked = [
        (flag, path)
        for flag, path in (("--json", args.json), ("--junit-xml", args.junit_xml))
        if path is not None
    ]
    if len(asked) == 2 and os.path.realpath(args.json) == os.path.realpath(args.junit_xml):
        return "--json and --junit-xml name the same file; name two files"
    source = spec_source(args.target) if asked else None
    for flag, path in asked:
        problem = output_problem(path, keep=source)
        if problem is not None:
            return f"{flag} {path}: {problem}"
    return None


def _write_files(report: CheckReport, args: argparse.Namespace) -> bool:
    """Write the ``--json`` and ``--junit-xml`` files asked for; on a failure say why on
    stderr, write the others still, and return False."""
    from dpslice.check.report import write_json, write_junit_xml

    written = True
    for flag, path, write in (
        ("--json", args.json, write_json),
        ("--junit-xml", args.junit_xml, write_junit_xml),
    ):
        if path is None:
            continue
        try:
            write(report, path)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            print(f"dpslice: error: cannot write {flag} {path}: {reason}", file=sys.stderr)
            written = False
    return written


def _report(report: CheckReport, args: argparse.Namespace) -> bool:
    """Print the report and write its files; False if a file could not be written."""
    from dpslice.check.report import render_text

    _write_stdout(render_text(report, verbose=args.verbose))
    return _write_files(report, args)


def _check(args: argparse.Namespace) -> int:
    clash = _incompatible(args)
    if clash is not None:
        return _error(clash)
    if args.list_contracts:
        return _list_contracts()
    if args.list:
        return _list_properties()
    from dpslice.check.target import check_spec
    from dpslice.errors import BadTargetError

    try:  # a typo is an error at once, before a worker starts
        check_spec(args.target)
    except BadTargetError as exc:
        return _error(str(exc))
    if args.against is not None:
        try:
            check_spec(args.against)
        except BadTargetError as exc:
            return _error(f"bad --against target {args.against}: {exc}")
    unwritable = _unwritable(args)
    if unwritable is not None:
        return _error(unwritable)
    if args.seed is None:
        args.seed = secrets.randbelow(2**32)
    if args.jobs is None and args.distributed is None:
        from dpslice.isolation import auto_jobs

        args.jobs = auto_jobs()
    from dpslice.check.progress import Progress

    progress = None if args.quiet else Progress(sys.stderr)
    if progress is not None:
        progress.header(_header(args))
    try:
        ran = _battery(args, progress) if args.distributed is None else _round_trip(args, progress)
    except _Stopped as stopped:
        if progress is not None:
            progress.close()
        if stopped.report is not None:
            _report(stopped.report, args)
        if stopped.broke is None:
            print("dpslice: interrupted", file=sys.stderr)
        else:
            _error(stopped.broke)
        return stopped.status
    if progress is not None:
        progress.close()
    if isinstance(ran, str):
        return _error(ran)
    status = EXIT_HOLDS if ran.passed else EXIT_FAILS
    if not _report(ran, args):
        # The verdict is not hidden: a failure stays 1; a pass without its files is 2.
        return EXIT_USAGE if status == EXIT_HOLDS else status
    return status


def _on_signal(signum: int, frame: object) -> None:
    from dpslice.isolation import request_stop, stop_requested

    if stop_requested() is not None:
        # Already stopping: the first signal decides the exit status, and this one must
        # not break the partial report being written, nor the cleanup after it.
        return
    request_stop(signum)  # seen by the supervisor even if the exception below is swallowed
    raise _Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    SIGINT and SIGTERM stop the run (130, 143); after the first, further signals are
    ignored, and with ``argv`` ``None`` (the process's own command line, about to exit)
    they stay ignored when this returns.
    """
    silence_numpy_notice()  # before anything here imports torch
    try:
        args = _parser().parse_args(argv)
    except SystemExit:
        _write_stdout("")  # --help or --version on a closed stdout: no traceback at exit
        raise
    from dpslice.isolation import become_subreaper, kill_descendants, request_stop, stop_requested

    if argv is None:
        # This process is the command's own: what a worker that ended leaves
        # behind (a child in a session of its own) comes to it, and dies with it.
        become_subreaper()
    request_stop(None)
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.getsignal(signum) for signum in handled}
    with contextlib.suppress(ValueError):  # not the main thread: leave the signals alone
        for signum in handled:
            signal.signal(signum, _on_signal)
    try:
        return _check(args)
    except KeyboardInterrupt as exc:  # before or after the run: nothing to report
        print("dpslice: interrupted", file=sys.stderr)
        return _interrupted(exc)
    finally:
        # The process's own command line (no argv), stopped by a signal, exits next with
        # that signal's status: a later signal must not end it otherwise.
        exiting = argv is None and stop_requested() is not None
        with contextlib.suppress(ValueError, TypeError):
            for signum, handler in previous.items():
                signal.signal(signum, signal.SIG_IGN if exiting else handler)
        if argv is None:
            kill_descendants(os.getpid())
