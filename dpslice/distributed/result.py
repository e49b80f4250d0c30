"""What a round trip reports: a verdict, its cost, and a minimal counterexample."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from dpslice.distributed.rank_check import RankOutcome
from dpslice.layout import DPLayout

__all__ = ["Counterexample", "RoundTripResult"]


@dataclass(frozen=True)
class Counterexample:
    """A (shrunk) layout on which a rank did not recover exactly its own rows.

    Attributes:
        layout: the layout; after shrinking, the smallest Hypothesis found.
        rank: the lowest failing rank, whose outcome the other fields give.
        failure: the failure kind (see :mod:`dpslice.distributed.rank_check`).
        message: what went wrong, in words (a traceback for ``target-raised``).
        got, expected: what the rank got and what it should have got.
        failing_ranks: every rank that failed on this layout.
    """

    layout: DPLayout
    rank: int
    failure: str
    message: str
    got: str
    expected: str
    failing_ranks: tuple[int, ...]

    @classmethod
    def from_outcomes(cls, layout: DPLayout, outcomes: Sequence[RankOutcome]) -> Counterexample:
        """Built from one layout's outcomes, at least one of them failed."""
        failed = [outcome for outcome in outcomes if not outcome.ok]
        first = min(failed, key=lambda outcome: outcome.rank)
        assert first.failure is not None
        return cls(
            layout=layout,
            rank=first.rank,
            failure=first.failure,
            message=first.message,
            got=first.got,
            expected=first.expected,
            failing_ranks=tuple(sorted(outcome.rank for outcome in failed)),
        )

    def __str__(self) -> str:
        return "\n".join(
            [
                f"layout:   {self.layout!r}",
                f"rank:     {self.rank} (failing ranks: {list(self.failing_ranks)})",
                f"failure:  {self.failure}: {self.message.rstrip()}",
                f"got:      {self.got}",
                f"expected: {self.expected}",
            ]
        )


@dataclass(frozen=True)
class RoundTripResult:
    """The verdict of :func:`~dpslice.distributed.run_round_trip`.

    Attributes:
        verdict: ``"pass"`` or ``"fail"`` (a counterexample was found).
        target: the import string of the implementation under test.
        backend: ``"gloo"`` or ``"nccl"``.
        dp_size: ranks in the process group.
        layouts_checked: layouts every rank evaluated, shrinking steps included.
        seconds: wall time of the whole run, start-up and teardown included.
        startup_seconds: of which spawning and joining the group.
        devices: each rank's device, in rank order.
        torch_version: ``torch.__version__`` of the driver.
        counterexample: the minimal failing layout, when the verdict is ``"fail"``
            (unshrunk when the target hung or ended its rank's process: the
            group had to be killed).
        stopped: why the search ended before drawing ``max_examples`` layouts
            (the run's budget ran out), else ``None``.
    """

    verdict: Literal["pass", "fail"]
    target: str
    backend: str
    dp_size: int
    layouts_checked: int
    seconds: float
    startup_seconds: float
    devices: tuple[str, ...]
    torch_version: str
    counterexample: Counterexample | None = None
    stopped: str | None = None

    @property
    def ok(self) -> bool:
        return self.verdict == "pass"

    def summary(self) -> str:
        """A few lines for a terminal: verdict, cost, and the counterexample if any."""
        head = (
            f"{self.verdict.upper()}: {self.target} on {self.backend}, dp_size={self.dp_size}: "
            f"{self.layouts_checked} layouts in {self.seconds:.1f} s "
            f"(start-up {self.startup_seconds:.1f} s; torch {self.torch_version}; "
            f"devices {', '.join(sorted(set(self.devices)))})"
        )
        if self.stopped is not None:
            head += f"\nstopped early: {self.stopped}"
        if self.counterexample is None:
            return head
        return f"{head}\nminimal counterexample:\n{self.counterexample}"
