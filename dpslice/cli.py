"""The ``dpslice`` command line: ``dpslice check`` runs the property battery, or the round
trip, in supervised workers; whatever the target does, this process prints the report,
writes its files and decides the exit status (the ``--help`` epilog lists them), never with
a traceback."""

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
from typing import TYPE_CHECKING, Any

from dpslice._numpy_notice import silence_numpy_notice
from dpslice._version import __version__
from dpslice.check.options import (
    SHARED,
    job_count,
    load_options,
    positive_int,
    positive_seconds,
)
from dpslice.isolation import DEFAULT_CALL_TIMEOUT, DEFAULT_IMPORT_TIMEOUT, DEFAULT_MAX_EXAMPLES

if TYPE_CHECKING:
    from dpslice.check.progress import Progress
    from dpslice.check.results import CheckReport

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
    check.add_argument("--max-examples", default=DEFAULT_MAX_EXAMPLES, **SHARED["max-examples"])
    check.add_argument("--seed", **SHARED["seed"])
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
        "--property", action="append", metavar="NAME", help="run only this property (repeatable)"
    )
    check.add_argument(
        "--exclude-property",
        action="append",
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
    check.add_argument("--timeout", **SHARED["timeout"])
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
    check.add_argument("--contract", **SHARED["contract"])
    check.add_argument(
        "--list-contracts", action="store_true", help="list the contract presets and exit"
    )
    for name in ("against", "strict", "device"):
        check.add_argument(f"--{name}", **SHARED[name])
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
    except BrokenPipeError:  # later writes, and the flush at exit, go to /dev/null
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _list(args: argparse.Namespace) -> int:
    """``--list-contracts``, else ``--list``: the contract presets, or the properties."""
    from dpslice.check.registry import registered
    from dpslice.contracts import DEFAULT_CONTRACT, PRESETS

    _write_stdout(
        "".join(
            f"{contract.name}{' (default)' if contract is DEFAULT_CONTRACT else ''}\n"
            f"    {contract.summary}\n    {contract.describe()}\n"
            for contract in PRESETS.values()
        )
        if args.list_contracts
        else "".join(
            f"{prop.name}\n    {prop.statement}\n    draws: {prop.draws}\n"
            for prop in registered(compared=True)
        )
    )
    return EXIT_HOLDS


def _given(args: argparse.Namespace, *flags: str) -> list[str]:
    """Those of ``flags`` given on the command line."""
    return [
        flag for flag in flags if getattr(args, flag[2:].replace("-", "_")) not in (None, False)
    ]


def _incompatible(args: argparse.Namespace) -> str | None:
    """Why these options cannot run together, or ``None``."""
    if args.distributed is None:
        alone = _given(args, "--backend", "--run-timeout")
        if alone:
            return f"{' and '.join(alone)}: only for the round trip; add --distributed N"
        return None
    clashes = _given(args, "--property", "--exclude-property", "--device", "--list")
    clashes += _given(args, "--contract", "--strict", "--against", "--jobs")
    if clashes:
        return (
            f"{', '.join(clashes)} cannot be combined with --distributed: the round trip is "
            "one property (every rank recovers exactly its own rows), on the devices of its "
            "--backend (gloo: CPU, nccl: one GPU per rank)"
        )
    return None


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: the partial report, then exit 143."""


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


def _interrupted(exc: KeyboardInterrupt) -> int:
    from dpslice.isolation import stop_requested

    terminated = isinstance(exc, _Terminated) or stop_requested() == signal.SIGTERM
    return 128 + signal.SIGTERM if terminated else 130


def _run(args: argparse.Namespace, progress: Progress) -> CheckReport | int:
    """Run the battery, or the round trip with ``--distributed``: its report, or the exit
    status of a run that could not start, was interrupted or whose check broke, once the
    error and any partial report are out."""
    from dpslice.check.progress import FirstFailure
    from dpslice.check.results import Stop
    from dpslice.check.target import check_device
    from dpslice.errors import BadTargetError, CheckConfigError, DeviceError, UnknownPropertyError
    from dpslice.isolation import DEFAULT_RUN_TIMEOUT
    from dpslice.supervision.supervisor import BatterySupervisor, RoundTripSupervisor

    try:  # before any process starts; gloo needs no check (and no torch here)
        device = check_device(args.device or "cpu")
        if (args.backend or "gloo") != "gloo":  # an unknown backend, or NCCL without the GPUs
            from dpslice.distributed.driver import RoundTripSession

            RoundTripSession(dp_size=args.distributed, backend=args.backend)
    except DeviceError as exc:
        return _error(str(exc))
    except CheckConfigError as exc:
        return _error(" ".join(str(exc).split()))
    common: dict[str, Any] = {
        "max_examples": args.max_examples,
        "seed": args.seed,
        "timeout": args.timeout or DEFAULT_CALL_TIMEOUT,
        "import_timeout": args.import_timeout or DEFAULT_IMPORT_TIMEOUT,
        "listener": progress,
    }
    supervisor: BatterySupervisor | RoundTripSupervisor
    if args.distributed is None:
        # The worker checks the property names: here that would import torch.
        supervisor = BatterySupervisor(
            args.target,
            device=device,
            properties=args.property,
            exclude=args.exclude_property or (),
            load_options=load_options(args.contract, args.against),
            strict=args.strict,
            jobs=args.jobs,
            **common,
        )
    else:
        supervisor = RoundTripSupervisor(
            args.target,
            dp_size=args.distributed,
            backend=args.backend or "gloo",
            run_timeout=args.run_timeout or DEFAULT_RUN_TIMEOUT,
            **common,
        )
    try:
        return supervisor.run()
    except (BadTargetError, UnknownPropertyError) as exc:
        progress.close()
        return _error(str(exc) if args.distributed is None else " ".join(str(exc).split()))
    except FirstFailure:
        assert isinstance(supervisor, BatterySupervisor)
        stopped = supervisor.partial_report()
        assert stopped is not None  # a property finished, so the target had loaded
        not_run = supervisor.remaining()  # none: the failure was the last property
        return replace(stopped, stopped=Stop.EXITFIRST, not_run=not_run) if not_run else stopped
    except (KeyboardInterrupt, Exception) as exc:
        if isinstance(exc, KeyboardInterrupt):
            why, status, broke = Stop.INTERRUPTED, _interrupted(exc), None
        else:
            why, status, broke = Stop.BROKE, EXIT_USAGE, _broke(exc)
        if isinstance(supervisor, BatterySupervisor):
            finished = supervisor.partial_report()
            if finished is not None:
                finished = replace(finished, stopped=why, not_run=supervisor.remaining())
            elif why is Stop.BROKE:  # before the target loaded: a report that nothing ran
                finished = supervisor.unloaded_report()
        else:  # no verdict: the one property's ERROR says why
            finished = (
                supervisor.partial_report() if broke is None else supervisor.partial_report(broke)
            )
            if finished is not None:
                finished = replace(finished, stopped=why)
    progress.close()
    if finished is not None:
        _report(finished, args)
    if broke is None:
        print("dpslice: interrupted", file=sys.stderr)
    else:
        _error(broke)
    return status


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


def _outputs(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """The ``--json`` and ``--junit-xml`` files asked for, by option."""
    named = (("--json", args.json), ("--junit-xml", args.junit_xml))
    return [(flag, path) for flag, path in named if path is not None]


def _unwritable(args: argparse.Namespace) -> str | None:
    """Why the ``--json`` or ``--junit-xml`` file cannot be written, asked before the run."""
    from dpslice.check.report import output_problem
    from dpslice.check.target import spec_source

    asked = _outputs(args)
    if len(asked) == 2 and os.path.realpath(args.json) == os.path.realpath(args.junit_xml):
        return "--json and --junit-xml name the same file; name two files"
    source = spec_source(args.target) if asked else None
    for flag, path in asked:
        problem = output_problem(path, keep=source)
        if problem is not None:
            return f"{flag} {path}: {problem}"
    return None


def _report(report: CheckReport, args: argparse.Namespace) -> bool:
    """Print the report and write its ``--json`` and ``--junit-xml`` files; False if one
    could not be written (said on stderr)."""
    from dpslice.check.report import render_text, write_json, write_junit_xml

    _write_stdout(render_text(report, verbose=args.verbose))
    writers = {"--json": write_json, "--junit-xml": write_junit_xml}
    written = True
    for flag, path in _outputs(args):
        try:
            writers[flag](report, path)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            print(f"dpslice: error: cannot write {flag} {path}: {reason}", file=sys.stderr)
            written = False
    return written


def _check(args: argparse.Namespace) -> int:
    clash = _incompatible(args)
    if clash is not None:
        return _error(clash)
    if args.list_contracts or args.list:
        return _list(args)
    from dpslice.check.target import check_spec
    from dpslice.errors import BadTargetError

    try:
        check_spec(args.target, against=args.against)
    except BadTargetError as exc:
        return _error(str(exc))
    unwritable = _unwritable(args)
    if unwritable is not None:
        return _error(unwritable)
    if args.seed is None:
        args.seed = secrets.randbelow(2**32)
    if args.jobs is None and args.distributed is None:
        from dpslice.isolation import auto_jobs

        args.jobs = auto_jobs()
    from dpslice.check.progress import Progress
    from dpslice.isolation import BATTERY_IMPORTS, RANK_IMPORTS
    from dpslice.runner import stop_all
    from dpslice.runner.forkserver import ForkServer

    # The workers' fork server imports torch and the battery beside this process's own
    # start-up (the environment differs from the run's in Hypothesis's directory only).
    ForkServer.for_env(dict(os.environ), RANK_IMPORTS if args.distributed else BATTERY_IMPORTS)
    exitfirst = args.exitfirst and args.distributed is None
    progress = Progress(
        None if args.quiet else sys.stderr, exitfirst=exitfirst, header=_header(args)
    )
    try:
        ran = _run(args, progress)
    finally:
        stop_all()
    progress.close()
    if isinstance(ran, int):
        return ran
    written = _report(ran, args)  # a failure stays 1; a pass without its files is 2
    return EXIT_FAILS if not ran.passed else EXIT_HOLDS if written else EXIT_USAGE


def _on_signal(signum: int, frame: object) -> None:
    from dpslice.isolation import request_stop, stop_requested

    if stop_requested() is not None:  # the first signal decides; the report is being written
        return
    request_stop(signum)  # seen by the supervisor even if the exception below is swallowed
    raise _Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.  SIGINT and SIGTERM stop the run (130,
    143); further signals are ignored, and with ``argv`` ``None`` (the process's own command
    line, about to exit) they stay ignored when this returns."""
    silence_numpy_notice()  # before anything here imports torch
    try:
        args = _parser().parse_args(argv)
    except SystemExit:
        _write_stdout("")  # --help or --version on a closed stdout: no traceback at exit
        raise
    from dpslice.isolation import become_subreaper, kill_descendants, request_stop, stop_requested

    if argv is None:  # the command's own process: what a worker leaves behind dies with it
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
        # The command's own process, stopped by a signal, exits next: a later signal waits.
        exiting = argv is None and stop_requested() is not None
        with contextlib.suppress(ValueError, TypeError):
            for signum, handler in previous.items():
                signal.signal(signum, signal.SIG_IGN if exiting else handler)
        if argv is None:
            kill_descendants(os.getpid())
