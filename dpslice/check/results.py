"""What a check found: a verdict per property, and the report of the whole run.

Plain data, free of torch and Hypothesis: the supervising process of
``dpslice check`` builds, renders and writes these without importing either.
"""

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

__all__ = [
    "ROUND_TRIP_ROWS",
    "ROUND_TRIP_STATEMENT",
    "CheckReport",
    "PropertyResult",
    "RoundTrip",
    "Stop",
    "Verdict",
    "check_max_examples",
    "check_seed",
    "round_trip_result",
    "versions",
]

#: The round trip's one property (:mod:`dpslice.distributed.search`), named here so
#: that the process supervising it reports it without importing torch.
ROUND_TRIP_ROWS = "round_trip_rows"
ROUND_TRIP_STATEMENT = "Through real collectives, every rank's slice holds exactly its own rows."


def check_max_examples(max_examples: object) -> int:
    """``max_examples`` if a search can draw that many layouts: an int >= 1.

    Raises:
        CheckConfigError: not an int >= 1, in every mode (the battery, the round trip,
            the pytest plugin).
    """
    if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 1:
        raise CheckConfigError(f"max_examples={max_examples!r} must be an int >= 1")
    return max_examples


def check_seed(seed: object) -> int:
    """``seed`` if a check can be seeded with it, and rerun from it by ``--seed``.

    Raises:
        CheckConfigError: not an int >= 0 (a bool, a float, a string: a report would
            record a seed its reproduce line cannot pass).
    """
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
    """dpslice's, torch's, Hypothesis's and Python's versions in this process.

    From the loaded module where there is one (torch's carries its build, as
    in ``2.1.2+cu121``), else from the installed package's metadata (which
    may not: ``2.1.2``).  A check records them where it ran, in the process
    that loaded torch.
    """
    return {
        "dpslice": __version__,
        "torch": _version("torch"),
        "hypothesis": _version("hypothesis"),
        "python": platform.python_version(),
    }


class Verdict(enum.Enum):
    PASS = "PASS"
    #: A hazard property broke, or a hardening property in a strict check.
    FAIL = "FAIL"
    #: A hardening property broke: an input no engine produces was accepted.
    WARN = "WARN"
    NOT_APPLICABLE = "N/A"
    ERROR = "ERROR"


@dataclass(frozen=True)
class PropertyResult:
    """How one property fared.

    Attributes:
        name, statement: the property's.
        verdict: PASS, FAIL, WARN (a hardening property broke), N/A (the
            target reads none of its inputs, or its contract never reaches
            the states it judges) or ERROR (the check itself broke, not the target).
        examples: calls of the check, shrinking included.
        seconds: wall time spent on the property.
        counterexamples: the minimal failing examples, for FAIL and WARN: one,
            or one per failing kind of a property searched kind by kind.
        note: why it is N/A, what broke for ERROR, or else how the property
            ran (:attr:`Property.describe`), if it says.
        tier: the property's tier.
    """

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
        name=ROUND_TRIP_ROWS,
        statement=ROUND_TRIP_STATEMENT,
        verdict=verdict,
        examples=examples,
        seconds=seconds,
        counterexamples=counterexamples,
        note=note,
    )


@dataclass(frozen=True)
class RoundTrip:
    """How a round trip ran (``dpslice check --distributed``): where its buffers were gathered.

    Attributes:
        dp_size: ranks in the process group.
        backend: ``"gloo"`` (CPU) or ``"nccl"`` (one GPU per rank).
        devices: each rank's device, in rank order; empty if the group never started.
        startup_seconds: spawning the ranks and joining the group.
        call_timeout: seconds one call of the target could take.
        run_timeout: seconds the whole run could take, start-up and shrinking included.
        nccl: NCCL's version, under NCCL.
    """

    dp_size: int
    backend: str
    call_timeout: float
    run_timeout: float
    devices: tuple[str, ...] = ()
    startup_seconds: float = 0.0
    nccl: str | None = None


class Stop(enum.Enum):
    """Why a run ended before every property it was asked for had run."""

    #: Ctrl-C or SIGTERM.
    INTERRUPTED = "interrupted"
    #: ``dpslice check -x``: a property FAILed or ended in ERROR, and the run stopped there.
    EXITFIRST = "exitfirst"
    #: The check's own code failed; what broke is on stderr (``dpslice check``).
    BROKE = "broke"
    #: The target's first call hung in several properties in a row: every call hangs.
    HUNG = "hung"

    @property
    def reason(self) -> str:
        """One line for the report."""
        if self is Stop.INTERRUPTED:
            return "interrupted by Ctrl-C or SIGTERM"
        if self is Stop.BROKE:
            return "the check itself broke"
        if self is Stop.HUNG:
            return (
                "the target's first call hung in three properties in a row, so every call "
                "hangs; the rest would each cost the timeout"
            )
        return "stopped after the first FAIL or ERROR (-x/--exitfirst)"


@dataclass(frozen=True)
class CheckReport:
    """The outcome of one ``dpslice check`` run.

    Attributes:
        target: the target as loaded, with its device and contract.
        seed, max_examples, strict: as run.
        results: one per property, in the order run.
        seconds: wall time of the run.
        properties: the property names the run was asked for; ``None`` for
            the whole battery.
        round_trip: for the round trip, how its buffers were gathered through
            real collectives; ``None`` for the battery, which gathers with the
            layout model.
        versions: :func:`versions` where the check ran; ``None``: unknown (read
            again when the report is written).
        stopped: why the run ended early, or ``None`` if it ran to its end.
            A run that stopped early has not passed, whatever its results say.
        not_run: the properties it was asked for that never ran (the one in
            progress when it stopped included), in the order planned.

    Raises:
        ValueError: ``not_run`` names properties of a run that did not stop early.
    """

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
        """The result of the property ``name``.

        Raises:
            KeyError: no property of that name ran.
        """
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(f"no property named {name!r} ran; ran {[r.name for r in self.results]}")

    @property
    def failed(self) -> tuple[str, ...]:
        """Names of the properties that FAILed."""
        return tuple(result.name for result in self.results if result.verdict is Verdict.FAIL)
