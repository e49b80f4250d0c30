"""Rerun the ``dpslice check`` commands the documents quote and rewrite their reports.

Every console block of README.md and docs/*.md that shows a ``$ dpslice ...``
command (also ``$ python -m dpslice ...`` and ``$ time dpslice ...``) with its
output gets that output replaced by what the command prints now, run as shown
(its own ``--max-examples`` and ``--seed``, no cap).  The commands run in a
scratch directory holding the document's named Python blocks (a block whose
first line is ``# impl.py`` is written there as ``impl.py``, as the doc tests
do); a command that names a path of this repository (``tests/...``) runs in the
repository instead.  A ```json block right under a comment
``<!-- json report: dpslice check ... --json r.json -->`` is the file that
command writes, rendered by :func:`render_json` (a value the quote writes as
``"..."`` stays left out).

A quoted report that is trimmed (a line ``...`` stands for what was left out)
stays trimmed the same way: the new report keeps the parts the quoted one shows
(the header, the verdict table, the summary line, the counterexample of each
property shown, the verdict line, the times of ``time``), each counterexample
with the lines the quoted one shows (``layout``, ``call``, ``reproduce``...), and
``...`` stands for each run of parts left out.  A quote without ``...`` is
replaced whole.

The package's files appear as a run from the checkout shows them
(``dpslice/check/calls.py:50``); other absolute paths in the output are written
as placeholders: this checkout as ``/path/to/dpslice``, the scratch directory as
``/path/to``.  A command that needs a GPU (``--device cuda``, ``--backend nccl``)
is left as it is where torch sees none, unless its quote shows the error of
exactly that case.

The doc tests (``tests/doc_examples.py``) run the same commands through
:func:`rerun` and :func:`json_report` and fail when a quote differs from what
they print now, apart from what differs from one run to the next (:func:`masked`:
times, the examples a search took, versions).  This script is how to bring the
quotes back in step.

Usage::

    python scripts/doc_reports.py                  # every document, rewritten in place
    python scripts/doc_reports.py docs/check.md    # one document
    python scripts/doc_reports.py --diff           # show what would change; write nothing
    python scripts/doc_reports.py -k tensor_path   # only commands containing the text

Timings in a regenerated report are this machine's: say which machine ran them
where the document quotes them.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: Seconds one command may take.
TIMEOUT = 900

_FENCE = re.compile(r"^```(?P<language>[\w-]*)\n(?P<body>.*?)^```", re.MULTILINE | re.DOTALL)
_FILE_COMMENT = re.compile(r"#\s*(?P<name>[\w./-]+\.py)\s*$")
_REPO_DIRS = ("tests/", "benchmarks/", "requirements/", "docs/", "dpslice/", "scripts/")
_ELLIPSIS = "..."
_SECTION_STARTS = (
    ("header", re.compile(r"^dpslice check\b")),
    ("error", re.compile(r"^dpslice: error:")),
    ("table", re.compile(r"^property +verdict\b")),
    ("summary", re.compile(r"^\d[\d,]* propert(?:y|ies):")),
    ("incomplete", re.compile(r"^incomplete:")),
    ("block {}", re.compile(r"^(?:FAIL|WARN|ERROR) ([a-z][a-z0-9_]*)\b")),
    ("verdict", re.compile(r"^(?:PASSED|FAILED|INTERRUPTED|INCOMPLETE)$")),
    ("time", re.compile(r"^real\s")),
)
_LABEL = re.compile(r"^  ([a-z][a-z ]*?)(?:\s{2,}|$)")


@dataclass
class Section:
    """A part of a report: its key (``table``, ``block sync_free``...) and its lines."""

    key: str
    lines: list[str] = field(default_factory=list)

    def labels(self) -> set[str]:
        """The labels of a counterexample's lines (``layout``, ``call``...)."""
        return {m[1] for m in map(_LABEL.match, self.lines) if m}


def sections(lines: list[str]) -> list[Section]:
    """``lines`` of a report cut into its parts; ``...`` lines are dropped."""
    parts: list[Section] = []
    for line in lines:
        if line.strip() == _ELLIPSIS:
            continue
        for key, pattern in _SECTION_STARTS:
            match = pattern.match(line)
            if match:
                parts.append(Section(key.format(*match.groups())))
                break
        else:
            if not parts:
                parts.append(Section("start"))
        parts[-1].lines.append(line)
    return parts


