"""Render tagged buffer rows compactly: ``r0[0..3] r0[pad]*2 r1[0]``.

Rows come from :meth:`dpslice.DPLayout.gathered`: ``(rank, local_row)`` for a
real token, ``(rank, PAD_ROW)`` for padding.  Consecutive real rows of one rank
collapse to a range, consecutive padding rows of one rank to a count.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dpslice.layout import PAD_ROW

if TYPE_CHECKING:
    import torch

__all__ = ["render_rows"]


def _render_run(rank: int, first: int, last: int, count: int) -> str:
    if first == PAD_ROW:
        return f"r{rank}[pad]" if count == 1 else f"r{rank}[pad]*{count}"
    return f"r{rank}[{first}]" if count == 1 else f"r{rank}[{first}..{last}]"


def render_rows(tags: torch.Tensor, *, max_runs: int = 8) -> str:
    """``tags`` (an ``(n, 2)`` tensor) as runs; ``(none)`` when empty.

    At most ``max_runs`` runs are shown, then how many more there are.
    """
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
