"""``dpslice check --distributed N``: the round trip through real collectives, as a check run.

Instead of the battery, :func:`run_distributed_check` runs
:func:`dpslice.distributed.run_round_trip`: ``N`` ranks (gloo on CPU, NCCL
with one GPU each) gather tagged rows the ways engines do, and every rank
must slice exactly its own rows back out.  The run is recorded with what was
asked, so a harness failure (a dead rank, a timeout) is a result too: it is
rendered and written to JSON like a verdict, never lost.
"""

from __future__ import annotations

import platform
import secrets
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import hypothesis
import torch

from dpslice._version import __version__
from dpslice.check.report import write_document
from dpslice.distributed import (
    RoundTripConfigError,
    RoundTripError,
    RoundTripResult,
    run_round_trip,
)
from dpslice.isolation import DEFAULT_CALL_TIMEOUT

__all__ = [
    "DEFAULT_CALL_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "JSON_SCHEMA",
    "DistributedCheck",
    "render_text",
    "reproduce_command",
    "run_distributed_check",
    "to_json",
    "write_json",
]

#: Identifies the layout of the JSON document; bumped on incompatible changes.
JSON_SCHEMA = "dpslice-check-distributed/1"
#: Seconds for a whole run, start-up and shrinking included, unless told otherwise.
DEFAULT_TIMEOUT = 600.0
#: Seconds each rank gets to start (spawn, import torch, join and warm up the
#: group: a first NCCL collective can take tens of seconds), on top of the call
#: timeout for importing the target.
STARTUP_ALLOWANCE = 120.0
#: Seconds each layout's collectives get, on top of the call timeout.
GATHER_ALLOWANCE = 50.0


@dataclass(frozen=True)
class DistributedCheck:
    """One distributed check: what was asked, and the verdict or why none came.

    Attributes:
        target: the target as named.
        dp_size, backend, seed, max_examples, timeout, call_timeout: as run.
        result: the round trip's verdict, cost and counterexample; ``None``
            when the harness failed.
        error: the harness's failure (a rank died, a timeout), when there is
            no result.
    """

    target: str
    dp_size: int
    backend: str
    seed: int
    max_examples: int
    timeout: float
    result: RoundTripResult | None = None
    error: RoundTripError | None = None
    call_timeout: float = DEFAULT_CALL_TIMEOUT

    @property
    def passed(self) -> bool:
        """Every rank recovered exactly its own rows on every layout."""
        return self.result is not None and self.result.ok

    @property
    def verdict(self) -> str:
        """``PASS``, ``FAIL``, or ``ERROR`` when the harness reached no verdict."""
        if self.result is None:
            return "ERROR"
        return "PASS" if self.result.ok else "FAIL"


def run_distributed_check(
    target: str,
    *,
    dp_size: int,
    backend: str = "gloo",
    max_examples: int = 500,
    seed: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    call_timeout: float = DEFAULT_CALL_TIMEOUT,
) -> DistributedCheck:
    """Round-trip ``target`` through ``dp_size`` ranks; a harness failure is recorded, not raised.

    Args:
        target: ``package.module:function`` or ``path/to/file.py:function``;
            the spawned ranks import it with the caller's ``sys.path``.
        dp_size: ranks in the process group (one GPU each under NCCL).
        backend: ``"gloo"`` (CPU) or ``"nccl"``.
        max_examples: layouts drawn before a pass; shrinking comes on top.
        seed: Hypothesis seed; a random one (recorded) if ``None``.
        timeout: seconds for the whole run, start-up and shrinking included;
            when it runs out, the verdict stands on the layouts checked.
        call_timeout: seconds one call of the target may take: a call that
            takes longer is a FAIL (``target-hung``).  Each layout gets it plus
            :data:`GATHER_ALLOWANCE`, the start-up :data:`STARTUP_ALLOWANCE` plus it.

    Raises:
        RoundTripConfigError: bad arguments, a target that cannot be loaded,
            or too few GPUs for NCCL; raised before any rank starts.
    """
    if seed is None:
        seed = secrets.randbelow(2**32)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise RoundTripConfigError(f"seed={seed!r} must be an int")
    asked = DistributedCheck(
        target=target,
        dp_size=dp_size,
        backend=backend,
        seed=seed,
        max_examples=max_examples,
        timeout=timeout,
        call_timeout=call_timeout,
    )
    try:
        result = run_round_trip(
            target,
            dp_size=dp_size,
            backend=backend,
            max_examples=max_examples,
            seed=seed,
            timeout=timeout,
            call_timeout=call_timeout,
            layout_timeout=call_timeout + GATHER_ALLOWANCE,
            startup_timeout=STARTUP_ALLOWANCE + call_timeout,
        )
    except RoundTripConfigError:
        raise
    except RoundTripError as exc:
        return replace(asked, error=exc)
    return replace(asked, result=result)


