"""The battery's job, run in a runner worker (:mod:`dpslice.runner.worker`): load the
target, run the properties, tell the supervisor every step as a :class:`Note`.

A ``BaseException`` from the target is caught here and is the property's FAIL;
a hang or an ended process is judged by the supervisor from the call in flight.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from dpslice.isolation import DEFAULT_MAX_EXAMPLES

if TYPE_CHECKING:
    from dpslice.check.results import PropertyResult
    from dpslice.check.target import Target
    from dpslice.layout import DPLayout, SliceCall
    from dpslice.runner.worker import Channel

__all__ = ["BatteryJob", "Loaded", "PropertyDone", "PropertyStarted", "Refused", "run", "warm"]


@dataclass(frozen=True)
class BatteryJob:
    """What one worker runs.

    Attributes:
        spec: the target, as named.
        device: where ``global_num_tokens_gpu`` is built.
        properties: the properties to run, in order; ``None``: every registered one.
        exclude: properties not to run.
        limit: run only the first ``limit`` of them; :class:`Loaded` still names them
            all (the plan), so that other workers can take the rest.
        max_examples, seed, strict: as for :func:`~dpslice.check.runner.run_property`.
        load_options: more keywords for :func:`~dpslice.check.target.load_target`.
    """

    spec: str
    device: str = "cpu"
    properties: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    limit: int | None = None
    max_examples: int = DEFAULT_MAX_EXAMPLES
    seed: int = 0
    strict: bool = False
    load_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Refused:
    """The job cannot run: a property that does not exist (``usage``), or a bad target."""

    message: str
    usage: bool = False


@dataclass(frozen=True)
class Loaded:
    """The target (without its function), the properties planned, the versions it runs with."""

    target: Target
    plan: tuple[str, ...]
    versions: dict[str, str]


@dataclass(frozen=True)
class PropertyStarted:
    result: PropertyResult


@dataclass(frozen=True)
class PropertyDone:
    result: PropertyResult


def warm() -> None:
    """What a spare worker imports while it waits: the battery, and torch with it."""
    from dpslice.check.registry import builtin

    builtin()


def run(channel: Channel, job: BatteryJob) -> None:
    from dpslice.check import calls
    from dpslice.check.inflight import (
        aborted_counterexample,
        aborted_result,
        exited_at_import,
        portable_result,
        portable_target,
        raised_base,
        started_result,
    )
    from dpslice.check.outcome import safe_repr
    from dpslice.check.registry import registered, select
    from dpslice.check.results import versions
    from dpslice.check.runner import run_property
    from dpslice.check.target import load_target
    from dpslice.errors import (
        BadTargetError,
        DeviceError,
        InvalidContractError,
        UnknownPropertyError,
    )

    try:  # the names first: a typo is a usage error before the target is imported
        chosen = (
            select(job.properties)
            if job.properties is not None
            else registered(compared=job.load_options.get("against") is not None)
        )
        select(job.exclude)
    except UnknownPropertyError as exc:
        return channel.note(Refused(str(exc), usage=True))
    chosen = tuple(prop for prop in chosen if prop.name not in job.exclude)
    if not chosen:
        return channel.note(
            Refused(
                "every property is excluded: nothing would run; exclude fewer, or drop --property",
                usage=True,
            )
        )
    channel.loading(job.spec)
    try:
        target = load_target(job.spec, device=job.device, **job.load_options)
    except (BadTargetError, DeviceError, InvalidContractError) as exc:
        return channel.note(Refused(str(exc)))
    except BaseException as exc:  # sys.exit() or the like at import: a bad target too
        return channel.note(Refused(exited_at_import(job.spec, exc)))
    channel.note(Loaded(portable_target(target), tuple(prop.name for prop in chosen), versions()))

    last: list[Any] = [None, 0]  # the call in flight, and calls in this property

    class Recorder:
        def calling(self, layout: DPLayout, call: SliceCall, gpu_counts: list[int]) -> None:
            last[0] = (layout, call, gpu_counts)
            last[1] += 1
            channel.calling(last[0])

        def returned(self) -> None:
            channel.returned()

    calls.call_observer = Recorder()
    channel.keep_modules()
    for prop in chosen[: job.limit]:
        started = started_result(prop.name, prop.statement, tier=prop.tier)
        channel.note(PropertyStarted(started))
        last[:] = [None, 0]
        began = time.perf_counter()
        try:
            result = run_property(
                prop, target, max_examples=job.max_examples, seed=job.seed, strict=job.strict
            )
        except BaseException as exc:
            seconds = time.perf_counter() - began
            if last[0] is None:
                note = f"the check itself broke, before calling the target ({safe_repr(exc)})"
                result = replace(started, seconds=seconds, note=note)
            else:
                found = aborted_counterexample(target, last[0], raised_base(exc, target))
                result = aborted_result(started, found, examples=last[1], seconds=seconds)
        result = portable_result(result)
        try:
            channel.note(PropertyDone(result))
        except Exception as exc:  # a result that cannot be pickled: say so instead
            note = f"its counterexample could not be reported ({exc!r})"
            channel.note(PropertyDone(replace(result, counterexamples=(), note=note)))
    return None
