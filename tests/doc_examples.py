"""Run the examples of README.md and docs/*.md as tests (Sybil).

The root ``conftest.py`` hands :data:`pytest_collect_file` to pytest, and
``testpaths`` in ``pyproject.toml`` names README.md and docs/, so the plain
test command (``python -m pytest``) collects every document: one item per
example, named by file and line.

* **Python blocks** run in order, in one namespace per document.  A block
  whose first line is a file-name comment (``# my_engine_slice.py``,
  ``# my_engine/dp.py``) is also written, under that name, into the
  document's scratch directory, where the document's commands run: a later
  ``dpslice check my_engine_slice.py:local_slice`` checks that very block.
  An example shows all the set-up it needs, so that it runs as pasted: no
  document hides any in an ``<!-- invisible-code-block -->`` (``tests/test_docs.py``).
* **Console blocks** (``console`` and ``sh``): each command, with or without
  a ``$`` prompt, ``\\`` continuations joined.

  - ``dpslice ...`` (or ``python -m dpslice ...``, after ``VAR=value``
    prefixes or the shell's ``time``) runs in the document's scratch
    directory.  When the block shows the command's output (a report), the
    command runs as shown, with its own budget, ``--distributed`` included,
    and must print that report: the exit status it implies (``dpslice:
    error:`` 2, ``FAILED`` 1, ``PASSED`` 0) and the same text, trimmed as the
    quote is trimmed, apart from what differs from one run to the next (the
    times, the examples a search took, versions: ``doc_reports.masked``).
    ``python scripts/doc_reports.py`` rewrites a quote that went stale.
    A block that runs such a command is marked ``slow`` (a worker process
    that imports torch per command): the README's test command leaves it to
    CI's slow stage, and the document's named Python blocks above it are
    written into the scratch directory before it runs, evaluated or not.
    Without output shown the command only has to reach a verdict (exit
    status 0 or 1, not a usage error or a bad target), and runs with
    ``--max-examples`` capped at ``DPSLICE_DOCS_MAX_EXAMPLES`` (default 50)
    so the documents cost seconds.
  - Not run: ``--distributed`` without output shown (it starts a process
    group per command; ``tests/test_distributed.py`` runs the round trip),
    and ``--device cuda`` or ``--backend nccl`` where torch sees no GPU,
    unless the block shows the output of exactly that case.
  - Any other command (pip, tox, pytest, bash, torchrun, a venv) is not run:
    it installs, builds environments or takes minutes.  The repository paths
    it names (``tests/...``, ``requirements/...``, ...) must exist.  The
    dpslice commands after it in the same block are not run either, since
    they may need what it installs.

* **JSON reports**: a ```json block right under ``<!-- json report: COMMAND
  -->`` must be the file COMMAND writes (its ``--json PATH``), as
  ``scripts/doc_reports.py`` renders it, compared as a console report is.

A documented ``@given`` test runs under a ``docs`` Hypothesis profile that is
Hypothesis's own default (its deadline and example budget included, as a user
who pastes the example meets them), loaded for each document and undone after
it.  ``tests/test_user_project.py`` runs every documented test with ``pytest``
in a project of its own.

``<!-- skip: next "why" -->`` skips the next example; the reason is shown.

A report quoted under a ``$ dpslice ...`` command belongs in a console block,
so that it runs: ``tests/test_docs.py`` fails on one shown in any other block,
and on a quoted report that names a property the battery no longer has.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from sybil import Document, Example, Region, Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser
from sybil.parsers.markdown.lexers import FencedCodeBlockLexer

ROOT = Path(__file__).resolve().parent.parent

#: The cap on ``--max-examples`` for the documents' ``dpslice check`` commands.
MAX_EXAMPLES = int(os.environ.get("DPSLICE_DOCS_MAX_EXAMPLES", "50"))

#: Seconds one documented command may take before the example fails.
COMMAND_TIMEOUT = 300

_SCRATCH = "_dpslice_docs_dir"
_FILE_COMMENT = re.compile(r"#\s*(?P<name>[\w./-]+\.py)\s*$")
_PYTHON_BLOCK = re.compile(r"^```python\n(?P<code>.*?)^```", re.MULTILINE | re.DOTALL)
_REPO_DIRS = ("tests/", "benchmarks/", "requirements/", "docs/", "dpslice/", ".ci/", "scripts/")


_PROFILE = "_dpslice_docs_profile"


def _load_doc_reports() -> Any:
    """``scripts/doc_reports.py``, which regenerates the quoted reports these tests compare."""
    spec = importlib.util.spec_from_file_location("doc_reports", ROOT / "scripts/doc_reports.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


doc_reports = _load_doc_reports()

# What a user who pastes an example meets first is Hypothesis's own defaults
# (its deadline included): the documents' examples run under them, unchanged.
settings.register_profile("docs", parent=settings.get_profile("default"))


def _setup(namespace: dict[str, Any]) -> None:
    namespace[_SCRATCH] = Path(tempfile.mkdtemp(prefix="dpslice-docs-"))
    # A documented @given test runs under Hypothesis's defaults, not the suite's profile.
    namespace[_PROFILE] = settings.get_current_profile_name()
    settings.load_profile("docs")


def _teardown(namespace: dict[str, Any]) -> None:
    settings.load_profile(namespace.pop(_PROFILE))
    shutil.rmtree(namespace.pop(_SCRATCH), ignore_errors=True)


class FilePythonCodeBlockParser(PythonCodeBlockParser):
    """Sybil's Python block parser, which also writes a named block to a file."""

    def __call__(self, document: Document) -> Iterable[Region]:
        for region in super().__call__(document):
            run = region.evaluator
            assert run is not None

            def evaluate(example: Example, run: Any = run) -> Any:
                match = _FILE_COMMENT.match(str(example.parsed).lstrip().splitlines()[0])
                if match:
                    path = example.namespace[_SCRATCH] / match["name"]
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(str(example.parsed))
                return run(example)

            region.evaluator = evaluate
            yield region


