"""What the supervisor and its workers say to each other, and how a worker's job can end.

Parent to worker, on the worker's stdin: one pickled :class:`Job` after another.
Worker to parent, one ``send_bytes`` each on the event pipe: the call sequence
it follows and a pickled :class:`Loading`, :class:`Note`, :class:`Done` or
:class:`Broke`.  The calls of the target, the hot path, go on the call board
instead (:class:`dpslice.runner.worker.Channel`), which the parent reads when
it looks: a call costs no write to a pipe and no wake-up of the parent.
"""

from __future__ import annotations

import enum
import math
import signal
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Broke",
    "Done",
    "Ending",
    "How",
    "Job",
    "Limit",
    "Loading",
    "Note",
    "Phase",
    "Stopped",
    "signal_name",
]


@dataclass(frozen=True)
class Job:
    """A call the worker makes: ``function`` (``module:function``) with the worker's
    channel and ``args``; what it returns comes back as :class:`Done`."""

    function: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Loading:
    """The target's import starts (the import timeout runs until the next event)."""

    spec: str


@dataclass(frozen=True)
class Note:
    """Something the job tells its supervisor (the battery's progress, say)."""

    payload: Any


@dataclass(frozen=True)
class Done:
    """The job returned ``value``; the worker waits for the next job."""

    value: Any


@dataclass(frozen=True)
class Broke:
    """The job raised: its traceback; the worker exits next."""

    text: str

    @property
    def last_line(self) -> str:
        """The error, in one line."""
        lines = [line for line in self.text.strip().splitlines() if line.strip()]
        return lines[-1].strip() if lines else "no traceback"


class Phase(enum.Enum):
    """Where a worker is in its job, as its events tell."""

    STARTING = "starting"  # Python, and the job's module
    LOADING = "loading"  # the target's import
    WORKING = "working"  # the job's own work, outside any call of the target
    CALL = "call"  # in a call of the target
    DONE = "done"  # the job returned


class Limit(enum.Enum):
    """The deadlines the supervisor holds a worker to."""

    START = "start"
    LOAD = "load"
    CALL = "call"
    WORK = "work"
    JOB = "job"  # the whole job, from when it was given


class How(enum.Enum):
    """How a worker was stopped before its job returned."""

    HUNG = "hung"  # a deadline passed
    ENDED = "ended"  # its process ended
    BROKE = "broke"  # the job raised


_NATIVE_CRASH = "a crash in native code"
#: What the signal that killed a process says of why, for the signals that say something.
_SIGNAL_CAUSES = {
    **dict.fromkeys(("SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT"), _NATIVE_CRASH),
    # No fault of the process's own raises SIGKILL: it was sent, most often by the
    # kernel out of memory.
    "SIGKILL": (
        "the kernel's out-of-memory killer or a kill from outside the check, not a crash of its own"
    ),
}


def signal_name(number: int) -> str:
    """The name of signal ``number`` (``SIGKILL``), or ``signal N`` if it has none here."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@dataclass(frozen=True)
class Ending:
    """How a process ended: an exit code, or the signal that killed it."""

    exitcode: int | None
    signal: str | None = None

    @classmethod
    def of(cls, returncode: int | None) -> Ending:
        """From an exit status, or minus the signal that killed the process."""
        if returncode is not None and returncode < 0:
            return cls(None, signal_name(-returncode))
        return cls(returncode)

    @property
    def cause(self) -> str | None:
        """Why a process killed by this signal died, in words; ``None`` if it does not say."""
        return None if self.signal is None else _SIGNAL_CAUSES.get(self.signal)

    @property
    def crashed(self) -> bool:
        return self.cause == _NATIVE_CRASH

    @property
    def returncode(self) -> int | None:
        """As ``Popen.returncode`` has it: a signal is its negative number."""
        if self.signal is None:
            return self.exitcode
        return -signal.Signals[self.signal].value if self.signal.startswith("SIG") else None

    def __str__(self) -> str:
        if self.signal is not None:
            return f"killed by {self.signal}" + (f": {self.cause}" if self.cause else "")
        return f"exit code {self.exitcode}"


@dataclass(frozen=True)
class Stopped:
    """Why a worker was stopped before its job returned, and where it was: ``limit`` (and
    its ``seconds``) for ``HUNG``, ``ending`` for ``ENDED``, ``broke`` for ``BROKE``, and
    the call in flight as the job recorded it (``record``) in phase ``CALL``."""

    how: How
    phase: Phase
    limit: Limit | None = None
    seconds: float = math.inf
    ending: Ending | None = None
    broke: Broke | None = None
    record: Any = None
