"""Render a :class:`~dpslice.check.results.CheckReport` as text, JSON or JUnit XML
(docs/check-reference.md).  Every line of the text and every string of the JSON is
:func:`bounded`."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

from dpslice.check.outcome import OutcomeKind
from dpslice.check.outcome import bounded as _cut
from dpslice.check.registry import Counterexample, render_call
from dpslice.check.results import CheckReport, PropertyResult, Stop, Verdict, versions
from dpslice.check.target import Target
from dpslice.isolation import DEFAULT_CALL_TIMEOUT, DEFAULT_RUN_TIMEOUT

#: The JSON document's layout, for the battery and the round trip; bumped on incompatible changes.
JSON_SCHEMA = "dpslice-check/4"

_NAME_WIDTH = 30

#: Room past MAX_TEXT for the note of a text bounded where it was captured: not cut twice.
_NOTE_ROOM = 64


def bounded(text: str) -> str:
    """``text`` cut to :data:`~dpslice.check.outcome.MAX_TEXT` characters, with a note of
    how many more there were."""
    return _cut(text, _NOTE_ROOM)


def _bounded_lines(text: str) -> str:
    return "\n".join(map(bounded, text.split("\n")))


def _bounded_json(value: Any) -> Any:
    if isinstance(value, str):
        return bounded(value)
    if isinstance(value, dict):
        return {key: _bounded_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_bounded_json(item) for item in value]
    return value


def reproduce_command(report: CheckReport, property_name: str | None = None) -> str:
    """The shell command that reruns ``report`` with its seed: one property, if named,
    else what the report ran."""
    words = ["dpslice", "check", report.target.spec]
    if report.target.against is not None:
        words += ["--against", report.target.against.spec]
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
    if report.target.contract_spec is not None:
        words += ["--contract", report.target.contract_spec]
    if report.strict:
        words.append("--strict")
    for name in (property_name,) if property_name is not None else report.properties or ():
        words += ["--property", name]
    return shlex.join(words)


def _call(counterexample: Counterexample) -> str:
    return render_call(counterexample.function, counterexample.arguments)


def render_row(result: PropertyResult) -> str:
    """The property's row of the report's table."""
    row = (
        f"{result.name:<{_NAME_WIDTH}} {result.verdict.value:<7} "
        f"{result.examples:>9} {result.seconds:>8.2f}s"
    )
    return bounded(f"{row}  {result.note}" if result.note else row)


def render_result(report: CheckReport, result: PropertyResult, *, verbose: bool = False) -> str:
    """One property's block of the text report, no trailing newline: a FAIL's every
    counterexample in full, a WARN's one line per kind (in full when ``verbose``), what broke
    for an ERROR, ``""`` for PASS and N/A."""
    if result.verdict is Verdict.ERROR:
        return bounded(f"ERROR {result.name}: {result.note}")
    if result.verdict not in (Verdict.FAIL, Verdict.WARN):
        return ""
    lines = [f"{result.verdict.value} {result.name} ({result.tier.value}): {result.statement}"]
    examples = result.counterexamples
    # What each kind of a property searched kind by kind shows.
    compared = any(other.label == "against" for ce in examples for other in ce.related)
    found = "refused differently" if compared else "not refused"
    reproduce = reproduce_command(report, result.name)
    if (
        result.verdict is Verdict.WARN
        and not verbose
        and all(ce.kind is not None for ce in examples)
    ):
        width = max((len(str(ce.kind)) for ce in examples), default=0)
        lines.append(f"  {found}, {len(examples)} {'kind' if len(examples) == 1 else 'kinds'}:")
        for ce in examples:
            against = "".join(
                f"; against: {other.outcome.split(': ', 1)[0]}"
                for other in ce.related
                if other.label == "against"
            )
            lines.append(f"    {ce.kind:<{width}}  {_call(ce)} -> {_brief(ce)}{against}")
        lines += [
            f"  reproduce  {reproduce}",
            "  every counterexample in full: --verbose, or the JSON report",
        ]
        return _bounded_lines("\n".join(lines))
    if len(examples) > 1:
        kinds = "; ".join(str(ce.kind) for ce in examples)
        lines.append(f"  {found}, {len(examples)} kinds: {kinds}")
    for index, ce in enumerate(examples):
        outcome = ce.outcome.describe()
        if ce.got_rows is not None:
            outcome += f": rows {ce.got_rows}"
        fields = [
            *([("kind", ce.kind)] if ce.kind else []),
            ("layout", repr(ce.layout)),
            ("rank", "(invalid)" if ce.rank is None else str(ce.rank)),
            ("call", _call(ce)),
            ("outcome", outcome),
            ("expected", ce.expected),
            ("why", ce.why),
            *(
                (other.label or f"rank {other.rank}", f"{other.call} -> {other.outcome}")
                for other in ce.related
            ),
            ("reproduce", reproduce),
        ]
        if index:
            lines.append("")
        lines += [f"  {label:<10} {value}" for label, value in fields]
    return _bounded_lines("\n".join(lines))


def _brief(counterexample: Counterexample) -> str:
    """What the call did, without the message and location :meth:`Outcome.describe` adds."""
    outcome = counterexample.outcome
    if outcome.kind is OutcomeKind.RETURNED:
        return f"returned {outcome.slice}"
    if outcome.kind is OutcomeKind.MALFORMED:
        return f"returned {outcome.value}, not a slice"
    verb = "raised deliberate" if outcome.kind is OutcomeKind.DELIBERATE else "crashed with"
    return f"{verb} {outcome.error}"


def takes_line(target: Target) -> str:
    """The header's line of the convention's parameters the target takes."""
    return f"the target takes: {', '.join(sorted(target.accepts)) or 'nothing from the convention'}"


def _header(report: CheckReport) -> list[str]:
    target, trip = report.target, report.round_trip
    judged = [f"contract {report.contract.name}: {report.contract.summary}", takes_line(target)]
    if trip is None:
        against = f" --against {target.against.spec}" if target.against is not None else ""
        return [
            f"dpslice check {target.spec}{against}",
            f"seed {report.seed}  max examples {report.max_examples}  device {target.device}",
            *judged,
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
        *judged,
    ]


def render_text(report: CheckReport, *, verbose: bool = False) -> str:
    """The human-readable report, ending with a newline (``verbose``: see :func:`render_result`)."""
    counts = Counter(result.verdict for result in report.results)
    rate = report.examples / report.seconds if report.seconds > 0 else 0.0
    strict = report.strict
    lines = [
        *_header(report),
        "",
        f"{'property':<{_NAME_WIDTH}} {'verdict':<7} {'examples':>9} {'time':>9}",
        *map(render_row, report.results),
        "",
        f"{len(report.results)} {'property' if len(report.results) == 1 else 'properties'}: "
        f"{counts[Verdict.PASS]} passed, {counts[Verdict.FAIL]} failed "
        f"(hazard{' and hardening, --strict' if strict else 's'}), "
        f"{counts[Verdict.WARN]} warned (hardening), {counts[Verdict.NOT_APPLICABLE]} n/a, "
        f"{counts[Verdict.ERROR]} errors; {report.examples:,} layouts checked in "
        f"{report.seconds:.1f} s ({rate:,.0f} layouts/s)",
    ]
    verdict = "PASSED" if report.passed else "FAILED"
    if report.stopped is not None:
        not_run = f"; not run: {', '.join(report.not_run)}" if report.not_run else ""
        lines.append(f"incomplete: {report.stopped.reason}{not_run}")
        verdict = "INTERRUPTED" if report.stopped is Stop.INTERRUPTED else "INCOMPLETE"
    for result in report.results:
        block = render_result(report, result, verbose=verbose)
        lines += ["", block] if block else []
    lines += ["", verdict]
    return _bounded_lines("\n".join(lines)) + "\n"


def _counterexample_json(counterexample: Counterexample) -> dict[str, Any]:
    outcome, expected_slice = counterexample.outcome, counterexample.expected_slice
    return {
        "layout": repr(counterexample.layout),
        "rank": counterexample.rank,
        "call": {
            "function": counterexample.function,
            "kwargs": {name: repr(value) for name, value in counterexample.arguments.items()},
            "text": _call(counterexample),
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
            "slice": list(expected_slice) if expected_slice is not None else None,
            "rows": counterexample.expected_rows,
        },
        "why": counterexample.why,
        "kind": counterexample.kind,
        "related": [
            {
                "rank": other.rank,
                "call": other.call,
                "outcome": other.outcome,
                **({"label": other.label} if other.label is not None else {}),
            }
            for other in counterexample.related
        ],
    }


def _result_json(result: PropertyResult) -> dict[str, Any]:
    counterexamples = [_counterexample_json(ce) for ce in result.counterexamples]
    return {
        "name": result.name,
        "statement": result.statement,
        "verdict": result.verdict.value,
        "tier": result.tier.value,
        "examples": result.examples,
        "seconds": round(result.seconds, 3),
        "note": result.note,
        "counterexample": counterexamples[0] if counterexamples else None,
        "counterexamples": counterexamples,
    }


def to_json(report: CheckReport) -> dict[str, Any]:
    """The report as a JSON-native dict (schema :data:`JSON_SCHEMA`), every string bounded."""
    counts = Counter(result.verdict for result in report.results)
    trip = report.round_trip
    document: dict[str, Any] = {
        "schema": JSON_SCHEMA,
        "mode": report.mode,
        "target": report.target.spec,
        "against": report.target.against.spec if report.target.against is not None else None,
        "seed": report.seed,
        "max_examples": report.max_examples,
        "device": report.target.device,
        "contract": report.contract.name,
        "strict": report.strict,
        "passed": report.passed,
        "complete": report.complete,
        "stopped": report.stopped.value if report.stopped is not None else None,
        "incomplete_reason": report.stopped.reason if report.stopped is not None else None,
        "not_run": list(report.not_run),
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
        "round_trip": None
        if trip is None
        else {
            "dp_size": trip.dp_size,
            "backend": trip.backend,
            "devices": list(trip.devices),
            "startup_seconds": round(trip.startup_seconds, 3),
            "call_timeout": trip.call_timeout,
            "run_timeout": trip.run_timeout,
            "nccl": trip.nccl,
        },
        "versions": report.versions or versions(),
        "properties": [_result_json(result) for result in report.results],
    }
    bounded_document: dict[str, Any] = _bounded_json(document)
    return bounded_document


def _in_place(path: Path) -> bool:
    """Whether ``path`` is written as it is: ``/dev/stdout``, a FIFO, nothing to rename over."""
    return path.exists() and not path.is_file() and not path.is_dir()


def _destination(path: Path) -> Path:
    """The file a report for ``path`` lands in: through a symlink, the file it points at
    (the link stays a link, even one that points at no file yet)."""
    return path if _in_place(path) else Path(os.path.realpath(path))


def output_problem(path: str | Path, *, keep: Path | None = None) -> str | None:
    """Why a report cannot be written to ``path`` (nor replace ``keep``, the target's
    source), asked before a run; ``None`` if it can."""
    path = Path(path)
    if path.is_dir():
        return "it is a directory; name a file, e.g. a report.json in it"
    if _in_place(path):
        return None if os.access(path, os.W_OK) else "it is not writable; name a file you can"
    destination = _destination(path)
    if keep is not None and destination == keep.resolve():
        return (
            f"it is the target's source file {keep}, which the report would replace; "
            "name another file"
        )
    folder = destination.parent
    if not folder.is_dir():
        return f"directory {str(folder)!r} does not exist"
    if destination.exists() and not os.access(destination, os.W_OK):
        return "the file is not writable (its permissions); name another file"
    # The report is written beside its file, then renamed over it.
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"directory {str(folder)!r} is not writable; name a file in one you can write"
    return None


def _write_atomically(text: str, path: str | Path) -> None:
    """Write ``text`` to ``path`` (UTF-8), whole or not at all: beside it (or the file a
    symlink points at), then renamed over it; ``/dev/stdout`` or a FIFO directly."""
    path = _destination(Path(path))
    if _in_place(path):
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


def write_document(document: dict[str, Any], path: str | Path) -> None:
    """Write a JSON-native ``document`` to ``path``: strict JSON, indented, whole or not at
    all; :class:`OSError` if it cannot, :class:`ValueError` for a non-finite float."""
    _write_atomically(json.dumps(document, indent=2, allow_nan=False) + "\n", path)


def write_json(report: CheckReport, path: str | Path) -> None:
    """Write :func:`to_json` to ``path``, whole or not at all (:class:`OSError` if it cannot)."""
    write_document(to_json(report), path)


# Characters XML 1.0 cannot hold at all, not even escaped; a target's error message may.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

#: The report's facts a JUnit document carries as ``<property>``, as its JSON has them.
_JUNIT_PROPERTIES = (
    "target seed max_examples device contract strict passed complete incomplete_reason reproduce"
)


def _xml_text(text: str) -> str:
    return _NOT_XML.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def _testcase(report: CheckReport, result: PropertyResult, classname: str) -> ET.Element:
    case = ET.Element(
        "testcase", classname=classname, name=result.name, time=f"{result.seconds:.3f}"
    )
    if result.verdict is Verdict.PASS:
        return case
    block = _xml_text(render_result(report, result, verbose=True))
    if result.verdict is Verdict.WARN:
        ET.SubElement(case, "system-out").text = block
        return case
    failed = result.verdict is Verdict.FAIL
    first = result.counterexample if failed else None
    fallback = result.statement if failed else result.verdict.value
    message = _xml_text(bounded(first.why if first is not None else result.note or fallback))
    tag = {Verdict.FAIL: "failure", Verdict.ERROR: "error"}.get(result.verdict, "skipped")
    element = ET.SubElement(case, tag, message=message)
    if failed:
        element.set("type", result.tier.value)
    element.text = block or None
    return case


def to_junit_xml(report: CheckReport) -> str:
    """The report as a JUnit XML document: one ``<testcase>`` per property, a property
    not run included (docs/check-reference.md)."""
    classname = f"dpslice.{report.contract.name}"
    cases = [_testcase(report, result, classname) for result in report.results]
    if report.stopped is not None:
        for name in report.not_run:
            case = ET.Element("testcase", classname=classname, name=name, time="0.000")
            ET.SubElement(case, "skipped", message=f"not run: {report.stopped.reason}")
            cases.append(case)

    def count(tag: str) -> str:
        return str(sum(case.find(tag) is not None for case in cases))

    counts = {
        "tests": str(len(cases)),
        "failures": count("failure"),
        "errors": count("error"),
        "skipped": count("skipped"),
        "time": f"{report.seconds:.3f}",
    }
    suites = ET.Element("testsuites", {"name": "dpslice check", **counts})
    suite = ET.SubElement(
        suites, "testsuite", {"name": _xml_text(f"dpslice check {report.target.spec}"), **counts}
    )
    properties = ET.SubElement(suite, "properties")
    document = to_json(report)
    for name in _JUNIT_PROPERTIES.split():
        value = document[name]
        text = value if isinstance(value, str) else "" if value is None else json.dumps(value)
        ET.SubElement(properties, "property", name=name, value=_xml_text(text))
    suite.extend(cases)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def write_junit_xml(report: CheckReport, path: str | Path) -> None:
    """Write :func:`to_junit_xml` to ``path``, whole or not at all (:class:`OSError` if it
    cannot)."""
    _write_atomically(to_junit_xml(report), path)
