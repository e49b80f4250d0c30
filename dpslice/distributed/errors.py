"""The round trip's errors whose attributes are its own types (a layout, a counterexample),
of layers above :mod:`dpslice.errors`, which imports nothing of dpslice's.  The first
three derive from :class:`~dpslice.errors.RoundTripError`: no verdict was reached.
:class:`TargetAbortedError` is the target's fault: the round trip reports its call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dpslice.errors import RoundTripError
from dpslice.runner import Ending

if TYPE_CHECKING:
    from dpslice.check.registry import Counterexample
    from dpslice.layout import DPLayout

__all__ = [
    "GatherMismatchError",
    "RankFailedError",
    "RoundTripTimeoutError",
    "TargetAbortedError",
]


class RoundTripTimeoutError(RoundTripError):
    """The process group did not start, or did not answer a layout, in time.

    Attributes:
        phase: ``"startup"``, ``"layout"`` (one layout's budget) or ``"run"``
            (the whole run's budget).
        seconds: the budget that ran out.
        pending_ranks: the ranks that had not answered.
        layout: the layout being evaluated, if any.
    """

    def __init__(
        self,
        phase: str,
        seconds: float,
        pending_ranks: Sequence[int],
        layout: DPLayout | None = None,
    ) -> None:
        self.phase = phase
        self.seconds = seconds
        self.pending_ranks = tuple(pending_ranks)
        self.layout = layout
        what = {
            "startup": "to start the process group (spawn, import torch, init, warm-up collective)",
            "layout": "to answer one layout",
            "run": "for the whole run",
        }.get(phase, phase)
        where = f" on {layout!r}" if layout is not None else ""
        super().__init__(
            f"rank(s) {list(self.pending_ranks)} did not answer within the {seconds:g} s allowed "
            f"{what}{where}. A rank is stuck (in a collective whose peers moved on, or in the "
            "target itself); the whole group was killed. Raise the timeout if the machine is "
            "merely slow (a first NCCL collective can take tens of seconds)"
        )


class RankFailedError(RoundTripError):
    """A rank raised in the harness, or died, so the whole group was brought down.

    Attributes:
        rank: the rank judged the root cause (a rank that died outright is
            preferred over its peers whose collectives then broke).
        exitcode: its exit code, if it had exited (negative: killed by that signal).
        traceback_text: its formatted traceback, or ``""`` if it died without one.
        layout: the layout being evaluated, if any.
        others: ``(rank, summary)`` of peers that failed in the same window.
    """

    def __init__(
        self,
        rank: int,
        *,
        exitcode: int | None,
        traceback_text: str,
        layout: DPLayout | None = None,
        others: Sequence[tuple[int, str]] = (),
    ) -> None:
        self.rank = rank
        self.exitcode = exitcode
        self.traceback_text = traceback_text
        self.layout = layout
        self.others = tuple(others)
        if traceback_text:
            how = f"raised:\n{traceback_text.rstrip()}"
        elif exitcode is not None and exitcode < 0:
            ending = Ending.of(exitcode)
            described = f"{ending.signal}: {ending.cause}" if ending.cause else ending.signal
            how = f"was killed by signal {-exitcode} ({described}) without a traceback"
        else:
            how = (
                f"exited with code {exitcode} without a traceback (os._exit, or a crash "
                "in native code: its stderr, above, may say more)"
            )
        where = f" while evaluating {layout!r}" if layout is not None else ""
        lines = [f"rank {rank}{where} {how}"]
        lines += [f"  also rank {other}: {summary}" for other, summary in self.others]
        lines.append("the whole process group was brought down")
        super().__init__("\n".join(lines))


class GatherMismatchError(RoundTripError):
    """The collectives did not produce what the layout model says the engine hands the slicer.

    Raised in a rank before the target runs: the harness (or the model) is
    wrong, not the target, so the run ends without a verdict.

    Attributes:
        layout: the layout gathered.
        rank: the rank that saw the difference.
        detail: what differed.
    """

    def __init__(self, layout: DPLayout, rank: int, detail: str) -> None:
        self.layout = layout
        self.rank = rank
        self.detail = detail
        super().__init__(f"rank {rank}, gathering {layout!r}: {detail}")


class TargetAbortedError(Exception):
    """The target never returned from a call, or ended its rank's process while in one.

    Not a harness failure: the call is the counterexample (the layout in
    flight, unshrunk, since the group had to be killed).

    Attributes:
        counterexample: the layout, the rank and what its call did.
    """

    def __init__(self, counterexample: Counterexample) -> None:
        self.counterexample = counterexample
        super().__init__(
            f"rank {counterexample.rank}: {counterexample.outcome.describe()} "
            f"on {counterexample.layout!r}"
        )
