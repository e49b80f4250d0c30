"""Run properties against a target with Hypothesis and collect the verdicts.

Each property is a seeded ``@given`` test without database or deadline, so a seed
reproduces a run.  For throughput an example is a batch of up to :data:`MAX_BATCH`
layouts, in runs of :data:`RUN_EXAMPLES` examples with derived seeds until
``max_examples`` layouts are checked.  Batches are not shrunk: once one fails, the
property runs again one layout per example, and that run shrinks.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import hypothesis
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir, storage_directory
from hypothesis.errors import Flaky

from dpslice.check.registry import Counterexample, Property, Tier, registered, select
from dpslice.check.results import (
    CheckReport,
    PropertyResult,
    Verdict,
    check_max_examples,
    check_seed,
    versions,
)
from dpslice.check.target import (
    Target,
    check_device,
    load_against,
    load_target,
    target_from_callable,
)
from dpslice.contracts import Contract
from dpslice.errors import CheckConfigError
from dpslice.isolation import DEFAULT_MAX_EXAMPLES

__all__ = [
    "MAX_BATCH",
    "RERUN_FACTOR",
    "RUN_EXAMPLES",
    "hypothesis_storage",
    "run_check",
    "run_property",
]

#: The most layouts drawn in one example: far below Hypothesis's limit of choices.
MAX_BATCH = 50

#: Hypothesis examples per search run: Hypothesis mutates earlier examples
#: from its tenth on, and a mutant batch repeats most of its parent's layouts.
RUN_EXAMPLES = 10

#: After a batch fails, the search one layout per example checks up to this many times
#: ``max_examples`` layouts to meet the failure again; else (rare) the failing batch is
#: shrunk instead, which takes 10,000 to 20,000 checks.
RERUN_FACTOR = 4

_SHORT_BATCH_ODDS = 64


class _Falsified(Exception):
    def __init__(self, counterexample: Counterexample) -> None:
        super().__init__(counterexample.why)
        self.counterexample = counterexample


_SEARCH = (Phase.explicit, Phase.generate)
_SHRINK = (*_SEARCH, Phase.shrink)


def _error_note(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    message = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    if isinstance(exc, Flaky):
        return f"the target gave different outcomes for the same call ({message})"
    return f"the check itself broke, not the target ({message})"


def _batches(strategy: st.SearchStrategy[Any], size: int) -> st.SearchStrategy[list[Any]]:
    """Batches of ``size`` examples; one in :data:`_SHORT_BATCH_ODDS` is one example, so
    that Hypothesis's simplest example is one layout, not ``size`` copies of it."""
    full = st.lists(strategy, min_size=size, max_size=size)
    if size == 1:
        return full
    one = st.lists(strategy, min_size=1, max_size=1)

    @st.composite
    def batch(draw: st.DrawFn) -> list[Any]:
        return draw(full if draw(st.integers(0, _SHORT_BATCH_ODDS - 1)) else one)

    return batch()