def reproduce_command(run: DistributedCheck) -> str:
    """The shell command that reruns ``run`` with its seed."""
    words = ["dpslice", "check", run.target, "--distributed", str(run.dp_size)]
    words += ["--backend", run.backend, "--seed", str(run.seed)]
    words += ["--max-examples", str(run.max_examples)]
    if run.call_timeout != DEFAULT_CALL_TIMEOUT:
        words += ["--timeout", f"{run.call_timeout:g}"]
    if run.timeout != DEFAULT_TIMEOUT:
        words += ["--run-timeout", f"{run.timeout:g}"]
    return shlex.join(words)


def render_text(run: DistributedCheck) -> str:
    """The human-readable report, ending with a newline."""
    lines = [
        f"dpslice check {run.target} --distributed {run.dp_size} --backend {run.backend}",
        f"seed {run.seed}  max examples {run.max_examples}  timeout {run.call_timeout:g} s "
        f"per call, {run.timeout:g} s per run",
        "",
    ]
    if run.result is not None:
        lines.append(run.result.summary())
        if not run.result.ok:
            lines.append(f"reproduce: {reproduce_command(run)}")
    else:
        assert run.error is not None
        error = f"{type(run.error).__name__}: {run.error}"
        lines.append(f"ERROR: the round trip reached no verdict: {error}")
    lines += ["", "PASSED" if run.passed else "FAILED"]
    return "\n".join(lines) + "\n"


def _versions(backend: str) -> dict[str, str]:
    versions = {
        "dpslice": __version__,
        "torch": torch.__version__,
        "hypothesis": hypothesis.__version__,
        "python": platform.python_version(),
    }
    if backend == "nccl":
        nccl = torch.cuda.nccl.version()  # type: ignore[no-untyped-call]
        versions["nccl"] = ".".join(map(str, nccl))
    return versions


def _result_json(result: RoundTripResult | None) -> dict[str, Any]:
    """The verdict's cost and counterexample; every field ``None`` when there is no verdict."""
    fields = (
        "layouts_checked",
        "seconds",
        "startup_seconds",
        "devices",
        "stopped",
        "counterexample",
    )
    if result is None:
        return dict.fromkeys(fields)
    found = result.counterexample
    return {
        "layouts_checked": result.layouts_checked,
        "seconds": round(result.seconds, 3),
        "startup_seconds": round(result.startup_seconds, 3),
        "devices": list(result.devices),
        "stopped": result.stopped,
        "counterexample": (
            None
            if found is None
            else {
                "layout": repr(found.layout),
                "rank": found.rank,
                "failing_ranks": list(found.failing_ranks),
                "failure": found.failure,
                "message": found.message,
                "got": found.got,
                "expected": found.expected,
            }
        ),
    }


def to_json(run: DistributedCheck) -> dict[str, Any]:
    """The run as a JSON-native dict (schema :data:`JSON_SCHEMA`)."""
    return {
        "schema": JSON_SCHEMA,
        "target": run.target,
        "dp_size": run.dp_size,
        "backend": run.backend,
        "seed": run.seed,
        "max_examples": run.max_examples,
        "timeout": run.timeout,
        "call_timeout": run.call_timeout,
        "verdict": run.verdict,
        "passed": run.passed,
        "reproduce": reproduce_command(run),
        **_result_json(run.result),
        "versions": _versions(run.backend),
        "error": (
            None
            if run.error is None
            else {"type": type(run.error).__name__, "message": str(run.error)}
        ),
    }


def write_json(run: DistributedCheck, path: str | Path) -> None:
    """Write :func:`to_json` to ``path`` (UTF-8, indented, newline-terminated).

    Raises:
        OSError: the file cannot be written.
    """
    write_document(to_json(run), path)
