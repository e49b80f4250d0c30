"""Render tagged buffer rows compactly: ``r0[0..3] r0[pad]*2 r1[0]``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dpslice.layout import PAD_ROW

if TYPE_CHECKING:
    import torch


def _render_run(rank: int, first: int, last: int, count: int) -> str:
    if first == PAD_ROW:
        return f"r{rank}[pad]" if count == 1 else f"r{rank}[pad]*{count}"
    return f"r{rank}[{first}]" if count == 1 else f"r{rank}[{first}..{last}]"


def render_rows(tags: torch.Tensor, *, max_runs: int = 8) -> str:
    """``tags`` (rows as :meth:`dpslice.DPLayout.gathered` tags them) as runs, a rank's
    consecutive real rows a range and its padding rows a count; at most ``max_runs`` runs,
    then how many more; ``(none)`` when empty."""
    runs: list[list[int]] = []  # [rank, first local row, last local row, count]
    for rank, local in tags.tolist():
        if runs:
            run = runs[-1]
            padding = local == PAD_ROW and run[1] == PAD_ROW
            next_real = local != PAD_ROW and run[1] != PAD_ROW and local == run[2] + 1
            if run[0] == rank and (padding or next_real):
                run[2], run[3] = local, run[3] + 1
                continue
        runs.append([rank, local, local, 1])
    if not runs:
        return "(none)"
    shown = " ".join(_render_run(*run) for run in runs[:max_runs])
    hidden = len(runs) - max_runs
    return f"{shown} ... (+{hidden} more runs)" if hidden > 0 else shown


def rows_phrase(tags: torch.Tensor) -> str:
    """``rows r0[0..3]``, or ``no rows``."""
    return f"rows {render_rows(tags)}" if len(tags) else "no rows"
