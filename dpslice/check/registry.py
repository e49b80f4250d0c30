"""What a property of the battery is, and the registry the runner reads.

A :class:`Property` names a statement, the Hypothesis strategy its examples
come from and a check that turns one example into a :class:`Counterexample`
or ``None``.  The runner knows nothing else about it.

The built-in battery is explicit: the ``PROPERTIES`` tuple of each module
named in :data:`BUILTIN_MODULES`, in that order, imported the first time the
battery is asked for (they import torch; the supervising process that only
reports never does).  :func:`register` appends a property of your own.  The
properties that compare a target with another implementation (``--against``,
:data:`AGAINST_MODULE`) join the run only when it has one.
"""

from __future__ import annotations

import enum
import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from dpslice.check.outcome import Outcome
from dpslice.check.target import CONVENTION, Target
from dpslice.errors import UnknownPropertyError
from dpslice.layout import DPLayout, Mode

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = [
    "AGAINST_MODULE",
    "BUILTIN_MODULES",
    "Counterexample",
    "Property",
    "RelatedCall",
    "Tier",
    "builtin",
    "register",
    "registered",
    "render_call",
    "select",
]

Example = TypeVar("Example")


class Tier(enum.Enum):
    """How much a property's failure says about the target."""

    #: Wrong rows, an incidental crash, a sync or a mutated input, in a state the
    #: contract says the engine reaches: a FAIL, exit status 1.
    HAZARD = "hazard"
    #: An input the engine never produces was not refused: a WARN, exit status 0
    #: unless ``--strict``.
    HARDENING = "hardening"


def render_call(function: str, arguments: Mapping[str, object]) -> str:
    """A call as a counterexample shows it: ``function(name=repr, ...)``."""
    shown = ", ".join(f"{name}={value!r}" for name, value in arguments.items())
    return f"{function}({shown})"


class RelatedCall(NamedTuple):
    """Another rank's call that a property judged together with the counterexample's.

    Text as the report shows it, made where the call ran: plain data that
    crosses from the check's worker as it is.

    Attributes:
        rank: the other rank (the same rank, for the implementation compared with).
        call: its call, as :func:`render_call` renders it.
        outcome: what it did (:meth:`Outcome.describe <dpslice.check.outcome.Outcome.describe>`).
        label: how the report names it; ``None``: ``rank N``.  ``"against"`` for
            the implementation ``--against`` named, called with the same inputs.
    """

    rank: int | None
    call: str
    outcome: str
    label: str | None = None


@dataclass(frozen=True)
class Counterexample:
    """One call that broke a property, with everything needed to read and rerun it.

    Attributes:
        layout: the buffer the call was about (its repr rebuilds it).
        rank: the DP rank called, or ``None`` if the rank itself was the defect.
        function: the name shown in the rendered call.
        arguments: the keyword arguments the target was given.
        outcome: what the call did.
        expected: what the property required, one line.
        why: what is wrong with the outcome, one line.
        expected_slice: the oracle's ``(start, length)``, where there is one.
        got_rows: the tags of the rows the returned slice covers, rendered.
        expected_rows: the tags it should have covered, rendered.
        kind: for a property searched kind by kind, the kind this one shows.
        related: the other ranks' calls of the same forward that the property
            weighed this one against: for two ranks whose slices clash, the
            other rank (this one is the rank whose own slice is wrong).
    """

    layout: DPLayout
    rank: int | None
    function: str
    arguments: Mapping[str, object]
    outcome: Outcome
    expected: str
    why: str
    expected_slice: tuple[int, int] | None = None
    got_rows: str | None = None
    expected_rows: str | None = None
    kind: str | None = None
    related: tuple[RelatedCall, ...] = ()


_NAME = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")