class Command:
    """One documented command and the output the document shows under it."""

    def __init__(self, text: str, line: int) -> None:
        self.text = text
        self.line = line
        self.output: list[str] = []

    def words(self) -> list[str]:
        try:
            return shlex.split(self.text, comments=True)
        except ValueError:
            return self.text.split()


def _commands(source: str, first_line: int) -> Iterator[Command]:
    lines = source.splitlines()
    prompted = any(line.startswith("$ ") for line in lines)
    current: Command | None = None
    pending = ""
    for number, line in enumerate(lines, start=first_line):
        if pending:
            pending += " " + line.strip()
        elif prompted and line.startswith("$ "):
            pending = line[2:]
        elif prompted:
            if current is not None:
                current.output.append(line)
            continue
        elif line.strip() and not line.lstrip().startswith("#"):
            pending = line
        else:
            continue
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        if current is not None:
            yield current
        current, pending = Command(pending.strip(), number), ""
    if current is not None:
        yield current


def _gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _dpslice_args(words: list[str]) -> list[str] | None:
    """The arguments after ``dpslice`` when the command runs dpslice, else None."""
    while words and (words[0] == "time" or re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0])):
        words = words[1:]  # VAR=value prefixes, and the shell's `time`
    if words[:1] == ["dpslice"]:
        return words[1:]
    if len(words) >= 3 and words[0] in ("python", "python3") and words[1:3] == ["-m", "dpslice"]:
        return words[3:]
    return None


def _capped(args: list[str]) -> list[str]:
    if args[:1] != ["check"] or {"--list", "--list-contracts", "--version"} & set(args):
        return args
    if "--max-examples" in args:
        index = args.index("--max-examples") + 1
        args = list(args)
        args[index] = str(min(int(args[index]), MAX_EXAMPLES))
        return args
    return [*args, "--max-examples", str(MAX_EXAMPLES)]


def _check_paths(command: Command) -> None:
    for word in command.words():
        for part in word.split("="):
            if part.startswith(_REPO_DIRS) and not list(ROOT.glob(part.rstrip("/"))):
                raise AssertionError(
                    f"line {command.line}: {part!r} does not exist: {command.text}"
                )


def _expected_status(shown: list[str]) -> tuple[int, ...]:
    """The exit status the output a document shows implies."""
    if any(line.startswith("dpslice: error:") for line in shown):
        return (2,)
    if any(line.strip() == "FAILED" for line in shown):
        return (1,)
    if any(line.strip() == "PASSED" for line in shown):
        return (0,)
    return (0, 1)


def _skipped(text: str, start: int) -> bool:
    """Whether the block at ``start`` follows a ``<!-- skip: next ... -->``."""
    return text[:start].rstrip().rpartition("\n")[2].startswith("<!-- skip: next")


def _write_files(text: str, before: int, scratch: Path) -> None:
    """Write each Python block of ``text`` above ``before`` whose first line names a file
    (and that is not skipped) under that name into ``scratch``, in the document's order:
    a later block of the same name replaces an earlier one, as it does for a reader."""
    for block in _PYTHON_BLOCK.finditer(text, 0, before):
        match = _FILE_COMMENT.match(block["code"].lstrip().partition("\n")[0])
        if match and not _skipped(text, block.start()):
            path = scratch / match["name"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block["code"])


def _runs(command: Command, args: list[str]) -> bool:
    """Whether the documented dpslice command ``args`` runs here."""
    shown = [line for line in command.output if line.strip()]
    if shown:
        # Not where the output shown is another machine's: with a GPU, or without one.
        return not (doc_reports.needs_gpu(args) and _gpu() == doc_reports.shows_no_gpu(shown))
    if "--distributed" in args:
        return False  # a process group per command: tests/test_distributed.py runs the round trip
    # A GPU command, with no GPU here and no output shown for that case, does not run.
    return not doc_reports.needs_gpu(args) or _gpu()


