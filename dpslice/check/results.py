"""What a check found: a verdict per property, and the report of the whole run; plain data,
which a supervising process builds and renders without torch or Hypothesis."""

from __future__ import annotations

import enum
import importlib.metadata
import platform
import sys
from dataclasses import dataclass

from dpslice._version import __version__
from dpslice.check.registry import Counterexample, Tier
from dpslice.check.target import Target
from dpslice.contracts import Contract
from dpslice.errors import CheckConfigError

#: The round trip's one property (:mod:`dpslice.distributed.search`).
ROUND_TRIP_ROWS = "round_trip_rows"
ROUND_TRIP_STATEMENT = "Through real collectives, every rank's slice holds exactly its own rows."


def check_max_examples(max_examples: object) -> int:
    """``max_examples`` if it is an int >= 1, else :class:`~dpslice.errors.CheckConfigError`."""
    if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 1:
        raise CheckConfigError(f"max_examples={max_examples!r} must be an int >= 1")
    return max_examples


def check_seed(seed: object) -> int:
    """``seed`` if ``--seed`` can pass it (an int >= 0), else
    :class:`~dpslice.errors.CheckConfigError`."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise CheckConfigError(f"seed={seed!r} must be an int >= 0, as --seed takes it")
    return seed


def _version(package: str) -> str:
    module = sys.modules.get(package)
    if module is not None and isinstance(getattr(module, "__version__", None), str):
        return str(module.__version__)
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def versions() -> dict[str, str]:
    """dpslice's, torch's, Hypothesis's and Python's versions, from the loaded module where
    there is one (torch's carries its build, ``2.1.2+cu121``), else from the metadata."""
    return {
        "dpslice": __version__,
        "torch": _version("torch"),
        "hypothesis": _version("hypothesis"),
        "python": platform.python_version(),
    }


class Verdict(enum.Enum):
    """A property's verdict (docs/check-reference.md)."""

    PASS = "PASS"
    #: A hazard property broke, or a hardening property in a strict check.
    FAIL = "FAIL"
    #: A hardening property broke: an input no engine produces was accepted.
    WARN = "WARN"
    NOT_APPLICABLE = "N/A"
    ERROR = "ERROR"


@dataclass(frozen=True)
class PropertyResult:
    """How one property fared: ``examples`` counts the check's calls, shrinking included;
    ``counterexamples`` are a FAIL's or WARN's minimal failing examples (one per failing kind
    of a property searched kind by kind); ``note`` says why it is N/A, what broke for ERROR,
    or how the property ran."""

    name: str
    statement: str
    verdict: Verdict
    examples: int
    seconds: float
    counterexamples: tuple[Counterexample, ...] = ()
    note: str | None = None
    tier: Tier = Tier.HAZARD

    @property
    def counterexample(self) -> Counterexample | None:
        """The first minimal failing example, if any."""
        return self.counterexamples[0] if self.counterexamples else None

    @property
    def holds(self) -> bool:
        """PASS, WARN or N/A: nothing here says the target breaks in the engine."""
        return self.verdict in (Verdict.PASS, Verdict.WARN, Verdict.NOT_APPLICABLE)


def round_trip_result(
    verdict: Verdict,
    *,
    examples: int = 0,
    seconds: float = 0.0,
    counterexamples: tuple[Counterexample, ...] = (),
    note: str | None = None,
) -> PropertyResult:
    """A result of the round trip's property, ``round_trip_rows``."""
    return PropertyResult(
        ROUND_TRIP_ROWS, ROUND_TRIP_STATEMENT, verdict, examples, seconds, counterexamples, note
    )


@dataclass(frozen=True)
class RoundTrip:
    """How a round trip ran (``dpslice check --distributed``): ``devices`` are the ranks'
    devices in rank order (none if the group never started), ``startup_seconds`` spawning
    the ranks and joining the group, ``nccl`` NCCL's version under NCCL."""

    dp_size: int
    backend: str
    call_timeout: float
    run_timeout: float
    devices: tuple[str, ...] = ()
    startup_seconds: float = 0.0
    nccl: str | None = None


class Stop(enum.Enum):
    """Why a run ended before every property it was asked for had run."""

    INTERRUPTED = "interrupted"
    EXITFIRST = "exitfirst"
    BROKE = "broke"
    HUNG = "hung"

    @property
    def reason(self) -> str:
        """One line for the report."""
        return _STOP_REASONS[self]


_STOP_REASONS = {
    Stop.INTERRUPTED: "interrupted by Ctrl-C or SIGTERM",
    Stop.EXITFIRST: "stopped after the first FAIL or ERROR (-x/--exitfirst)",
    Stop.BROKE: "the check itself broke",
    Stop.HUNG: "the target's first call hung in three properties in a row, so every call "
    "hangs; the rest would each cost the timeout",
}


@dataclass(frozen=True)
class CheckReport:
    """The outcome of one ``dpslice check`` run: ``results`` in the order run; ``properties``
    those asked for (``None``: the battery); ``round_trip`` how a round trip gathered;
    ``versions`` where the check ran (``None``: read when written); ``stopped`` why the run
    ended early, if it did, and ``not_run`` what it never ran then (:class:`ValueError`
    otherwise)."""

    target: Target
    seed: int
    max_examples: int
    results: tuple[PropertyResult, ...]
    seconds: float
    strict: bool = False
    properties: tuple[str, ...] | None = None
    round_trip: RoundTrip | None = None
    versions: dict[str, str] | None = None
    stopped: Stop | None = None
    not_run: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.not_run and self.stopped is None:
            raise ValueError(
                f"not_run={self.not_run!r} needs stopped=: a run that skipped properties "
                "must say why it stopped"
            )

    @property
    def complete(self) -> bool:
        """The run ran to its end: every property it was asked for has a result."""
        return self.stopped is None

    @property
    def mode(self) -> str:
        """``"battery"``, or ``"distributed"`` for the round trip."""
        return "battery" if self.round_trip is None else "distributed"

    @property
    def contract(self) -> Contract:
        """The contract the target was judged by."""
        return self.target.contract

    @property
    def passed(self) -> bool:
        """The run is complete and every property holds (N/A and WARN count as holding)."""
        return self.complete and all(result.holds for result in self.results)

    @property
    def examples(self) -> int:
        return sum(result.examples for result in self.results)

    def result(self, name: str) -> PropertyResult:
        """The result of the property ``name`` (:class:`KeyError` if none ran)."""
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(f"no property named {name!r} ran; ran {[r.name for r in self.results]}")

    @property
    def failed(self) -> tuple[str, ...]:
        """Names of the properties that FAILed."""
        return tuple(result.name for result in self.results if result.verdict is Verdict.FAIL)
