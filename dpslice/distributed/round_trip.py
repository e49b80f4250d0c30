"""The one-call face of the distributed round trip, for the CLI and the tests."""

from __future__ import annotations

import dataclasses
import time

from dpslice.distributed.driver import RoundTripSession, check_search_arguments
from dpslice.distributed.result import RoundTripResult
from dpslice.distributed.target import load_target, resolve_spec

__all__ = ["run_round_trip"]


def run_round_trip(
    target: str,
    *,
    dp_size: int,
    backend: str = "gloo",
    max_examples: int = 200,
    seed: int | None = None,
    timeout: float = 600.0,
    layout_timeout: float = 60.0,
    startup_timeout: float = 120.0,
    max_count: int = 64,
    call_timeout: float | None = None,
) -> RoundTripResult:
    """Check ``target`` against buffers gathered by real collectives on ``dp_size`` ranks.

    One process group is started and evaluates every layout Hypothesis draws
    (SUM_LEN, MAX_LEN and graph replay, attention-TP rounding and skipped
    gathers included); a failure is shrunk to a minimal layout and returned
    with the rank that saw it.  The group is torn down before this returns or
    raises.

    Args:
        target: ``package.module:function`` or ``path/to/file.py:function``.
        dp_size: ranks in the group (one GPU each under NCCL).
        backend: ``"gloo"`` (CPU) or ``"nccl"``.
        max_examples: layouts to draw before a pass (shrinking comes on top).
        seed: makes the draw reproducible; otherwise the Hypothesis profile
            decides (``ci`` derandomises).
        timeout: seconds for the whole run, start-up and shrinking included;
            when it runs out the search stops and the result stands on the
            layouts checked (:attr:`RoundTripResult.stopped`).
        layout_timeout: seconds for every rank to answer one layout.
        startup_timeout: seconds to spawn the ranks and join the group.
        max_count: the largest token count of a rank.
        call_timeout: seconds one call of the target may take before it is
            the target's failure (a hung call); ``None``: ``layout_timeout``.

    Returns:
        The verdict, layouts checked, seconds (start-up included) and any
        minimal counterexample.

    Raises:
        RoundTripConfigError: bad arguments, or too few GPUs for NCCL.
        TargetLoadError: the target cannot be loaded (before any rank starts).
        RankFailed: a rank raised in the harness or died.
        RoundTripTimeout: the group did not start, or a rank got stuck
            outside the target's call.
    """
    began = time.monotonic()
    timeout = check_search_arguments(max_examples, timeout)
    load_target(resolve_spec(target))  # fail before spawning anything
    session = RoundTripSession(
        dp_size=dp_size,
        backend=backend,
        startup_timeout=min(startup_timeout, timeout),
        layout_timeout=layout_timeout,
        call_timeout=call_timeout,
    )
    with session:
        result = session.round_trip(
            target,
            max_examples=max_examples,
            seed=seed,
            timeout=max(1e-3, timeout - (time.monotonic() - began)),
            max_count=max_count,
        )
    return dataclasses.replace(
        result, seconds=time.monotonic() - began, startup_seconds=session.startup_seconds
    )
