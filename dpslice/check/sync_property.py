"""``sync_free``: locating the rank's rows, and slicing them out, never syncs the host.

Two things are watched, each under a recording guard: the call (its arguments
built beforehand: building them is the check's doing), and slicing the gathered
buffer with the bounds exactly as returned, as an engine's capturer does (a
0-dim tensor bound syncs there).  CUDA mode on ``--device cuda``, else CPU-only mode.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from dpslice._numpy_notice import torch
from dpslice.check.calls import LayoutCall, slice_with
from dpslice.check.draws import COUNTED, RankExample, drawn
from dpslice.check.outcome import (
    Outcome,
    call_target,
    error_outcome,
    result_outcome,
    short_path,
)
from dpslice.check.registry import Counterexample
from dpslice.check.target import Target
from dpslice.contracts import BoundsUse
from dpslice.sync import DeviceResidentSet, SyncEvent, SyncMode, find_syncs

__all__ = ["PROPERTIES", "SYNC_FREE", "sync_mode"]

_MODE_NAMES = {"cuda": "CUDA mode", "cpu": "CPU-only mode"}


def sync_mode(target: Target) -> SyncMode:
    """The :mod:`dpslice.sync` mode the property runs in for ``target``: ``"cuda"`` or ``"cpu"``."""
    return "cuda" if target.device == "cuda" else "cpu"


def _describe(target: Target) -> str:
    if sync_mode(target) == "cuda":
        how = "torch's sync debug mode and hooks, on the GPU"
    else:
        how = "reads of the count tensor and buffer that would sync on CUDA; --device cuda"
    return f"dpslice.sync {_MODE_NAMES[sync_mode(target)]} ({how})"


class _Watched:
    """Calls a target under a recording guard; keeps the syncs the call caused.

    ``device_memory`` is what CPU-only mode counts reads of (the GPU count tensor,
    the gathered buffer, what derives from them), from the call to the use of its bounds.
    """

    def __init__(self, mode: SyncMode) -> None:
        self.mode = mode
        self.events: tuple[SyncEvent, ...] = ()
        self.device_memory = DeviceResidentSet()

    def __call__(self, target: Target, arguments: Mapping[str, object]) -> Outcome:
        returned: list[object] = []
        counts = arguments.get("global_num_tokens_gpu")
        if isinstance(counts, torch.Tensor):
            self.device_memory.add(counts)
        try:
            self.events = find_syncs(
                lambda: returned.append(target.function(**arguments)),
                mode=self.mode,
                device_resident=self.device_memory,
            )
        except Exception as exc:
            return error_outcome(exc, target)
        if not returned:
            # CUDA mode aborted the call at a sync (recorded): call again for the outcome.
            return call_target(target, arguments)
        # Classified outside the guard: reading tensor bounds syncs by design.
        return result_outcome(returned[0])


def _sites(events: Sequence[SyncEvent]) -> str:
    """``op (xN) at file:line: source`` for each distinct event, in the order first seen."""
    sites = []
    for event, times in Counter(events).items():
        repeated = f" (x{times})" if times > 1 else ""
        source = f": {event.source}" if event.source else ""
        sites.append(f"{event.op}{repeated} at {short_path(event.filename)}:{event.lineno}{source}")
    return "; ".join(sites)


def _kind(bound: object) -> str:
    if isinstance(bound, torch.Tensor):
        return f"a 0-dim {bound.device.type} tensor"
    return "an int" if isinstance(bound, int) else f"a {type(bound).__name__}"


def _sync_free(target: Target, example: RankExample) -> Counterexample | None:
    layout, rank = example
    mode = sync_mode(target)
    watched = _Watched(mode)
    called = LayoutCall(target, layout, layout.call(rank), invoke=watched)
    if called.outcome.raised:
        return None
    problems = []
    if watched.events:
        problems.append(f"the call synchronised the host: {_sites(watched.events)}")
    # Bounds a kernel reads on the device never reach a Python slice.
    on_host = target.contract.bounds_used_on is BoundsUse.HOST
    if called.outcome.bounds is not None and on_host:
        bounds = called.outcome.bounds
        buffer = layout.gathered(rank, device=target.device)
        watched.device_memory.add(buffer)
        used = find_syncs(
            lambda: slice_with(buffer, bounds), mode=mode, device_resident=watched.device_memory
        )
        if used:
            problems.append(
                f"slicing the gathered buffer with the bounds it returned (start "
                f"{_kind(bounds[0])}, length {_kind(bounds[1])}) synchronised the host: "
                f"{_sites(used)}"
            )
    if not problems:
        return None
    return called.counterexample(
        "no host-device synchronisation, in the call or in slicing with its bounds "
        f"(dpslice.sync, {_MODE_NAMES[mode]})",
        "; and ".join(problems),
        expected_slice=called.expected_slice,
    )


SYNC_FREE = drawn(
    "sync_free",
    "Computing the slice, and slicing the buffer with it, never syncs the host.",
    _sync_free,
    modes=COUNTED,
    describe=_describe,
)

#: This module's part of the built-in battery, in report order.
PROPERTIES = (SYNC_FREE,)