def _run(command: Command, args: list[str], scratch: Path) -> None:
    said = f"line {command.line}: `{command.text}`"
    if any(line.strip() for line in command.output):
        _compare(command, scratch, said)
        return
    done = subprocess.run(
        [sys.executable, "-m", "dpslice", *_capped(args)],
        cwd=scratch,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    printed = f"\n--- stdout\n{done.stdout[:4000]}\n--- stderr\n{done.stderr[-2000:]}"
    assert done.returncode in (0, 1), f"{said} exited {done.returncode}, expected 0 or 1{printed}"


def _compare(command: Command, scratch: Path, said: str) -> None:
    """Run a command whose output the document shows, as shown, and compare the two."""
    quote = doc_reports.Quote(command.text, 0, len(command.output), command.output)
    status, regenerated = doc_reports.rerun(quote, scratch)
    shown = doc_reports.strip_blank_ends(command.output)
    expected = _expected_status(command.output)
    assert status in expected, (
        f"{said} exited {status}, and the output shown implies "
        + " or ".join(map(str, expected))
        + ":\n"
        + "\n".join(regenerated)
    )
    _same_report(doc_reports.masked(shown), doc_reports.masked(regenerated), said)


def _same_report(shown: list[str], regenerated: list[str], said: str) -> None:
    if shown != regenerated:
        diff = "\n".join(
            difflib.unified_diff(shown, regenerated, "shown", "printed now", lineterm="")
        )
        raise AssertionError(
            f"{said} prints another report than the document shows (times, the examples a "
            "search took and versions aside; `#` marks them); rerun "
            f"`python scripts/doc_reports.py` to rewrite it:\n{diff}"
        )


class ConsoleParser:
    """``console`` and ``sh`` blocks: run the dpslice commands, check the others' paths."""

    def __init__(self) -> None:
        self.lexer = FencedCodeBlockLexer(language=r"console|sh")

    def __call__(self, document: Document) -> Iterable[Region]:
        for region in self.lexer(document):
            region.parsed = region.lexemes["source"]
            region.evaluator = self.evaluate
            yield region

    def evaluate(self, example: Example) -> None:
        scratch = example.namespace[_SCRATCH]
        commands = list(self.commands(example))
        if any(args is not None for _, args in commands):
            # What the commands check is the document's own code, as written above them,
            # whether or not this run evaluated those blocks (``-m slow`` runs these alone).
            _write_files(example.document.text, example.start, scratch)
        for command, args in commands:
            if args is None:
                _check_paths(command)
            else:
                _run(command, args, scratch)

    @staticmethod
    def commands(example: Example) -> Iterator[tuple[Command, list[str] | None]]:
        """The block's commands: each dpslice command that runs, with its arguments, and
        each other command (its paths are checked; it is not run), with None."""
        after_unrun = False  # a command after one not run may depend on it (an install)
        for command in _commands(str(example.parsed), example.line + 1):
            args = _dpslice_args(command.words())
            if args is None:
                after_unrun = True
                yield command, None
            elif not after_unrun and _runs(command, args):
                yield command, args


class JsonReportParser:
    """A ```json block under ``<!-- json report: COMMAND -->``: the file COMMAND writes."""

    def __call__(self, document: Document) -> Iterable[Region]:
        for match in doc_reports.JSON_REPORT.finditer(document.text):
            yield Region(match.start(), match.end(), match, self.evaluate)

    def evaluate(self, example: Example) -> None:
        match = example.parsed
        said = f"line {example.line}: the JSON `{match['command']}` writes"
        regenerated = doc_reports.json_report(
            match["command"], match["body"], example.namespace[_SCRATCH]
        )
        shown = match["body"].rstrip("\n").splitlines()
        _same_report(doc_reports.masked(shown), doc_reports.masked(regenerated), said)


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[Any]) -> None:
    """Mark ``slow`` each block that runs a dpslice command (a console block, or a JSON
    report's command): a worker process that imports torch per command, about a second
    and a half of CPU each.  CI's slow stage runs them (``-m slow``); the README's test
    command runs the rest of the documents."""
    for item in items:
        example = getattr(item, "example", None)
        if not isinstance(example, Example):
            continue
        evaluator = getattr(example.region.evaluator, "__func__", None)
        if evaluator is JsonReportParser.evaluate or (
            evaluator is ConsoleParser.evaluate
            and not _skipped(example.document.text, example.start)  # its reason is shown
            and any(args is not None for _, args in ConsoleParser.commands(example))
        ):
            item.add_marker(pytest.mark.slow)


DOCUMENTS = Sybil(
    parsers=[SkipParser(), FilePythonCodeBlockParser(), ConsoleParser(), JsonReportParser()],
    path=str(ROOT),
    patterns=["README.md", "docs/*.md"],
    setup=_setup,
    teardown=_teardown,
    name="docs",
)

pytest_collect_file = DOCUMENTS.pytest()
