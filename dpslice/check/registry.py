"""What a property of the battery is, and the registry the runner reads: the ``PROPERTIES``
of :data:`BUILTIN_MODULES` (imported when first asked for: they import torch), those of
:data:`AGAINST_MODULE` in a run with ``--against``, then those :func:`register` added."""

from __future__ import annotations

import enum
import functools
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


Example = TypeVar("Example")


class Tier(enum.Enum):
    """How much a property's failure says: a hazard FAILs, a hardening property WARNs."""

    HAZARD = "hazard"
    HARDENING = "hardening"


def render_call(function: str, arguments: Mapping[str, object]) -> str:
    """A call as a counterexample shows it: ``function(name=repr, ...)``."""
    shown = ", ".join(f"{name}={value!r}" for name, value in arguments.items())
    return f"{function}({shown})"


class RelatedCall(NamedTuple):
    """Another call a property judged with the counterexample's, as the report shows it;
    ``label`` names it: ``None`` for another rank (``rank N``), ``"against"`` for ``--against``."""

    rank: int | None
    call: str
    outcome: str
    label: str | None = None


@dataclass(frozen=True)
class Counterexample:
    """One call that broke a property, with everything needed to read and rerun it: ``rank``
    is ``None`` if the rank itself was the defect; ``expected`` and ``why`` say, in a line
    each, what the property required and what is wrong; ``got_rows`` and ``expected_rows``
    render the rows the slice covers and should cover; ``kind`` is the kind it shows of a
    property searched kind by kind; ``related`` the calls it was weighed against."""

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
    """A statement every DP-local slice must satisfy, and how to check it (docs/check-reference.md,
    "Adding properties"): ``modes`` are the engine states it judges (N/A where the contract
    reaches none; empty: any), ``kinds`` one strategy per kind of example, searched apart,
    instead of ``strategy``."""

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


#: The modules whose ``PROPERTIES`` make the built-in battery, in report order.
BUILTIN_MODULES = (
    "dpslice.check.battery",
    "dpslice.check.sync_property",
    "dpslice.check.cuda_property",
)

#: The module whose ``PROPERTIES`` compare a target with ``--against``.
AGAINST_MODULE = "dpslice.check.against_property"

#: Properties added with :func:`register`, after the built-in ones.
_ADDED: dict[str, Property[Any]] = {}


@functools.cache
def builtin() -> tuple[Property[Any], ...]:
    """The built-in battery, in order."""
    return tuple(
        prop for name in BUILTIN_MODULES for prop in importlib.import_module(name).PROPERTIES
    )


def register(prop: Property[Example]) -> Property[Example]:
    """Add ``prop`` to the battery, after the built-in properties and those added before.

    Raises:
        ValueError: a property of that name is already registered.
    """
    if any(known.name == prop.name for known in registered()):
        raise ValueError(f"a property named {prop.name!r} is already registered")
    _ADDED[prop.name] = prop
    return prop


def registered(*, compared: bool = False) -> tuple[Property[Any], ...]:
    """Every property of the battery, in order; ``compared``: with ``--against``'s."""
    against = importlib.import_module(AGAINST_MODULE).PROPERTIES if compared else ()
    return (*builtin(), *against, *_ADDED.values())


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