def _keep_labels(new: Section, shown: Section) -> list[str]:
    """``new``'s lines without the labelled lines whose label ``shown`` left out."""
    dropped = new.labels() - shown.labels()
    kept, dropping = [], False
    for line in new.lines:
        match = _LABEL.match(line)
        if match:
            dropping = match[1] in dropped
        elif not line.startswith("  "):
            dropping = False
        if not dropping:
            kept.append(line)
    return kept


def trimmed_like(new: list[str], shown: list[str]) -> list[str]:
    """``new`` cut to the parts ``shown`` quotes, ``...`` for each run left out."""
    if not any(line.strip() == _ELLIPSIS for line in shown):
        return strip_blank_ends(new)
    wanted = {section.key: section for section in sections(shown)}
    out: list[str] = []
    left_out = False
    for section in sections(new):
        if section.key not in wanted:
            left_out = True
            continue
        if left_out:
            out.append(_ELLIPSIS)
            left_out = False
        out += strip_blank_ends(_keep_labels(section, wanted[section.key]))
        if section.lines and not section.lines[-1].strip():
            out.append("")  # the blank line that ended the part
    if left_out:
        out.append(_ELLIPSIS)
    # A part trimmed of its trailing blank line still reads as its own paragraph.
    cleaned: list[str] = []
    for line in out:
        if line == _ELLIPSIS and cleaned and not cleaned[-1].strip():
            cleaned.pop()
        cleaned.append(line)
    return strip_blank_ends(cleaned)