@dataclass(frozen=True)
class Property(Generic[Example]):
    """A statement every DP-local slice must satisfy, and how to check it.

    Attributes:
        name: snake_case, unique in the registry; what ``--property`` selects.
        statement: the property in one line.
        draws: the strategy, as a readable expression (for ``--list`` and docs).
        strategy: builds the strategy for a target; it may narrow the draw to
            the inputs that target reads.
        check: one example against the target; a counterexample or ``None``.
        exercises: the convention parameters whose handling the property
            judges.  The property is not applicable to a target that reads none
            of them; empty means it always applies.
        requires: extra applicability (a device, a backend): returns why the
            property does not apply to a target, or ``None`` if it does.
        describe: how the property runs against a target, where that varies
            (which sync guard, say); shown in its row of the report.
        tier: hazard (a failure FAILs) or hardening (a failure WARNs).
        modes: the engine states it judges; it does not apply to a target
            whose contract reaches none of them.  Empty means any.
        kinds: instead of ``strategy``, one strategy per kind of example,
            searched apart, so that one run lists every kind that fails.
    """

    name: str
    statement: str
    draws: str
    strategy: Callable[[Target], SearchStrategy[Example]]
    check: Callable[[Target, Example], Counterexample | None]
    exercises: frozenset[str] = field(default_factory=frozenset)
    requires: Callable[[Target], str | None] | None = None
    describe: Callable[[Target], str] | None = None
    tier: Tier = Tier.HAZARD
    modes: frozenset[Mode] = field(default_factory=frozenset)
    kinds: Callable[[Target], Mapping[str, SearchStrategy[Example]]] | None = None

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"property name {self.name!r} must be snake_case")
        if not self.statement or "\n" in self.statement:
            raise ValueError(f"property {self.name}: the statement must be one line")
        unknown = self.exercises - set(CONVENTION)
        if unknown:
            raise ValueError(
                f"property {self.name} exercises {sorted(unknown)}, which the calling "
                f"convention does not pass; choose from {', '.join(CONVENTION)}"
            )

    def not_applicable(self, target: Target) -> str | None:
        """Why the property does not apply to ``target``, or ``None`` if it does."""
        if self.exercises and not self.exercises & target.accepts:
            names = " or ".join(sorted(self.exercises))
            return f"the target does not take {names}"
        if self.modes and not self.modes & target.contract.modes:
            names = ", ".join(mode.name for mode in Mode if mode in self.modes)
            return f"the {target.contract.name} contract never reaches {names}"
        return self.requires(target) if self.requires is not None else None


#: The modules whose ``PROPERTIES`` make the built-in battery, in the order
#: of the report's rows.
BUILTIN_MODULES = (
    "dpslice.check.battery",
    "dpslice.check.sync_property",
    "dpslice.check.cuda_property",
)

#: The module whose ``PROPERTIES`` compare a target with the implementation
#: ``--against`` names; they follow the built-in ones in a run that has one.
AGAINST_MODULE = "dpslice.check.against_property"

_BUILTIN: tuple[Property[Any], ...] = ()
#: Properties added with :func:`register`, after the built-in ones.
_ADDED: dict[str, Property[Any]] = {}


def builtin() -> tuple[Property[Any], ...]:
    """The built-in battery: the ``PROPERTIES`` of each of :data:`BUILTIN_MODULES`, in order."""
    global _BUILTIN
    if not _BUILTIN:
        _BUILTIN = tuple(
            prop for name in BUILTIN_MODULES for prop in importlib.import_module(name).PROPERTIES
        )
    return _BUILTIN


def register(prop: Property[Example]) -> Property[Example]:
    """Add ``prop`` to the battery, after the built-in properties and those added before.

    Raises:
        ValueError: a property of that name is already registered.
    """
    if any(known.name == prop.name for known in registered()):
        raise ValueError(f"a property named {prop.name!r} is already registered")
    _ADDED[prop.name] = prop
    return prop


def against() -> tuple[Property[Any], ...]:
    """The properties that compare a target with another implementation (``--against``)."""
    properties: tuple[Property[Any], ...] = importlib.import_module(AGAINST_MODULE).PROPERTIES
    return properties


def registered(*, compared: bool = False) -> tuple[Property[Any], ...]:
    """Every property of the battery: the built-in ones, then those added, in order;
    with ``compared`` (a run with ``--against``), the comparisons after the built-in ones."""
    return (*builtin(), *(against() if compared else ()), *_ADDED.values())


def select(names: Iterable[str]) -> tuple[Property[Any], ...]:
    """The registered properties named, in the order given, each once.

    Raises:
        UnknownPropertyError: a name is not registered.
    """
    known = {prop.name: prop for prop in registered(compared=True)}
    chosen = []
    for name in dict.fromkeys(names):
        if name not in known:
            raise UnknownPropertyError(
                f"no property named {name!r}; choose from {', '.join(known)}"
            )
        chosen.append(known[name])
    return tuple(chosen)
