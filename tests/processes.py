"""Find the processes a test's run left behind, by a marker in their environment."""

from __future__ import annotations

from pathlib import Path


def marked_processes(marker: str) -> list[int]:
    """Processes whose environment carries ``marker`` (every descendant of a run inherits it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
