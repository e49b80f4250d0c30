"""Render a :class:`~dpslice.check.runner.CheckReport` as text or JSON.

The text is for people: a header, one row per property, then each shrunk
counterexample with the exact call, what it did, what was expected and a
command that reproduces it.  The JSON (schema :data:`JSON_SCHEMA`) carries the
same facts for machines; every value in it is JSON-native, arguments are reprs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import tempfile
from pathlib import Path
from typing import Any

from dpslice.check.registry import Counterexample
from dpslice.check.results import CheckReport, PropertyResult, Verdict, versions
from dpslice.contracts import DEFAULT_CONTRACT
from dpslice.isolation import DEFAULT_CALL_TIMEOUT, DEFAULT_RUN_TIMEOUT

__all__ = [
    "JSON_SCHEMA",
    "render_row",
    "render_text",
    "reproduce_command",
    "to_json",
    "versions",
    "write_document",
    "write_json",
]

#: Identifies the layout of the JSON document; bumped on incompatible changes.
#: One schema for the battery and the round trip (``"mode"`` says which).
JSON_SCHEMA = "dpslice-check/3"

_NAME_WIDTH = 30


def reproduce_command(report: CheckReport, property_name: str | None = None) -> str:
    """The shell command that reruns ``report`` (one property, if named) with its seed.

    Without a property name it reruns what the report ran: the whole
    battery, the properties it was asked for, or the round trip.
    """
    words = ["dpslice", "check", report.target.spec]
    trip = report.round_trip
    if trip is not None:
        words += ["--distributed", str(trip.dp_size), "--backend", trip.backend]
    words += ["--seed", str(report.seed), "--max-examples", str(report.max_examples)]
    if trip is not None:
        if trip.call_timeout != DEFAULT_CALL_TIMEOUT:
            words += ["--timeout", f"{trip.call_timeout:g}"]
        if trip.run_timeout != DEFAULT_RUN_TIMEOUT:
            words += ["--run-timeout", f"{trip.run_timeout:g}"]
        return shlex.join(words)
    if report.target.device != "cpu":
        words += ["--device", report.target.device]
    if report.contract != DEFAULT_CONTRACT:
        words += ["--contract", _contract_word(report)]
    if report.strict:
        words.append("--strict")
    if property_name is not None:
        words += ["--property", property_name]
    else:
        for name in report.properties or ():
            words += ["--property", name]
    return shlex.join(words)


def _contract_word(report: CheckReport) -> str:
    """How ``--contract`` names the report's contract."""
    from dpslice.contracts import spec_of

    return spec_of(report.contract)


def _render_call(counterexample: Counterexample) -> str:
    arguments = ", ".join(f"{name}={value!r}" for name, value in counterexample.arguments.items())
    return f"{counterexample.function}({arguments})"


def _summary(report: CheckReport) -> str:
    counts = dict.fromkeys(Verdict, 0)
    for result in report.results:
        counts[result.verdict] += 1
    rate = report.examples / report.seconds if report.seconds > 0 else 0.0
    return (
        f"{len(report.results)} {'property' if len(report.results) == 1 else 'properties'}: "
        f"{counts[Verdict.PASS]} passed, "
        f"{counts[Verdict.FAIL]} failed (hazard{'' if report.strict else 's'}"
        f"{' and hardening, --strict' if report.strict else ''}), "
        f"{counts[Verdict.WARN]} warned (hardening), {counts[Verdict.NOT_APPLICABLE]} n/a, "
        f"{counts[Verdict.ERROR]} errors; {report.examples:,} layouts checked in "
        f"{report.seconds:.1f} s ({rate:,.0f} layouts/s)"
    )


def render_row(result: PropertyResult) -> str:
    """The property's row of the report's table (live progress prints it as it finishes)."""
    return _row(result)


def _row(result: PropertyResult) -> str:
    row = (
        f"{result.name:<{_NAME_WIDTH}} {result.verdict.value:<7} "
        f"{result.examples:>9} {result.seconds:>8.2f}s"
    )
    return f"{row}  {result.note}" if result.note else row


def _render_counterexamples(report: CheckReport, result: PropertyResult) -> list[str]:
    label = "WARN" if result.verdict is Verdict.WARN else "FAIL"
    lines = [f"{label} {result.name} ({result.tier.value}): {result.statement}"]
    if len(result.counterexamples) > 1:
        kinds = "; ".join(str(ce.kind) for ce in result.counterexamples)
        lines.append(f"  not refused, {len(result.counterexamples)} kinds: {kinds}")
    for index, counterexample in enumerate(result.counterexamples):
        if index:
            lines.append("")
        lines += _render_counterexample(report, result, counterexample)
    return lines


def _render_counterexample(
    report: CheckReport, result: PropertyResult, counterexample: Counterexample
) -> list[str]:
    outcome = counterexample.outcome.describe()
    if counterexample.got_rows is not None:
        outcome += f": rows {counterexample.got_rows}"
    rank = "(invalid)" if counterexample.rank is None else str(counterexample.rank)
    fields = [
        *([("kind", counterexample.kind)] if counterexample.kind else []),
        ("layout", repr(counterexample.layout)),
        ("rank", rank),
        ("call", _render_call(counterexample)),
        ("outcome", outcome),
        ("expected", counterexample.expected),
        ("why", counterexample.why),
        ("reproduce", reproduce_command(report, result.name)),
    ]
    return [f"  {label:<10} {value}" for label, value in fields]


