"""Render a :class:`~dpslice.check.runner.CheckReport` as text or JSON.

The text is for people: a header, one row per property, then each shrunk
counterexample with the exact call, what it did, what was expected and a
command that reproduces it.  The JSON (schema :data:`JSON_SCHEMA`) carries the
same facts for machines; every value in it is JSON-native, arguments are reprs.
"""

from __future__ import annotations

import json
import platform
import shlex
from pathlib import Path
from typing import Any

import hypothesis
import torch

from dpslice._version import __version__
from dpslice.check.registry import Counterexample, registered
from dpslice.check.runner import CheckReport, PropertyResult, Verdict

__all__ = [
    "JSON_SCHEMA",
    "render_text",
    "reproduce_command",
    "to_json",
    "write_document",
    "write_json",
]

#: Identifies the layout of the JSON document; bumped on incompatible changes.
JSON_SCHEMA = "dpslice-check/1"

_NAME_WIDTH = 30


def reproduce_command(report: CheckReport, property_name: str | None = None) -> str:
    """The shell command that reruns ``report`` (one property, if named) with its seed.

    Without a property name it reruns what the report ran: every registered
    property, or the ones it selected.
    """
    words = [
        "dpslice",
        "check",
        report.target.spec,
        "--seed",
        str(report.seed),
        "--max-examples",
        str(report.max_examples),
    ]
    if report.target.device != "cpu":
        words += ["--device", report.target.device]
    if property_name is not None:
        words += ["--property", property_name]
    else:
        ran = [result.name for result in report.results]
        if ran != [prop.name for prop in registered()]:
            for name in ran:
                words += ["--property", name]
    return shlex.join(words)


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
        f"{counts[Verdict.FAIL]} failed, {counts[Verdict.NOT_APPLICABLE]} n/a, "
        f"{counts[Verdict.ERROR]} errors; {report.examples:,} layouts checked in "
        f"{report.seconds:.1f} s ({rate:,.0f} layouts/s)"
    )


def _row(result: PropertyResult) -> str:
    row = (
        f"{result.name:<{_NAME_WIDTH}} {result.verdict.value:<7} "
        f"{result.examples:>9} {result.seconds:>8.2f}s"
    )
    return f"{row}  {result.note}" if result.note else row


def _render_counterexample(report: CheckReport, result: PropertyResult) -> list[str]:
    counterexample = result.counterexample
    assert counterexample is not None
    outcome = counterexample.outcome.describe()
    if counterexample.got_rows is not None:
        outcome += f": rows {counterexample.got_rows}"
    rank = "(invalid)" if counterexample.rank is None else str(counterexample.rank)
    fields = [
        ("layout", repr(counterexample.layout)),
        ("rank", rank),
        ("call", _render_call(counterexample)),
        ("outcome", outcome),
        ("expected", counterexample.expected),
        ("why", counterexample.why),
        ("reproduce", reproduce_command(report, result.name)),
    ]
    return [
        f"FAIL {result.name}: {result.statement}",
        *(f"  {label:<10} {value}" for label, value in fields),
    ]


def render_text(report: CheckReport) -> str:
    """The human-readable report, ending with a newline."""
    target = report.target
    takes = ", ".join(sorted(target.accepts)) or "nothing from the convention"
    lines = [
        f"dpslice check {target.spec}",
        f"seed {report.seed}  max examples {report.max_examples}  device {target.device}",
        f"the target takes: {takes}",
        "",
        f"{'property':<{_NAME_WIDTH}} {'verdict':<7} {'examples':>9} {'time':>9}",
        *(_row(result) for result in report.results),
        "",
        _summary(report),
    ]
    for result in report.results:
        if result.verdict is Verdict.FAIL:
            lines += ["", *_render_counterexample(report, result)]
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
    }


def to_json(report: CheckReport) -> dict[str, Any]:
    """The report as a JSON-native dict (schema :data:`JSON_SCHEMA`)."""
    counts = dict.fromkeys(Verdict, 0)
    for result in report.results:
        counts[result.verdict] += 1
    return {
        "schema": JSON_SCHEMA,
        "target": report.target.spec,
        "seed": report.seed,
        "max_examples": report.max_examples,
        "device": report.target.device,
        "passed": report.passed,
        "reproduce": reproduce_command(report),
        "totals": {
            "properties": len(report.results),
            "passed": counts[Verdict.PASS],
            "failed": counts[Verdict.FAIL],
            "not_applicable": counts[Verdict.NOT_APPLICABLE],
            "errors": counts[Verdict.ERROR],
            "examples": report.examples,
            "seconds": round(report.seconds, 3),
        },
        "versions": {
            "dpslice": __version__,
            "torch": torch.__version__,
            "hypothesis": hypothesis.__version__,
            "python": platform.python_version(),
        },
        "properties": [
            {
                "name": result.name,
                "statement": result.statement,
                "verdict": result.verdict.value,
                "examples": result.examples,
                "seconds": round(result.seconds, 3),
                "note": result.note,
                "counterexample": (
                    _counterexample_json(result.counterexample)
                    if result.counterexample is not None
                    else None
                ),
            }
            for result in report.results
        ],
    }


def write_document(document: dict[str, Any], path: str | Path) -> None:
    """Write a JSON-native ``document`` to ``path`` (UTF-8, indented, newline-terminated).

    Raises:
        OSError: the file cannot be written.
    """
    Path(path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def write_json(report: CheckReport, path: str | Path) -> None:
    """Write :func:`to_json` to ``path`` (see :func:`write_document`).

    Raises:
        OSError: the file cannot be written.
    """
    write_document(to_json(report), path)