def strip_blank_ends(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


@dataclass
class Quote:
    """One ``$ dpslice ...`` command of a console block and the output shown under it."""

    command: str
    first: int  # index in the block's lines of the output's first line
    end: int  # index after its last line
    output: list[str]


def quotes(body: list[str]) -> Iterator[Quote]:
    """The prompted commands of a console block, with the lines shown under each."""
    starts = [i for i, line in enumerate(body) if line.startswith("$ ")]
    for n, start in enumerate(starts):
        command, first = body[start][2:], start + 1
        while command.endswith("\\") and first < len(body):
            command = command[:-1].rstrip() + " " + body[first].strip()
            first += 1
        end = starts[n + 1] if n + 1 < len(starts) else len(body)
        yield Quote(command, first, end, body[first:end])


def dpslice_args(command: str) -> tuple[bool, list[str]] | None:
    """Whether the command is timed, and the arguments after ``dpslice``; None if no dpslice."""
    words = shlex.split(command, comments=True)
    timed = words[:1] == ["time"]
    words = words[1:] if timed else words
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        words = words[1:]
    if words[:1] == ["dpslice"]:
        return timed, words[1:]
    if words[:3] in (["python", "-m", "dpslice"], ["python3", "-m", "dpslice"]):
        return timed, words[3:]
    return None


def needs_gpu(args: list[str]) -> bool:
    """Whether the command needs a GPU (``--device cuda``, ``--backend nccl``)."""
    joined = " ".join(args)
    return "--device cuda" in joined or "--device=cuda" in joined or "nccl" in joined


def gpu_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def shows_no_gpu(output: list[str]) -> bool:
    """Whether a quote shows the usage error of a GPU command where torch sees no GPU."""
    return any(line.startswith("dpslice: error:") and "sees none here" in line for line in output)


def run(args: list[str], *, timed: bool, cwd: Path, scratch: Path) -> tuple[int, list[str]]:
    """The exit status and the report the command prints (stdout, ``time``'s lines).

    A usage error (exit status 2) reports on stderr: that is the report then.
    Paths are written as the documents write them (the module docstring says how).
    """
    argv = [sys.executable, "-m", "dpslice", *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYPOTHESIS_", "PYTEST_"))}
    if timed:
        shell = f"time ({shlex.join(argv)} 2>/dev/null)"
        done = subprocess.run(
            ["bash", "-c", shell], cwd=cwd, env=env, capture_output=True, text=True,
            timeout=TIMEOUT, check=False,
        )  # fmt: skip
        times = [line for line in done.stderr.splitlines() if re.match(r"(real|user|sys)\t", line)]
        text = done.stdout + "\n" + "\n".join(times)
    else:
        done = subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
        text = done.stdout if done.returncode != 2 else done.stderr
    return done.returncode, placeholders(text, scratch).rstrip("\n").splitlines()


def placeholders(text: str, scratch: Path) -> str:
    """``text`` with the package's files as a checkout shows them, other paths as placeholders."""
    text = text.replace(f"{ROOT}/dpslice/", "dpslice/").replace(str(ROOT), "/path/to/dpslice")
    return text.replace(str(scratch.resolve()), "/path/to")


def working_directory(command: str, scratch: Path) -> Path:
    """Where a quoted command runs: the repository if it names a path of it, else ``scratch``."""
    in_repo = any(word.startswith(_REPO_DIRS) for word in re.split(r"[\s:=]", command))
    return ROOT if in_repo else scratch


def rerun(quote: Quote, scratch: Path) -> tuple[int, list[str]]:
    """Run a quoted command as shown: its exit status and its report, trimmed like the quote."""
    parsed = dpslice_args(quote.command)
    assert parsed is not None, f"not a dpslice command: {quote.command}"
    timed, args = parsed
    status, output = run(args, timed=timed, cwd=working_directory(quote.command, scratch),
                         scratch=scratch)  # fmt: skip
    return status, trimmed_like(output, quote.output)


#: What differs from one run of the same command to the next: the time each part took,
#: how far a search went before it failed, the machine's versions.  Two reports of one
#: command are the same report when they agree with these masked.
_VOLATILE = (
    # a verdict row: its examples and its seconds
    (re.compile(r"^([a-z][a-z0-9_]* +(?:PASS|FAIL|WARN|N/A|ERROR)) +\d+ +\d+\.\d+s"), r"\1 # #s"),
    (
        re.compile(r"[\d,]+ layouts? checked in [\d.]+ s \([\d,]+ layouts/s\)"),
        "# layouts checked in # s (# layouts/s)",
    ),
    (re.compile(r"\(start-up [\d.]+ s\)"), "(start-up # s)"),
    (re.compile(r"^(real|user|sys)\t\S+$"), r"\1\t#"),
    (re.compile(r"torch \d[\w.+-]*"), "torch #"),
    # the JSON report's
    (re.compile(r'"(seconds|startup_seconds|examples)": [\d.]+'), r'"\1": #'),
    (re.compile(r'"(dpslice|torch|hypothesis|python|nccl)": "[^"]*"'), r'"\1": "#"'),
)


def masked(lines: list[str]) -> list[str]:
    """``lines`` with what differs between two runs of one command masked (``#``)."""
    out = []
    for line in lines:
        for pattern, replacement in _VOLATILE:
            line = pattern.sub(replacement, line)
        out.append(line.rstrip())
    return out


# -- JSON reports --------------------------------------------------------------------------

#: A quoted JSON report: the command that writes it, in a comment right above its block.
JSON_REPORT = re.compile(
    r"^<!-- json report: (?P<command>.+?) -->\n```json\n(?P<body>.*?)^```",
    re.MULTILINE | re.DOTALL,
)

#: The widest line of a rendered JSON report; a container that fits is written on one line.
JSON_WIDTH = 120


def render_json(value: object, indent: int = 0, lead: str = "") -> list[str]:
    """``value`` as JSON lines: one line where it fits in :data:`JSON_WIDTH`, else one entry a line.

    ``lead`` is what comes before it on its first line (its key).
    """
    pad = " " * indent
    flat = json.dumps(value, ensure_ascii=False)
    if not isinstance(value, (dict, list)) or not value or len(pad + lead + flat) <= JSON_WIDTH:
        return [pad + lead + flat]
    opening, closing = ("{", "}") if isinstance(value, dict) else ("[", "]")
    items = list(value.items()) if isinstance(value, dict) else [(None, v) for v in value]
    lines = [pad + lead + opening]
    for n, (key, item) in enumerate(items):
        inner = render_json(item, indent + 2, "" if key is None else json.dumps(key) + ": ")
        if n < len(items) - 1:
            inner[-1] += ","
        lines += inner
    return [*lines, pad + closing]


def trimmed_json(new: object, shown: object) -> object:
    """``new`` with every value the quote ``shown`` wrote as ``"..."`` left out the same way."""
    if shown == _ELLIPSIS:
        return _ELLIPSIS
    if isinstance(new, dict) and isinstance(shown, dict):
        return {key: trimmed_json(value, shown.get(key)) for key, value in new.items()}
    if isinstance(new, list) and isinstance(shown, list) and len(new) == len(shown):
        return [trimmed_json(a, b) for a, b in zip(new, shown, strict=True)]
    return new


def json_report(command: str, shown: str, scratch: Path) -> list[str]:
    """Run ``command`` (it names ``--json PATH``) and render the file it writes like ``shown``."""
    parsed = dpslice_args(command)
    assert parsed is not None, f"not a dpslice command: {command}"
    _, args = parsed
    assert "--json" in args, f"the command writes no JSON: {command}"
    written = scratch / args[args.index("--json") + 1]
    written.unlink(missing_ok=True)
    status, output = run(args, timed=False, cwd=working_directory(command, scratch),
                         scratch=scratch)  # fmt: skip
    if not written.is_file():
        raise RuntimeError(f"`{command}` exited {status} and wrote no JSON:\n" + "\n".join(output))
    document = json.loads(placeholders(written.read_text(encoding="utf-8"), scratch))
    return render_json(trimmed_json(document, json.loads(shown)))


# -- the documents ---------------------------------------------------------------------------


def _write_named_block(body: str, scratch: Path) -> None:
    lines = body.splitlines()
    named = _FILE_COMMENT.match(lines[0].strip()) if lines else None
    if named:
        target = scratch / named["name"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)


def regenerate(path: Path, *, match: str | None, gpu: bool) -> str:
    """``path``'s text with every quoted dpslice report rerun."""
    text = path.read_text(encoding="utf-8")
    scratch = Path(tempfile.mkdtemp(prefix="dpslice-doc-reports-"))
    name = path.relative_to(ROOT)
    replacements: list[tuple[int, int, str]] = []
    try:
        for block in _FENCE.finditer(text):
            if block["language"] == "python":
                _write_named_block(block["body"], scratch)
            if block["language"] != "console":
                continue
            body = block["body"].splitlines()
            new_body = list(body)
            for quote in reversed(list(quotes(body))):
                parsed = dpslice_args(quote.command)
                if parsed is None or not any(line.strip() for line in quote.output):
                    continue
                if match is not None and match not in quote.command:
                    continue
                line = text.count("\n", 0, block.start()) + 2 + quote.first
                if needs_gpu(parsed[1]) and not gpu and not shows_no_gpu(quote.output):
                    print(f"{name}:{line}: needs a GPU, left as it is")
                    continue
                print(f"{name}:{line}: {quote.command}", flush=True)
                _, shown = rerun(quote, scratch)
                # keep a blank line before the next command of the block
                tail = [""] if quote.end < len(body) and not body[quote.end - 1].strip() else []
                new_body[quote.first : quote.end] = shown + tail
            start, end = block.span("body")
            replacements.append((start, end, "\n".join(new_body) + "\n"))
        for report in JSON_REPORT.finditer(text):
            if match is not None and match not in report["command"]:
                continue
            print(f"{name}:{text.count(chr(10), 0, report.start()) + 1}: {report['command']}")
            rendered = json_report(report["command"], report["body"], scratch)
            start, end = report.span("body")
            replacements.append((start, end, "\n".join(rendered) + "\n"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for start, end, new in sorted(replacements, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("documents", nargs="*", type=Path, help="default: README.md, docs/*.md")
    parser.add_argument("--diff", action="store_true", help="print a diff; write nothing")
    parser.add_argument("-k", dest="match", help="only the commands that contain this text")
    options = parser.parse_args(argv)
    documents = [p.resolve() for p in options.documents] or DOCUMENTS
    gpu = gpu_available()
    failed = False
    for path in documents:
        old = path.read_text(encoding="utf-8")
        new = regenerate(path, match=options.match, gpu=gpu)
        if new == old:
            continue
        if options.diff:
            name = str(path.relative_to(ROOT))
            sys.stdout.writelines(
                difflib.unified_diff(old.splitlines(True), new.splitlines(True), name, name)
            )
        elif path.read_text(encoding="utf-8") != old:
            # Edited while its commands ran: writing would undo that edit.
            print(f"{path.relative_to(ROOT)} changed while its commands ran; not rewritten")
            failed = True
        else:
            path.write_text(new, encoding="utf-8")
            print(f"rewrote {path.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
