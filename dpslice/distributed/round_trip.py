"""The one-call face of the round trip: load, start a group, search, report
(:func:`round_trip_report`, for every way of running: a :class:`~dpslice.check.CheckReport`
with one property, ``round_trip_rows``, and how the buffers were gathered).
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Sequence

from dpslice.check.results import (
    CheckReport,
    PropertyResult,
    RoundTrip,
    Verdict,
    check_seed,
    round_trip_result,
    versions,
)
from dpslice.check.target import Target, load_target, resolve_spec
from dpslice.contracts import DEFAULT_CONTRACT
from dpslice.distributed.driver import RoundTripSession, check_search_arguments
from dpslice.errors import BadTargetError, RoundTripError
from dpslice.isolation import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_MAX_EXAMPLES,
    DEFAULT_RUN_TIMEOUT,
    GATHER_ALLOWANCE,
    STARTUP_ALLOWANCE,
)


def load_round_trip_target(spec: str) -> Target:
    """The target, loaded on the CPU as every rank will load it.

    Raises:
        BadTargetError: it cannot be loaded, or names a contract other than
            ``sglang-capturer``: the ranks gather what its capturer is handed.
    """
    target = load_target(resolve_spec(spec))
    if target.contract != DEFAULT_CONTRACT:
        raise BadTargetError(
            f"{spec} names the {target.contract.name} contract, and the round trip judges "
            f"only {DEFAULT_CONTRACT.name}'s call site; check it without --distributed"
        )
    return target


def round_trip_report(
    target: Target,
    result: PropertyResult,
    *,
    seed: int,
    max_examples: int,
    seconds: float,
    dp_size: int,
    backend: str,
    call_timeout: float,
    run_timeout: float,
    devices: Sequence[str] = (),
    startup_seconds: float = 0.0,
    versions: dict[str, str] | None = None,
) -> CheckReport:
    """The round trip's report, however it ran."""
    nccl = None
    if backend == "nccl":
        from dpslice._numpy_notice import torch

        nccl = ".".join(map(str, torch.cuda.nccl.version()))  # type: ignore[no-untyped-call]
    return CheckReport(
        target=target,
        seed=seed,
        max_examples=max_examples,
        results=(result,),
        seconds=seconds,
        round_trip=RoundTrip(
            dp_size=dp_size,
            backend=backend,
            call_timeout=call_timeout,
            run_timeout=run_timeout,
            devices=tuple(devices),
            startup_seconds=startup_seconds,
            nccl=nccl,
        ),
        versions=versions,
    )


def run_on(
    session: RoundTripSession,
    target: Target,
    *,
    seed: int,
    max_examples: int,
    began: float,
    run_timeout: float,
    versions: dict[str, str] | None,
    max_count: int = 64,
) -> CheckReport:
    """The round trip of ``target`` on ``session`` (started here if it is not), as a
    report; the budget counts from ``began``.  A harness failure is the property's ERROR."""
    try:
        if not session.pids:
            session.start()
        result = session.round_trip(
            target,
            max_examples=max_examples,
            seed=seed,
            timeout=max(1e-3, run_timeout - (time.monotonic() - began)),
            max_count=max_count,
        )
    except RoundTripError as error:
        result = round_trip_result(
            Verdict.ERROR,
            examples=session.layouts_checked,
            seconds=time.monotonic() - began,
            note=f"the round trip reached no verdict: {type(error).__name__}: {error}",
        )
    return round_trip_report(
        target,
        result,
        seed=seed,
        max_examples=max_examples,
        seconds=time.monotonic() - began,
        dp_size=session.dp_size,
        backend=session.backend,
        call_timeout=session.call_timeout or DEFAULT_CALL_TIMEOUT,
        run_timeout=run_timeout,
        devices=session.devices,
        startup_seconds=session.startup_seconds,
        versions=versions,
    )


def run_round_trip(
    target: str,
    *,
    dp_size: int,
    backend: str = "gloo",
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    seed: int | None = None,
    call_timeout: float = DEFAULT_CALL_TIMEOUT,
    timeout: float = DEFAULT_RUN_TIMEOUT,
    max_count: int = 64,
) -> CheckReport:
    """Check ``target`` against buffers gathered by real collectives on ``dp_size`` ranks.

    One process group evaluates every layout Hypothesis draws (SUM_LEN, MAX_LEN
    and graph replay, attention-TP rounding and skipped gathers included); a
    failure is shrunk to a minimal layout and reported with the rank that saw
    it.  The group is torn down before this returns.  A harness failure (a rank
    that died or got stuck outside the target's call) is a result too: the
    property's verdict is ERROR and its note says why.

    Args:
        target: ``package.module:function`` or ``path/to/file.py:function``;
            loaded here first, then in every rank, with the caller's ``sys.path``.
        dp_size: ranks in the group (one GPU each under NCCL).
        backend: ``"gloo"`` (CPU) or ``"nccl"``.
        max_examples: layouts to draw before a pass (shrinking comes on top).
        seed: Hypothesis seed; a random one (recorded) if ``None``.
        call_timeout: seconds one call of the target may take: a call that takes
            longer FAILs.  Each layout gets it plus :data:`GATHER_ALLOWANCE`, the
            start-up :data:`STARTUP_ALLOWANCE` plus it.
        timeout: seconds for the whole run, start-up and shrinking included;
            when it runs out the verdict stands on the layouts checked.
        max_count: the largest token count of a rank.

    Raises:
        CheckConfigError: bad arguments, or too few GPUs for NCCL; raised
            before any rank starts.
        BadTargetError: the target cannot be loaded (before any rank starts).
    """
    began = time.monotonic()
    timeout = check_search_arguments(max_examples, timeout)
    if seed is None:
        seed = secrets.randbelow(2**32)
    check_seed(seed)
    loaded = load_round_trip_target(target)
    session = RoundTripSession(
        dp_size=dp_size,
        backend=backend,
        startup_timeout=min(STARTUP_ALLOWANCE + call_timeout, timeout),
        layout_timeout=call_timeout + GATHER_ALLOWANCE,
        call_timeout=call_timeout,
    )
    with contextlib.closing(session):
        return run_on(
            session,
            loaded,
            seed=seed,
            max_examples=max_examples,
            began=began,
            run_timeout=timeout,
            versions=versions(),
            max_count=max_count,
        )
