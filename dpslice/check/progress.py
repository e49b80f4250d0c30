"""Live progress of ``dpslice check`` on stderr: the run's header, then each property's row.

The header (target, seed, budget) comes first, as soon as the target has
imported (a target that cannot be imported stays one line of error), so a run
that hangs still says what it was running, in a CI log too.  On a terminal
each property's row follows as it finishes, and a status line shows the
property in progress, its calls so far and its time, redrawn a few times a
second.  When stderr is not a terminal only the header is printed: the rows
would repeat the report's table wherever stderr and stdout end up together
(``2>&1 | tee``).  A stream that fails (closed) silences the progress; it
never stops the check.
"""

from __future__ import annotations

from typing import TextIO

from dpslice.check.report import render_row
from dpslice.check.results import PropertyResult
from dpslice.check.target import Target

__all__ = ["Progress"]

#: Redraw the status line at most this often, in seconds.
_REDRAW = 0.2


class Progress:
    """Writes progress to ``stream`` (a :class:`~dpslice.supervision.supervisor.Listener`)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream: TextIO | None = stream
        try:
            self.live = stream.isatty()
        except (AttributeError, ValueError, OSError):
            self.live = False
        self._status = False
        self._drawn_at = -_REDRAW
        self._header: list[str] = []

    def header(self, lines: list[str]) -> None:
        """What the run is: printed once the target has loaded."""
        self._header = list(lines)

    def _write(self, text: str) -> None:
        if self.stream is None:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self.stream, self.live = None, False

    def _clear(self) -> None:
        if self._status:
            self._write("\r\033[K")
            self._status = False

    def line(self, text: str) -> None:
        """One line of text, above the status line."""
        self._clear()
        self._write(text + "\n")

    def loaded(self, target: Target) -> None:
        for line in self._header:
            self.line(line)
        takes = ", ".join(sorted(target.accepts)) or "nothing from the convention"
        self.line(f"the target takes: {takes}")

    def started(self, name: str) -> None:
        self._drawn_at = -_REDRAW

    def tick(self, name: str | None, calls: int, seconds: float) -> None:
        if not self.live or (seconds - self._drawn_at < _REDRAW and self._status):
            return
        self._drawn_at = seconds
        what = f"{name}: {calls:,} calls" if name is not None else "running"
        self._write(f"\r\033[K  ... {what}, {seconds:.1f} s")
        self._status = True

    def finished(self, result: PropertyResult) -> None:
        if self.live:
            self.line(render_row(result))

    def close(self) -> None:
        """Clear the status line, if one is drawn."""
        self._clear()
