"""The round trip under ``torchrun``: every rank started for us, rank 0 drives.

::

    torchrun --standalone --nproc-per-node 2 -m dpslice.distributed \\
        --target dpslice.reference:dp_local_slice --backend gloo --max-examples 200

Each rank reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (its GPU under NCCL)
and ``MASTER_ADDR``/``MASTER_PORT`` from the environment torchrun sets, and
joins the group through ``env://``.  Rank 0 runs Hypothesis; each layout is
broadcast to every rank and the counterexamples gathered back over a gloo
group (objects never travel over NCCL).  Rank 0 prints the report
(:func:`dpslice.check.report.render_text`, as ``dpslice check --distributed``
does); the exit code is 0 on a pass, 1 on a counterexample, 2 on a harness error.

There is no driver watching the ranks here: a rank stuck in a collective
raises once the collective timeout (``--layout-timeout``) passes, and torchrun
then stops the other ranks.  ``--timeout`` bounds the search on rank 0.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from collections.abc import Sequence

import torch.distributed as dist

from dpslice.check.registry import Counterexample
from dpslice.check.report import render_text
from dpslice.check.results import CheckReport, RoundTrip, versions
from dpslice.distributed.errors import RoundTripError, RoundTripTimeout
from dpslice.distributed.rank_check import check_layout
from dpslice.distributed.round_trip import load_round_trip_target
from dpslice.distributed.search import search_round_trip
from dpslice.distributed.worker import BACKENDS, device_name, join_group
from dpslice.layout import DPLayout

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torchrun ... -m dpslice.distributed",
        description="Round-trip a DP-local slice through real collectives, one process per rank.",
    )
    parser.add_argument("--target", default="dpslice.reference:dp_local_slice")
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="gloo")
    parser.add_argument("--max-examples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for the search")
    parser.add_argument(
        "--layout-timeout", type=float, default=60.0, help="collective timeout, seconds"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """One torchrun rank's round trip; returns the process exit code.

    Every rank meets the others at a barrier before it returns, so no rank
    leaves while another is still in a collective.  The process group stays
    initialised: ``python -m dpslice.distributed`` ends the process with
    :func:`~dpslice.distributed.worker.exit_rank` right after, which says why
    the group is not destroyed.
    """
    args = _parser().parse_args(argv)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    target = load_round_trip_target(args.target)
    device, gatherer = join_group(
        args.backend,
        rank,
        world,
        local_rank=int(os.environ.get("LOCAL_RANK", rank)),
        timeout_s=args.layout_timeout,
    )
    objects = dist.new_group(backend="gloo") if args.backend != "gloo" else None
    devices: list[str | None] = [None] * world
    dist.all_gather_object(devices, device_name(device), group=objects)

    def evaluate(layout: DPLayout) -> Counterexample | None:
        return check_layout(layout, rank, target, gatherer, device)

    if rank != 0:
        while True:
            box: list[DPLayout | None] = [None]
            dist.broadcast_object_list(box, src=0, group=objects)
            if box[0] is None:
                break
            dist.gather_object(evaluate(box[0]), None, dst=0, group=objects)
        dist.barrier(group=objects)  # leave together (see main's docstring)
        return 0

    began = time.monotonic()

    def check(layout: DPLayout) -> list[Counterexample | None]:
        if time.monotonic() - began > args.timeout:
            raise RoundTripTimeout("run", args.timeout, range(world), layout)
        try:
            dist.broadcast_object_list([layout], src=0, group=objects)
            found: list[Counterexample | None] = [None] * world
            dist.gather_object(evaluate(layout), found, dst=0, group=objects)
        except Exception as error:  # a collective broke: not the target's fault, do not shrink
            raise RoundTripError(f"a collective failed on {layout!r}: {error!r}") from error
        return found

    seed = args.seed if args.seed is not None else secrets.randbelow(2**32)
    try:
        result = search_round_trip(
            check, target, dp_size=world, max_examples=args.max_examples, seed=seed
        )
    except RoundTripError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2  # the other ranks are stuck or gone; torchrun stops them
    dist.broadcast_object_list([None], src=0, group=objects)
    report = CheckReport(
        target=target,
        seed=seed,
        max_examples=args.max_examples,
        results=(result,),
        seconds=time.monotonic() - began,
        round_trip=RoundTrip(
            dp_size=world,
            backend=args.backend,
            call_timeout=args.layout_timeout,
            run_timeout=args.timeout,
            devices=tuple(str(name) for name in devices),
        ),
        versions=versions(),
    )
    print(render_text(report), end="", flush=True)
    dist.barrier(group=objects)
    return 0 if report.passed else 1
