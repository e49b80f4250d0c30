"""The ``dpslice`` command line: a thin face over :mod:`dpslice.check`.

``dpslice check`` runs the property battery (``--device cuda`` builds the
count tensor on the GPU); ``dpslice check --distributed N`` runs the round
trip through real collectives instead (:mod:`dpslice.check.distributed`).

Exit status: 0 when every property holds (N/A counts as holding), 1 when one
fails (or the check itself broke), 2 for a bad target or bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import NamedTuple

from dpslice._version import __version__

__all__ = ["DEFAULT_TARGET", "main"]

#: What ``dpslice check`` checks when no target is named.
DEFAULT_TARGET = "dpslice.reference:dp_local_slice"

EXIT_HOLDS, EXIT_FAILS, EXIT_USAGE = 0, 1, 2


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not above 0")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dpslice",
        description="Correctness suite for the DP-local slice of a gathered DP-attention buffer.",
    )
    parser.add_argument("--version", action="version", version=f"dpslice {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "check",
        help="check a slice implementation against the property battery",
        description=(
            "Run the property battery against TARGET (package.module:function or "
            "path/to/file.py:function; default: the bundled reference). "
            "See docs/check.md for the calling convention."
        ),
    )
    check.add_argument("target", nargs="?", default=DEFAULT_TARGET, metavar="TARGET")
    check.add_argument(
        "--max-examples",
        type=_positive_int,
        default=500,
        metavar="N",
        help="examples per property, before shrinking (default: 500)",
    )
    check.add_argument(
        "--seed", type=int, metavar="S", help="Hypothesis seed (default: random, printed)"
    )
    check.add_argument(
        "--json", type=Path, metavar="PATH", help="also write the report as JSON to PATH"
    )
    check.add_argument(
        "--property",
        action="append",
        dest="properties",
        metavar="NAME",
        help="run only this property (repeatable)",
    )
    check.add_argument("--list", action="store_true", help="list the properties and exit")
    check.add_argument(
        "--contract",
        metavar="NAME",
        help="the call site the target is judged as: a preset (--list-contracts) or "
        "module:NAME of your own (default: the one the target names, else sglang-capturer)",
    )
    check.add_argument(
        "--list-contracts", action="store_true", help="list the contract presets and exit"
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
        type=_positive_int,
        metavar="N",
        help="run the round trip on N ranks instead of the battery",
    )
    round_trip.add_argument(
        "--backend", metavar="NAME", help="gloo (CPU, the default) or nccl (one GPU per rank)"
    )
    round_trip.add_argument(
        "--timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        help="seconds for the whole round trip, start-up and shrinking included (default: 600)",
    )
    return parser


def _error(message: str) -> int:
    print(f"dpslice: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _list_contracts() -> int:
    from dpslice.contracts import DEFAULT_CONTRACT, PRESETS

    for contract in PRESETS.values():
        default = " (default)" if contract is DEFAULT_CONTRACT else ""
        print(f"{contract.name}{default}\n    {contract.summary}\n    {contract.describe()}")
    return EXIT_HOLDS


def _list_properties() -> int:
    from dpslice.check.registry import registered

    for prop in registered():
        print(f"{prop.name}\n    {prop.statement}\n    draws: {prop.draws}")
    return EXIT_HOLDS


def _incompatible(args: argparse.Namespace) -> str | None:
    """Why these options cannot run together, or ``None``."""
    if args.distributed is None:
        alone = [flag for flag in ("--backend", "--timeout") if getattr(args, flag[2:]) is not None]
        if alone:
            return f"{' and '.join(alone)}: only for the round trip; add --distributed N"
        return None
    clashes = [
        flag
        for flag, given in (
            ("--property", args.properties),
            ("--device", args.device is not None),
            ("--list", args.list),
            ("--contract", args.contract is not None),
            ("--strict", args.strict),
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


class _Ran(NamedTuple):
    """A finished run: its text report, whether it holds, and how to write its JSON."""

    text: str
    passed: bool
    write_json: Callable[[Path], None]


def _battery(args: argparse.Namespace) -> _Ran | str:
    """Run the property battery; a usage error's message instead if it cannot start."""
    from dpslice.check import (
        BadTargetError,
        DeviceError,
        UnknownPropertyError,
        load_target,
        run_check,
    )
    from dpslice.check.registry import select
    from dpslice.check.report import render_text, write_json
    from dpslice.errors import InvalidContractError

    try:
        target = load_target(args.target, device=args.device or "cpu", contract=args.contract)
        properties = select(args.properties) if args.properties else None
    except (BadTargetError, DeviceError, UnknownPropertyError, InvalidContractError) as exc:
        return str(exc)
    report = run_check(
        target,
        max_examples=args.max_examples,
        seed=args.seed,
        properties=properties,
        strict=args.strict,
    )
    return _Ran(render_text(report), report.passed, partial(write_json, report))


def _round_trip(args: argparse.Namespace) -> _Ran | str:
    """Run the round trip; a usage error's message instead if it cannot start."""
    from dpslice.check.distributed import (
        DEFAULT_TIMEOUT,
        render_text,
        run_distributed_check,
        write_json,
    )
    from dpslice.distributed import RoundTripConfigError

    try:
        run = run_distributed_check(
            args.target,
            dp_size=args.distributed,
            backend=args.backend or "gloo",
            max_examples=args.max_examples,
            seed=args.seed,
            timeout=args.timeout or DEFAULT_TIMEOUT,
        )
    except RoundTripConfigError as exc:  # a bad target or backend, too few GPUs
        return " ".join(str(exc).split())
    return _Ran(render_text(run), run.passed, partial(write_json, run))


def _check(args: argparse.Namespace) -> int:
    clash = _incompatible(args)
    if clash is not None:
        return _error(clash)
    if args.list_contracts:
        return _list_contracts()
    if args.list:
        return _list_properties()
    if args.json is not None and not args.json.parent.is_dir():
        return _error(f"--json {args.json}: directory {str(args.json.parent)!r} does not exist")
    # Like ``python -m``: modules in the working directory can be named as targets.
    # The round trip's spawned ranks inherit this path.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    ran = _battery(args) if args.distributed is None else _round_trip(args)
    if isinstance(ran, str):
        return _error(ran)
    print(ran.text, end="", flush=True)
    if args.json is not None:
        try:
            ran.write_json(args.json)
        except OSError as exc:
            return _error(f"cannot write --json {args.json}: {exc.strerror or exc}")
    return EXIT_HOLDS if ran.passed else EXIT_FAILS


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return _check(args)
    except KeyboardInterrupt:
        print("dpslice: interrupted", file=sys.stderr)
        return 130