def _header(report: CheckReport) -> list[str]:
    target, trip = report.target, report.round_trip
    takes = ", ".join(sorted(target.accepts)) or "nothing from the convention"
    if trip is None:
        return [
            f"dpslice check {target.spec}",
            f"seed {report.seed}  max examples {report.max_examples}  device {target.device}",
            f"contract {report.contract.name}: {report.contract.summary}",
            f"the target takes: {takes}",
        ]
    devices = ", ".join(sorted(set(trip.devices)))
    gathered = (
        f"round trip: {trip.dp_size} ranks gather through {trip.backend} on {devices} "
        f"(start-up {trip.startup_seconds:.1f} s)"
        if devices
        else f"round trip: {trip.dp_size} ranks through {trip.backend}; the group did not start"
    )
    return [
        f"dpslice check {target.spec} --distributed {trip.dp_size} --backend {trip.backend}",
        f"seed {report.seed}  max examples {report.max_examples}  timeout "
        f"{trip.call_timeout:g} s per call, {trip.run_timeout:g} s per run",
        gathered,
        f"contract {report.contract.name}: {report.contract.summary}",
        f"the target takes: {takes}",
    ]


def render_text(report: CheckReport) -> str:
    """The human-readable report, ending with a newline."""
    lines = [*_header(report), ""]
    lines += [
        f"{'property':<{_NAME_WIDTH}} {'verdict':<7} {'examples':>9} {'time':>9}",
        *(_row(result) for result in report.results),
        "",
        _summary(report),
    ]
    for result in report.results:
        if result.verdict in (Verdict.FAIL, Verdict.WARN):
            lines += ["", *_render_counterexamples(report, result)]
        elif result.verdict is Verdict.ERROR:
            lines += ["", f"ERROR {result.name}: {result.note}"]
    lines += ["", "PASSED" if report.passed else "FAILED"]
    return "\n".join(lines) + "\n"


def _counterexample_json(counterexample: Counterexample) -> dict[str, Any]:
    outcome = counterexample.outcome
    return {
        "layout": repr(counterexample.layout),
        "rank": counterexample.rank,
        "call": {
            "function": counterexample.function,
            "kwargs": {name: repr(value) for name, value in counterexample.arguments.items()},
            "text": _render_call(counterexample),
        },
        "outcome": {
            "kind": outcome.kind.value,
            "slice": list(outcome.slice) if outcome.slice is not None else None,
            "value": outcome.value,
            "problem": outcome.problem,
            "error": outcome.error,
            "message": outcome.message,
            "location": outcome.location,
            "text": outcome.describe(),
            "rows": counterexample.got_rows,
        },
        "expected": {
            "text": counterexample.expected,
            "slice": (
                list(counterexample.expected_slice)
                if counterexample.expected_slice is not None
                else None
            ),
            "rows": counterexample.expected_rows,
        },
        "why": counterexample.why,
        "kind": counterexample.kind,
    }


def _round_trip_json(report: CheckReport) -> dict[str, Any] | None:
    trip = report.round_trip
    if trip is None:
        return None
    return {
        "dp_size": trip.dp_size,
        "backend": trip.backend,
        "devices": list(trip.devices),
        "startup_seconds": round(trip.startup_seconds, 3),
        "call_timeout": trip.call_timeout,
        "run_timeout": trip.run_timeout,
        "nccl": trip.nccl,
    }


def to_json(report: CheckReport) -> dict[str, Any]:
    """The report as a JSON-native dict (schema :data:`JSON_SCHEMA`)."""
    counts = dict.fromkeys(Verdict, 0)
    for result in report.results:
        counts[result.verdict] += 1
    return {
        "schema": JSON_SCHEMA,
        "mode": report.mode,
        "target": report.target.spec,
        "seed": report.seed,
        "max_examples": report.max_examples,
        "device": report.target.device,
        "contract": report.contract.name,
        "strict": report.strict,
        "passed": report.passed,
        "reproduce": reproduce_command(report),
        "totals": {
            "properties": len(report.results),
            "passed": counts[Verdict.PASS],
            "failed": counts[Verdict.FAIL],
            "warned": counts[Verdict.WARN],
            "not_applicable": counts[Verdict.NOT_APPLICABLE],
            "errors": counts[Verdict.ERROR],
            "examples": report.examples,
            "seconds": round(report.seconds, 3),
        },
        "round_trip": _round_trip_json(report),
        "versions": report.versions or versions(),
        "properties": [
            {
                "name": result.name,
                "statement": result.statement,
                "verdict": result.verdict.value,
                "tier": result.tier.value,
                "examples": result.examples,
                "seconds": round(result.seconds, 3),
                "note": result.note,
                "counterexample": (
                    _counterexample_json(result.counterexample)
                    if result.counterexample is not None
                    else None
                ),
                "counterexamples": [_counterexample_json(ce) for ce in result.counterexamples],
            }
            for result in report.results
        ],
    }


def write_document(document: dict[str, Any], path: str | Path) -> None:
    """Write a JSON-native ``document`` to ``path`` (UTF-8, indented, newline-terminated).

    The JSON is strict (no ``NaN`` or ``Infinity``), and the file appears whole
    or not at all: it is written beside ``path`` and renamed over it.

    Raises:
        OSError: the file cannot be written.
        ValueError: the document holds a non-finite float.
    """
    text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    path = Path(path)
    if path.exists() and not path.is_file():  # /dev/stdout, a FIFO: nothing to rename over
        path.write_text(text, encoding="utf-8")
        return
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(handle, 0o666 & ~umask)  # as open() would create it, not mkstemp's 0600
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_json(report: CheckReport, path: str | Path) -> None:
    """Write :func:`to_json` to ``path`` (see :func:`write_document`).

    Raises:
        OSError: the file cannot be written.
    """
    write_document(to_json(report), path)
