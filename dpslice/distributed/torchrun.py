"""The round trip under ``torchrun``: every rank started for us, rank 0 drives.

::

    torchrun --standalone --nproc-per-node 2 -m dpslice.distributed --max-examples 200

Rank 0 runs Hypothesis, broadcasts each layout and gathers the counterexamples over a
gloo group (objects never travel over NCCL), then prints ``dpslice check
--distributed``'s report: exit 0 on a pass, 1 on a counterexample, 2 on a harness
error, or on what cannot run (one line on stderr, before any rank joins).  No runner
watches the ranks here: a stuck collective raises after ``--layout-timeout`` and
torchrun stops the rest.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from collections.abc import Sequence

import torch.distributed as dist

from dpslice.check.options import positive_int, positive_seconds, seed_number
from dpslice.check.registry import Counterexample
from dpslice.check.report import render_text
from dpslice.check.results import versions
from dpslice.check.runner import hypothesis_storage
from dpslice.distributed.driver import BACKENDS, check_rank_count
from dpslice.distributed.round_trip import load_round_trip_target, round_trip_report
from dpslice.distributed.search import search_round_trip
from dpslice.distributed.worker import check_layout, device_name, join_group
from dpslice.errors import BadTargetError, CheckConfigError, RoundTripError
from dpslice.isolation import DEFAULT_LAYOUT_TIMEOUT, DEFAULT_MAX_EXAMPLES, DEFAULT_RUN_TIMEOUT
from dpslice.layout import DPLayout


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torchrun ... -m dpslice.distributed",
        description="Round-trip a DP-local slice through real collectives, one process per rank.",
    )
    # The option types of ``dpslice check``: both command lines parse alike.
    parser.add_argument("--target", default="dpslice.reference:dp_local_slice")
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="gloo")
    parser.add_argument("--max-examples", type=positive_int, default=DEFAULT_MAX_EXAMPLES)
    parser.add_argument("--seed", type=seed_number, default=None)
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=DEFAULT_RUN_TIMEOUT,
        help=f"seconds for the search (default: {DEFAULT_RUN_TIMEOUT:g})",
    )
    parser.add_argument(
        "--layout-timeout",
        type=positive_seconds,
        default=DEFAULT_LAYOUT_TIMEOUT,
        help=f"collective timeout, seconds (default: {DEFAULT_LAYOUT_TIMEOUT:g})",
    )
    return parser


#: What torchrun sets in every rank's environment, and this entry reads.
_ENVIRONMENT = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _rank_and_world() -> tuple[int, int, int] | str:
    """This rank, the group's size and the rank's local rank (its GPU under NCCL), from
    the environment torchrun sets; or why they cannot be had, in one line."""
    missing = [name for name in _ENVIRONMENT if not os.environ.get(name)]
    if missing:
        return (
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: this runs "
            "one rank of a group that torchrun starts (torchrun --standalone "
            "--nproc-per-node N -m dpslice.distributed ...); without torchrun, run "
            "dpslice check --distributed N"
        )
    numbers = {}
    for name, minimum in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)):
        text = os.environ.get(name, os.environ["RANK"])  # no LOCAL_RANK: one node
        try:
            numbers[name] = int(text)
        except ValueError:
            numbers[name] = minimum - 1
        if numbers[name] < minimum:
            return f"{name}={text!r} is not an int >= {minimum}; start this under torchrun"
    rank, world = numbers["RANK"], numbers["WORLD_SIZE"]
    if rank >= world:
        return f"RANK={rank} is not a rank of a group of WORLD_SIZE={world}; use torchrun"
    return rank, world, numbers["LOCAL_RANK"]


def main(argv: Sequence[str] | None = None) -> int:
    """One torchrun rank's round trip; returns the process exit code.

    Every rank meets the others at a barrier before it returns, so no rank
    leaves while another is still in a collective.  The process group stays
    initialised: ``python -m dpslice.distributed`` ends the process with
    :func:`~dpslice.distributed.worker.exit_rank` right after, which says why
    the group is not destroyed.
    """
    args = _parser().parse_args(argv)
    place = _rank_and_world()
    if isinstance(place, str):  # every process says it: its environment is its own
        print(f"dpslice: error: {place}", file=sys.stderr)
        return 2
    rank, world, local_rank = place
    try:  # every rank asks the same, so every rank stops before any joins the group
        check_rank_count(world, spawning=False)
        target = load_round_trip_target(args.target)
    except (BadTargetError, CheckConfigError) as exc:
        if rank == 0:
            print(f"dpslice: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    device, gatherer = join_group(
        args.backend,
        rank,
        world,
        local_rank=local_rank,
        timeout_s=args.layout_timeout,
    )
    objects = dist.new_group(backend="gloo") if args.backend != "gloo" else None
    devices: list[str | None] = [None] * world
    dist.all_gather_object(devices, device_name(device), group=objects)

    if rank != 0:
        while True:
            box: list[DPLayout | None] = [None]
            dist.broadcast_object_list(box, src=0, group=objects)
            if box[0] is None:
                break
            mine = check_layout(box[0], rank, target, gatherer, device)
            dist.gather_object(mine, None, dst=0, group=objects)
        dist.barrier(group=objects)  # leave together (see main's docstring)
        return 0

    began = time.monotonic()

    def check(layout: DPLayout) -> list[Counterexample | None]:
        try:
            dist.broadcast_object_list([layout], src=0, group=objects)
            found: list[Counterexample | None] = [None] * world
            mine = check_layout(layout, rank, target, gatherer, device)
            dist.gather_object(mine, found, dst=0, group=objects)
        except Exception as error:  # a collective broke: not the target's fault, do not shrink
            raise RoundTripError(f"a collective failed on {layout!r}: {error!r}") from error
        return found

    seed = args.seed if args.seed is not None else secrets.randbelow(2**32)
    try:
        with hypothesis_storage():  # no .hypothesis/ in the working directory
            result = search_round_trip(
                check,
                target,
                dp_size=world,
                max_examples=args.max_examples,
                seed=seed,
                timeout=args.timeout,
            )
    except RoundTripError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2  # the other ranks are stuck or gone; torchrun stops them
    dist.broadcast_object_list([None], src=0, group=objects)
    report = round_trip_report(
        target,
        result,
        seed=seed,
        max_examples=args.max_examples,
        seconds=time.monotonic() - began,
        dp_size=world,
        backend=args.backend,
        call_timeout=args.layout_timeout,
        run_timeout=args.timeout,
        devices=[str(name) for name in devices],
        versions=versions(),
    )
    print(render_text(report), end="", flush=True)
    dist.barrier(group=objects)
    return 0 if report.passed else 1
