"""Live progress of ``dpslice check`` on stderr: the run's header as soon as the target has
imported (a run that hangs still says what it runs), then, only on a terminal, each
property's row and a redrawn status line.  A stream that fails silences the progress, never
the check."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from dpslice.check.report import render_row, takes_line
from dpslice.check.results import PropertyResult, Verdict
from dpslice.check.target import Target

#: Redraw the status line at most this often, in seconds.
_REDRAW = 0.2


class FirstFailure(Exception):
    """``-x``: a property FAILed or ended in ERROR; the run stops there."""


class Progress:
    """A :class:`~dpslice.supervision.supervisor.Listener` that writes to ``stream`` (``None``:
    nothing), ``header`` once the target has loaded; ``exitfirst`` raises
    :class:`FirstFailure` once a property FAILs or ends in ERROR."""

    def __init__(
        self, stream: TextIO | None, *, exitfirst: bool = False, header: Sequence[str] = ()
    ) -> None:
        self.stream = stream
        self.exitfirst = exitfirst
        self._header = header
        try:
            self.live = stream is not None and stream.isatty()
        except (AttributeError, ValueError, OSError):
            self.live = False
        self._status = False
        self._drawn_at = -_REDRAW

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
        for line in [*self._header, takes_line(target)]:
            self.line(line)

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
        if self.exitfirst and result.verdict in (Verdict.FAIL, Verdict.ERROR):
            raise FirstFailure(result.name)

    def close(self) -> None:
        """Clear the status line, if one is drawn."""
        self._clear()
