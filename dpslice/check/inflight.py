"""The call in flight, and the FAIL of a call that never came back with a value or an error.

A runner worker records every call of the target just before it runs, as a plain
:data:`CallRecord`; if the call hangs, ends the process or raises a ``BaseException``,
:func:`aborted_counterexample` rebuilds the call's arguments from it for the report.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, NoReturn

from dpslice.check.calls import valid_rank
from dpslice.check.outcome import (
    Outcome,
    OutcomeKind,
    error_location,
    exception_text,
    is_tensor,
    safe_repr,
)
from dpslice.check.registry import Counterexample
from dpslice.check.results import PropertyResult, Verdict
from dpslice.check.target import Target
from dpslice.errors import BadTargetError
from dpslice.layout import DPLayout, SliceCall
from dpslice.runner.protocol import Ending, How, Limit, Stopped

#: A call about to run: its layout, the call, and the counts of its GPU tensor.
CallRecord = tuple[DPLayout, SliceCall, list[int]]


@dataclass(frozen=True)
class Shown:
    """An argument as the worker rendered it, in place of a value that may be the target's
    own object (the parent never imports the target): the report only shows it."""

    text: str

    def __repr__(self) -> str:
        return self.text


def _in_worker(**_: object) -> NoReturn:
    raise RuntimeError(
        "this target was loaded in the check's worker process; the report only describes it"
    )


def portable_target(target: Target) -> Target:
    """``target`` without its function, safe to send to a process that must not import it."""
    against = None if target.against is None else portable_target(target.against)
    return replace(target, function=_in_worker, against=against)


def portable_counterexample(found: Counterexample) -> Counterexample:
    """``found`` with its arguments as :class:`Shown` reprs and no bounds: safe to pickle."""
    shown = {name: Shown(safe_repr(value)) for name, value in found.arguments.items()}
    return replace(found, arguments=shown, outcome=replace(found.outcome, bounds=None))


def portable_result(result: PropertyResult) -> PropertyResult:
    """``result`` with its counterexamples' arguments as :class:`Shown` reprs and no bounds."""
    portable = tuple(map(portable_counterexample, result.counterexamples))
    return replace(result, counterexamples=portable) if portable else result


@dataclass(frozen=True)
class AbortedCall(Outcome):
    """A call that neither returned nor raised an ``Exception``: it hung past the call timeout,
    ended the process or raised a ``BaseException``, which an engine's serving loop would
    not survive either.  ``message`` says which."""

    kind: OutcomeKind = OutcomeKind.INCIDENTAL

    def describe(self) -> str:
        where = f" at {self.location}" if self.location else ""
        return f"{self.message}{where}"


def ended(ending: Ending) -> AbortedCall:
    """The process ended in the call: with an exit code, or killed by a signal."""
    if ending.signal is not None:
        verb = "crashed" if ending.crashed else "ended"
        because = f" ({ending.cause})" if ending.cause else ""
        message = f"{verb} the process: killed by {ending.signal}{because}"
        return AbortedCall(error=ending.signal, message=message)
    message = (
        f"ended the process with exit code {ending.exitcode} (sys.exit or os._exit), which "
        "would end an engine's process"
    )
    return AbortedCall(error="exit", message=message)


def _raised(error: str, text: str, location: str | None = None) -> AbortedCall:
    why = "a BaseException that is no Exception (it would end an engine's process)"
    return AbortedCall(error=error, message=f"raised {text}, {why}", location=location)


def raised_base(exc: BaseException, target: Target) -> AbortedCall:
    """The call raised ``exc``, a ``BaseException`` that is no ``Exception``."""
    text = exception_text(exc)
    name = type(exc).__name__
    return _raised(name, f"{name}: {text}" if text else name, error_location(exc, target))


def aborted(stopped: Stopped, killed: str) -> AbortedCall:
    """What the call in flight did, from how the runner stopped its worker."""
    if stopped.how is How.HUNG:
        message = f"did not return within {stopped.seconds:g} s (--timeout); {killed} was killed"
        return AbortedCall(error="Timeout", message=message)
    if stopped.how is How.ENDED:
        assert stopped.ending is not None
        return ended(stopped.ending)
    assert stopped.broke is not None  # the job raised out of the call: its last line
    line = stopped.broke.last_line
    return _raised(line.partition(":")[0], line)


def aborted_counterexample(
    target: Target, record: CallRecord, outcome: AbortedCall
) -> Counterexample:
    """The counterexample of the recorded call, which did ``outcome``: the one builder, for
    the battery and the round trip."""
    layout, call, gpu_counts = record
    # Built on the CPU (the parent never touches a GPU); the device is shown as it was.
    arguments = replace(target, device="cpu").arguments(call, gpu_counts)
    device = {"cuda": "cuda:0"}.get(target.device, target.device)
    shown: dict[str, object] = {}
    for name, value in arguments.items():
        text = safe_repr(value)
        tensor = is_tensor(value) and name == "global_num_tokens_gpu"
        if tensor and device != "cpu" and text.endswith(")"):
            text = f"{text[:-1]}, device='{device}')"
        shown[name] = Shown(text)
    return Counterexample(
        layout=layout,
        rank=valid_rank(layout, call.dp_rank),
        function=target.name,
        arguments=shown,
        outcome=outcome,
        expected="the call returns, or raises an Exception, within the call timeout",
        why="the target did not come back from the call with a slice or an Exception",
    )


def aborted_result(
    started: PropertyResult, found: Counterexample, *, examples: int, seconds: float
) -> PropertyResult:
    """The FAIL of the property ``started`` describes, whatever its tier: an engine's
    process would not survive the call either."""
    return replace(
        started,
        verdict=Verdict.FAIL,
        examples=examples,
        seconds=seconds,
        counterexamples=(found,),
        note=None,
    )


def stopped_text(stopped: Stopped) -> str:
    """What a worker the runner stopped did, in words."""
    if stopped.how is How.HUNG:
        flag = "--import-timeout" if stopped.limit is Limit.LOAD else "--timeout"
        return f"did not finish within {stopped.seconds:g} s ({flag})"
    if stopped.how is How.ENDED:
        return f"ended the process ({stopped.ending})"
    assert stopped.broke is not None
    return f"broke ({stopped.broke.last_line})"


#: What every target whose import did not come back is told.
_IMPORT_RULE = "a target must import without exiting, crashing or blocking"


def exited_at_import(spec: str, exc: BaseException) -> str:
    """A target whose import raised a ``BaseException`` (``sys.exit()``): a bad target."""
    return f"importing the target {spec} raised {type(exc).__name__}({exc}); {_IMPORT_RULE}"


def import_failed(spec: str, what: str) -> BadTargetError:
    """A target whose import did ``what`` (hung, ended the process): a bad target."""
    return BadTargetError(
        f"importing the target {spec} {what}; {_IMPORT_RULE} (raise --import-timeout if it is "
        "merely slow)"
    )


def started_result(name: str, statement: str, **extra: Any) -> PropertyResult:
    """A property that has started: what a result of it keeps whatever happens next."""
    return PropertyResult(
        name=name, statement=statement, verdict=Verdict.ERROR, examples=0, seconds=0.0, **extra
    )
