"""Rerun the ``dpslice check`` commands the documents quote and rewrite their reports.

Every console block of README.md and docs/*.md that shows a ``$ dpslice ...``
command (also ``$ python -m dpslice ...`` and ``$ time dpslice ...``) with its
output gets that output replaced by what the command prints now, run as shown
(its own ``--max-examples`` and ``--seed``, no cap).  The commands run in a
scratch directory holding the document's named Python blocks (a block whose
first line is ``# impl.py`` is written there as ``impl.py``, as the doc tests
do); a command that names a path of this repository (``tests/...``) runs in the
repository instead.

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
``/path/to``.  A command that
needs a GPU (``--device cuda``, ``--backend nccl``) is left as it is where torch
sees none.

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
        return _strip_blank_ends(new)
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
        out += _strip_blank_ends(_keep_labels(section, wanted[section.key]))
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
    return _strip_blank_ends(cleaned)


def _strip_blank_ends(lines: list[str]) -> list[str]:
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


def _needs_gpu(args: list[str]) -> bool:
    joined = " ".join(args)
    return "--device cuda" in joined or "--device=cuda" in joined or "nccl" in joined


def _gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def run(args: list[str], *, timed: bool, cwd: Path, scratch: Path) -> list[str]:
    """The report the command prints (stdout, and ``time``'s lines), placeholders in."""
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
    # The package's own files as a run from the checkout shows them; other paths as placeholders.
    text = text.replace(f"{ROOT}/dpslice/", "dpslice/").replace(str(ROOT), "/path/to/dpslice")
    text = text.replace(str(scratch.resolve()), "/path/to")
    return text.rstrip("\n").splitlines()


def regenerate(path: Path, *, match: str | None, gpu: bool) -> str:
    """``path``'s text with every quoted dpslice report rerun."""
    text = path.read_text(encoding="utf-8")
    scratch = Path(tempfile.mkdtemp(prefix="dpslice-doc-reports-"))
    pieces: list[str] = []
    done_to = 0
    try:
        for block in _FENCE.finditer(text):
            body = block["body"].splitlines()
            if block["language"] == "python" and body:
                named = _FILE_COMMENT.match(body[0].strip())
                if named:
                    target = scratch / named["name"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(block["body"])
                continue
            if block["language"] != "console":
                continue
            new_body = list(body)
            for quote in reversed(list(quotes(body))):
                parsed = dpslice_args(quote.command)
                if parsed is None or not any(line.strip() for line in quote.output):
                    continue
                if match is not None and match not in quote.command:
                    continue
                timed, args = parsed
                line = text.count("\n", 0, block.start()) + 2 + quote.first
                if _needs_gpu(args) and not gpu:
                    print(f"{path.relative_to(ROOT)}:{line}: needs a GPU, left as it is")
                    continue
                in_repo = any(
                    word.startswith(_REPO_DIRS) for word in re.split(r"[\s:=]", quote.command)
                )
                print(f"{path.relative_to(ROOT)}:{line}: {quote.command}", flush=True)
                output = run(args, timed=timed, cwd=ROOT if in_repo else scratch, scratch=scratch)
                shown = trimmed_like(output, quote.output)
                # keep a blank line before the next command of the block
                tail = [""] if quote.end < len(body) and not body[quote.end - 1].strip() else []
                new_body[quote.first : quote.end] = shown + tail
            start, end = block.span("body")
            pieces.append(text[done_to:start])
            pieces.append("\n".join(new_body) + "\n")
            done_to = end
        pieces.append(text[done_to:])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return "".join(pieces)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("documents", nargs="*", type=Path, help="default: README.md, docs/*.md")
    parser.add_argument("--diff", action="store_true", help="print a diff; write nothing")
    parser.add_argument("-k", dest="match", help="only the commands that contain this text")
    options = parser.parse_args(argv)
    documents = [p.resolve() for p in options.documents] or DOCUMENTS
    gpu = _gpu()
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
