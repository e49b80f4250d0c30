"""The defaults every mode shares, and children that never outlive the check.

Every runner worker dies with its parent, leads a process group of its own and is a
subreaper, so that whatever the target starts, in any session or group, stays below it
and :func:`kill_tree` kills it with the worker.  ``dpslice check``'s own process is a
subreaper too, for what a worker that ended left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import signal
import sys
from collections.abc import Iterator

#: Layouts a property's search checks, before shrinking, unless told otherwise.
DEFAULT_MAX_EXAMPLES = 500

#: Seconds one call of the target may take before it counts as hung: a slice
#: takes microseconds, but an engine's first call may import more of it (sglang's
#: took over 10 s on a busy 2-core machine), and a false hang is a false FAIL.
DEFAULT_CALL_TIMEOUT = 60.0

#: The shortest call timeout the check can honour: a call is timed from the
#: worker's record of its start, by the worker's clock, and the parent sees its
#: return only when it looks (every 50 ms): a call that came back in time is
#: never a hang, but one that hangs is stopped up to 0.05 s late.
MIN_CALL_TIMEOUT = 0.01

#: Seconds the target's import may take before it counts as hung: importing an
#: engine (sglang, vLLM) on a busy CPU takes 5 to 40 s.
DEFAULT_IMPORT_TIMEOUT = 120.0

#: Seconds a whole round trip (``--distributed``) may take, start-up and
#: shrinking included, before it stops and stands on the layouts it checked.
DEFAULT_RUN_TIMEOUT = 600.0

#: What the fork server imports for the battery's workers, and for a round trip's
#: ranks, before it forks them (:mod:`dpslice.runner.forkserver`): torch with it.
BATTERY_IMPORTS = ("dpslice.check.registry:builtin",)
RANK_IMPORTS = ("dpslice.distributed.worker:warm",)

#: Seconds each rank of a round trip gets to start (spawn, import torch, join
#: and warm up the group: a first NCCL collective can take tens of seconds), on
#: top of the call timeout for importing the target.
STARTUP_ALLOWANCE = 120.0

#: Seconds the check's own work may take between two events of a worker (drawing,
#: the oracle, Hypothesis's bookkeeping), when that exceeds the call timeout.
OWN_WORK_ALLOWANCE = 60.0

#: Seconds each layout's collectives get in a round trip, on top of the call timeout.
GATHER_ALLOWANCE = 50.0

#: Seconds one layout of a round trip may take, the call and the collectives.
DEFAULT_LAYOUT_TIMEOUT = DEFAULT_CALL_TIMEOUT + GATHER_ALLOWANCE

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


#: ``-j auto`` starts at most this many workers: each is a Python process with torch
#: imported, and a battery has about fifteen properties to share among them.
AUTO_JOBS_CAP = 8
#: Memory one worker is allowed for, in bytes, when ``-j auto`` counts what is available.
WORKER_MEMORY = 512 * 2**20


def available_memory() -> int | None:
    """MemAvailable from ``/proc/meminfo``, in bytes; ``None`` where there is none."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def auto_jobs() -> int:
    """Workers for ``-j auto``: the CPUs this process may use, at most
    :data:`AUTO_JOBS_CAP`, and no more than the available memory holds."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    memory = available_memory()
    fits = AUTO_JOBS_CAP if memory is None else memory // WORKER_MEMORY
    return max(1, min(cpus, AUTO_JOBS_CAP, fits))


def finite_seconds(value: object) -> bool:
    """Whether ``value`` is a finite int or float, not a bool (a report's JSON is strict)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def check_call_timeout(seconds: float) -> float:
    """``seconds`` if it is a call timeout the check can honour.

    Raises:
        ValueError: not a finite number of seconds at least :data:`MIN_CALL_TIMEOUT`.
    """
    if not finite_seconds(seconds) or seconds < MIN_CALL_TIMEOUT:
        raise ValueError(
            f"a call timeout of {seconds!r} s cannot be measured: the check times a call to "
            f"about {MIN_CALL_TIMEOUT:g} s; give at least {MIN_CALL_TIMEOUT:g}"
        )
    return float(seconds)


_stop_signal: int | None = None
#: The read end of the signal wakeup pipe while :func:`signal_order` lasts.
_arrivals: int | None = None


def request_stop(signum: int | None) -> None:
    """Record that the user asked to stop (a signal handler calls it before raising);
    ``None`` clears the request (a new run starts).

    The ``KeyboardInterrupt`` a handler raises can land in code that swallows
    it; a supervisor that polls :func:`stop_requested` still stops.  Within
    :func:`signal_order`, the signal recorded is the one that arrived first.
    """
    global _stop_signal
    if signum is not None and _arrivals is not None:
        with contextlib.suppress(OSError):
            # Another thread may run a signal's C handler, and write its byte, late: the
            # byte of an earlier signal counts only where this signal's byte is there too.
            arrived = os.read(_arrivals, 64)
            signum = arrived[0] if signum in arrived else signum
    _stop_signal = signum


@contextlib.contextmanager
def signal_order() -> Iterator[None]:
    """Keep the order signals arrive in, for :func:`request_stop`: when two are pending
    at once (a busy or descheduled process), Python runs their handlers in signal-number
    order, SIGINT before a SIGTERM that came first.  Main thread only; else it does nothing."""
    global _arrivals
    read, write = os.pipe()
    for fd in (read, write):
        os.set_blocking(fd, False)
    try:
        previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    except ValueError:  # not the main thread
        previous = None
    try:
        if previous is not None:
            _arrivals = read
        yield
    finally:
        if previous is not None:
            signal.set_wakeup_fd(previous)
            _arrivals = None
        os.close(read)
        os.close(write)


def stop_requested() -> int | None:
    """The signal that asked to stop, if one did."""
    return _stop_signal


def _prctl(option: int, value: int) -> None:
    if sys.platform.startswith("linux"):  # elsewhere nothing happens
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux), or exit now.

    Call it first thing in a child; ``parent_pid`` is the parent's pid as the
    parent saw it, which tells a parent that died before the request took effect.
    """
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


def become_subreaper() -> None:
    """Adopt this process's orphaned descendants (Linux): a descendant whose parent exits
    is re-parented to the nearest subreaper above it instead of to init, so it stays
    below this process (:func:`kill_descendants`) whatever session or group it is in."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def kill_descendants(pid: int) -> None:
    """SIGKILL every process below ``pid``, in any session or group (Linux ``/proc``),
    until none is left, so that a process forking while it is killed is caught too."""
    for _ in range(10):
        children: dict[int, list[int]] = {}
        with contextlib.suppress(OSError):
            for entry in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{entry}/stat", "rb") as stat:
                        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
                        ppid = int(stat.read().rpartition(b")")[2].split()[1])
                except (OSError, ValueError, IndexError):
                    continue  # it exited meanwhile
                children.setdefault(ppid, []).append(int(entry))
        below, pending = [], [pid]
        while pending:
            found = children.get(pending.pop(), [])
            below += found
            pending += found
        if not below:
            return
        for child in below:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(child, signal.SIGKILL)


def kill_tree(pid: int) -> None:
    """SIGKILL the group that ``pid`` leads and every process below ``pid``.

    Call it before reaping ``pid``: until then its pid, and so the group id,
    cannot be reused by an unrelated process.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    kill_descendants(pid)