def _batch_size(layouts: int, max_batch: int) -> int:
    """The batch size (at most ``max_batch``) for a run of :data:`RUN_EXAMPLES` examples
    to check ``layouts``."""
    return max(1, min(max_batch, -(-(layouts - 1) // (RUN_EXAMPLES - 1))))


@dataclass
class _Search:
    """How one search of a property ended: its calls, and a counterexample or an error."""

    examples: int = 0
    counterexample: Counterexample | None = None
    error: str | None = None


def run_property(
    prop: Property[Any], target: Target, *, max_examples: int, seed: int, strict: bool = False
) -> PropertyResult:
    """Run one property against ``target``; what the target does, or what breaks in the
    check (ERROR), is a result, never raised.  A property with kinds searches each with an
    even share of ``max_examples``; a hardening property's failure WARNs unless ``strict``."""
    started = time.perf_counter()
    examples = 0

    def result(verdict: Verdict, **extra: Any) -> PropertyResult:
        return PropertyResult(
            name=prop.name,
            statement=prop.statement,
            verdict=verdict,
            examples=examples,
            seconds=time.perf_counter() - started,
            tier=prop.tier,
            **extra,
        )

    try:
        # The property's own set-up calls no target: what fails here is the check's.
        reason = prop.not_applicable(target)
        if reason is not None:
            return result(Verdict.NOT_APPLICABLE, note=reason)
        how = prop.describe(target) if prop.describe is not None else None
        strategies: dict[str | None, st.SearchStrategy[Any]] = (
            {None: prop.strategy(target)}
            if prop.kinds is None
            else dict(prop.kinds(target).items())
        )
    except Exception as exc:
        return result(Verdict.ERROR, note=_error_note(exc))
    share = max_examples
    if prop.kinds is not None:  # at least 20, for a kind to be met and shrunk
        share = max(min(max_examples, 20), -(-max_examples // max(1, len(strategies))))
    searches = {
        kind: _search(prop, strategy, target, share, seed) for kind, strategy in strategies.items()
    }
    examples = sum(search.examples for search in searches.values())
    errors = [search.error for search in searches.values() if search.error is not None]
    if errors:
        return result(Verdict.ERROR, note=errors[0])
    found = tuple(
        replace(search.counterexample, kind=kind)
        for kind, search in searches.items()
        if search.counterexample is not None
    )
    if not found:
        return result(Verdict.PASS, note=how)
    verdict = Verdict.WARN if prop.tier is Tier.HARDENING and not strict else Verdict.FAIL
    return result(verdict, counterexamples=found, note=how)


def _search(
    prop: Property[Any],
    strategy: st.SearchStrategy[Any],
    target: Target,
    max_examples: int,
    seed: int,
) -> _Search:
    """Search ``strategy`` for a counterexample to ``prop``, then shrink it."""
    outcome = _Search()

    # The search in progress checks layouts up to this count; a failure lifts it,
    # so that the shrinking and the final replay check everything.
    limit: int | None = None

    def check_in_turn(batch_examples: list[Any]) -> None:
        nonlocal limit
        for example in batch_examples:
            if limit is not None and outcome.examples >= limit:
                return
            outcome.examples += 1
            counterexample = prop.check(target, example)
            if counterexample is not None:
                limit = None
                raise _Falsified(counterexample)

    def run(size: int, run_seed: int, phases: tuple[Phase, ...]) -> None:
        test: Callable[[], None] = settings(
            max_examples=RUN_EXAMPLES,
            database=None,
            deadline=None,
            derandomize=False,
            report_multiple_bugs=False,
            print_blob=False,
            verbosity=Verbosity.quiet,
            phases=phases,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )(given(_batches(strategy, size))(check_in_turn))
        hypothesis.seed(run_seed)(test)()

    last_run = (1, seed)  # the batch size and seed of the latest run

    def search(layouts: int, max_batch: int, phases: tuple[Phase, ...]) -> None:
        """Check ``layouts`` more layouts, in runs of the largest batches that split them."""
        nonlocal limit, last_run
        stop = limit = outcome.examples + layouts
        planned = -(-layouts // (1 + (RUN_EXAMPLES - 1) * max_batch))
        runs = 0
        try:
            while outcome.examples < stop:
                before = outcome.examples
                per_run = -(-(stop - outcome.examples) // max(1, planned - runs))
                # Run 0 uses the seed as given; later runs seeds no other (seed, run) pair
                # gets, for seeds below 2**32 (the range dpslice check draws from).
                last_run = (_batch_size(per_run, max_batch), seed + runs * 2**32)
                run(*last_run, phases)
                runs += 1
                if outcome.examples == before:
                    break  # Hypothesis drew nothing valid; another run would not either
        finally:
            limit = None

    try:
        try:
            search(max_examples, MAX_BATCH, _SEARCH)
        except _Falsified:
            failing_run = last_run
            search(RERUN_FACTOR * max_examples, 1, _SHRINK)
            run(*failing_run, _SHRINK)
            outcome.error = (
                "the target failed a batch of layouts, then passed the same batches "
                "(its outcome depends on more than the call)"
            )
    except _Falsified as failure:
        # Raised from Hypothesis's final replay: the shrunk, minimal example.
        outcome.counterexample = failure.counterexample
    except Exception as exc:
        outcome.error = _error_note(exc)
    return outcome


def _properties(
    chosen: Sequence[str | Property[Any]] | None, *, compared: bool = False
) -> tuple[Property[Any], ...]:
    if chosen is None:
        return registered(compared=compared)
    if isinstance(chosen, str):
        raise TypeError(f"properties={chosen!r} must be a sequence of names, not one string")
    return tuple(prop if isinstance(prop, Property) else select([prop])[0] for prop in chosen)


@contextlib.contextmanager
def hypothesis_storage() -> Iterator[None]:
    """Hypothesis's storage (it caches constants even without a database) in a temporary
    directory for the duration, unless ``HYPOTHESIS_STORAGE_DIRECTORY`` names one: a
    check leaves the working directory as it was."""
    if os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        yield
        return
    previous = storage_directory(intent_to_write=False).home_directory
    with tempfile.TemporaryDirectory(prefix="dpslice-hypothesis-") as directory:
        set_hypothesis_home_dir(directory)
        try:
            yield
        finally:
            set_hypothesis_home_dir(previous)


def run_check(
    target: str | Target | Callable[..., object] = "dpslice.reference:dp_local_slice",
    *,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    seed: int | None = None,
    properties: Sequence[str | Property[Any]] | None = None,
    device: str | None = None,
    contract: str | Contract | None = None,
    strict: bool = False,
    against: str | Target | Callable[..., object] | None = None,
) -> CheckReport:
    """Check ``target`` against the property battery (docs/check-reference.md).

    Args:
        target: ``package.module:function``, ``path/to/file.py:function``, a
            loaded :class:`Target` or the callable itself.
        max_examples: layouts the search checks per property, before shrinking.
        seed: Hypothesis seed; a random one (recorded in the report) if ``None``.
        properties: names or :class:`Property` objects; ``None``: all registered.
        device: ``"cpu"`` or ``"cuda"``; ``None`` keeps a loaded :class:`Target`'s, else cpu.
        contract: a preset name, ``module:NAME`` or a :class:`~dpslice.contracts.Contract`;
            ``None`` keeps a loaded :class:`Target`'s, else the one the target names.
        strict: a hardening property's failure FAILs instead of WARNing.
        against: an implementation to compare ``target`` with (:func:`load_against`);
            the comparison properties join the battery.

    Hypothesis's storage: see :func:`hypothesis_storage`.

    Raises:
        BadTargetError: the target (or ``against``) cannot be loaded or called with the
            convention.
        DeviceError: an unknown device, or ``"cuda"`` without a GPU.
        UnknownPropertyError: a property name is not registered.
        InvalidContractError: ``contract`` names no contract.
        CheckConfigError: ``max_examples`` is below 1, ``seed`` is no int >= 0, or
            ``properties`` names none.
    """
    check_max_examples(max_examples)
    if seed is not None:
        check_seed(seed)
    if properties is not None and not isinstance(properties, str) and len(properties) == 0:
        raise CheckConfigError(
            "properties=[] names no property to run, and a run of none would pass; name "
            "some, or pass None for the whole battery"
        )
    if isinstance(target, Target):
        if device is not None and device != target.device:
            target = replace(target, device=check_device(device))
        if contract is not None:
            target = target.judged_as(contract)
    elif isinstance(target, str):
        target = load_target(target, device=device or "cpu", contract=contract)
    else:
        target = target_from_callable(target, device=device or "cpu", contract=contract)
    if against is not None:
        target = load_against(against, target)
    chosen = _properties(properties, compared=target.against is not None)
    if seed is None:
        seed = secrets.randbelow(2**32)
    started = time.perf_counter()
    with hypothesis_storage():
        results = tuple(
            run_property(prop, target, max_examples=max_examples, seed=seed, strict=strict)
            for prop in chosen
        )
    return CheckReport(
        target=target,
        seed=seed,
        max_examples=max_examples,
        results=results,
        seconds=time.perf_counter() - started,
        strict=strict,
        properties=None if properties is None else tuple(prop.name for prop in chosen),
        versions=versions(),
    )
