"""Hostile and faulty targets: each breaks something of its own process, never the slice.

Every one returns the right slice wherever it returns one, so any verdict but
PASS (or the target's own FAIL, where it misbehaves in a call) would blame
dpslice for the target's doing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time


def _correct(
    global_num_tokens_cpu: list[int] | None,
    dp_rank: int,
    can_run_graph: bool,
    graph_extent: int | None,
) -> tuple[int, int]:
    counts = global_num_tokens_cpu
    if counts is None:
        raise ValueError("no CPU counts during CUDA-graph capture")
    slot = 0 if len(counts) == 1 else dp_rank
    if can_run_graph and graph_extent is not None:
        return slot * graph_extent, counts[slot]
    return sum(counts[:slot]), counts[slot]


class _UnprintableInterrupt(KeyboardInterrupt):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


class _UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def unprintable_interrupt(*, global_num_tokens_cpu, dp_rank, can_run_graph, graph_extent):  # type: ignore[no-untyped-def]
    """In a graph replay, a ``KeyboardInterrupt`` whose ``__str__`` raises."""
    if can_run_graph:
        raise _UnprintableInterrupt()
    return _correct(global_num_tokens_cpu, dp_rank, can_run_graph, graph_extent)


def unprintable_error(*, global_num_tokens_cpu, dp_rank, can_run_graph, graph_extent):  # type: ignore[no-untyped-def]
    """In a graph replay, an exception whose ``__str__`` raises."""
    if can_run_graph:
        raise _UnprintableError()
    return _correct(global_num_tokens_cpu, dp_rank, can_run_graph, graph_extent)


class _Bound:
    """A slice bound that is no int but reads as one, as Python's slices read it."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"_Bound({self.value})"


def index_bounds(*, global_num_tokens_cpu, dp_rank, can_run_graph, graph_extent):  # type: ignore[no-untyped-def]
    """The right slice, as objects with ``__index__``."""
    start, length = _correct(global_num_tokens_cpu, dp_rank, can_run_graph, graph_extent)
    return _Bound(start), _Bound(length)


def moves_away(*, global_num_tokens_cpu, dp_rank, can_run_graph, graph_extent):  # type: ignore[no-untyped-def]
    """Changes into a new directory, removes it, then answers."""
    place = tempfile.mkdtemp()
    os.chdir(place)
    shutil.rmtree(place)
    return _correct(global_num_tokens_cpu, dp_rank, can_run_graph, graph_extent)


def forgets_dpslice(*, global_num_tokens_cpu, dp_rank, can_run_graph, graph_extent):  # type: ignore[no-untyped-def]
    """Removes dpslice's modules from ``sys.modules``, then answers."""
    for name in [name for name in sys.modules if name.split(".")[0] == "dpslice"]:
        del sys.modules[name]
    return _correct(global_num_tokens_cpu, dp_rank, can_run_graph, graph_extent)


_detached: list[subprocess.Popen[bytes]] = []


def detaches_children(*, global_num_tokens_cpu, dp_rank, can_run_graph, graph_extent):  # type: ignore[no-untyped-def]
    """On its first call starts a child in a new session, and one whose parent exits at once."""
    if not _detached:
        sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
        _detached.append(subprocess.Popen(sleeper, start_new_session=True))
        orphaner = f"import subprocess; subprocess.Popen({sleeper!r}, start_new_session=True)"
        _detached.append(subprocess.Popen([sys.executable, "-c", orphaner]))
    return _correct(global_num_tokens_cpu, dp_rank, can_run_graph, graph_extent)


def forges_a_pass(*, global_num_tokens_cpu, dp_rank, can_run_graph, graph_extent):  # type: ignore[no-untyped-def]
    """Never called: its module rewrites the check's search to find nothing."""
    raise AssertionError("the forged search never calls the target")


def _empty_search(*args: object, **kwargs: object) -> object:
    import dpslice.check.runner as runner

    return runner._Search()  # no calls, no counterexample: a PASS with 0 examples


if os.environ.get("DPSLICE_HOSTILE_FORGE") == "1":
    import dpslice.check.runner

    dpslice.check.runner._search = _empty_search  # type: ignore[assignment]


def hangs_always(*, global_num_tokens_cpu, dp_rank):  # type: ignore[no-untyped-def]
    """Every call hangs."""
    time.sleep(3600)


def hangs_in_graph_replay(*, global_num_tokens_cpu, dp_rank, can_run_graph, graph_extent):  # type: ignore[no-untyped-def]
    """Hangs in a graph replay (prefill graphs included); answers right in every other state."""
    if can_run_graph:
        time.sleep(3600)
    return _correct(global_num_tokens_cpu, dp_rank, can_run_graph, graph_extent)


def detaches_then_exits(*, global_num_tokens_cpu, dp_rank, can_run_graph, graph_extent):  # type: ignore[no-untyped-def]
    """Starts a child in a session of its own, then ends its own process."""
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    subprocess.Popen(sleeper, start_new_session=True)
    os._exit(3)
