"""The driver: one long-lived process group, layouts in, outcomes out, nothing left behind.

:class:`RoundTripSession` spawns ``dp_size`` ranks (``torch.multiprocessing``,
spawn context), each joined to a process group through a ``TCPStore`` that the
driver hosts on ``127.0.0.1`` port 0 (a fresh free port per run: parallel runs
never collide).  Each rank has a pipe to the driver.  The driver sends every
rank the same layout and waits on the pipes *and* the processes' sentinels at
once, so a rank that dies is seen at once, not at the next timeout.

Every wait has a deadline: start-up, each layout, and optionally the whole
run.  On any failure (a rank's error, a rank's death, a deadline) the driver
kills every rank (SIGKILL: a rank blocked in a collective cannot be asked to
leave), reaps them, closes the store and raises a typed error.  On success it
asks the ranks to stop; each exits at once (:func:`~dpslice.distributed.worker.exit_rank`).
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import signal
import time
from multiprocessing.connection import Connection, wait
from types import TracebackType
from typing import Any, NoReturn

import torch.distributed as dist
import torch.multiprocessing as torch_mp
from torch._C._distributed_c10d import TCPStore

from dpslice._numpy_notice import torch
from dpslice.check.inflight import AbortedCall, ended, hung
from dpslice.check.outcome import OutcomeKind
from dpslice.check.registry import Counterexample
from dpslice.check.results import PropertyResult, check_max_examples
from dpslice.check.target import Target, load_target, resolve_spec
from dpslice.distributed.errors import RankFailedError, RoundTripTimeoutError, TargetAbortedError
from dpslice.distributed.search import (
    aborted_round_trip,
    search_round_trip,
)
from dpslice.distributed.worker import BACKENDS, spawned_worker
from dpslice.errors import CheckConfigError
from dpslice.isolation import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_LAYOUT_TIMEOUT,
    DEFAULT_MAX_EXAMPLES,
    DEFAULT_RUN_TIMEOUT,
    STARTUP_ALLOWANCE,
    available_memory,
)
from dpslice.layout import DPLayout, Mode
from dpslice.strategies import MAX_DP_SIZE

__all__ = [
    "MAX_RANKS",
    "RANK_MEMORY",
    "RoundTripSession",
    "check_rank_count",
    "check_search_arguments",
]

#: The most ranks a round trip runs: the largest DP size the layouts model.
MAX_RANKS = MAX_DP_SIZE
#: Host memory one spawned rank takes, in bytes: a gloo rank held 235 MiB resident
#: (RSS in /proc/PID/smaps_rollup; 158 to 172 MiB proportional, PSS) with 2, 4 and 8
#: ranks on torch 2.13.0+cpu, Python 3.11, after checking a layout.  A rank that
#: initialises CUDA (NCCL) takes more: this is the least a rank costs.
RANK_MEMORY = 250 * 2**20
#: Open files the starting process holds per rank (the rank's pipe, its process
#: sentinel, its connection to the store, and spawn's pipes while it starts):
#: 4 to 5 measured with 2, 4 and 8 ranks, beside what the process held before.
_STARTER_FILES_PER_RANK = 5
#: Open files the starting process needs besides: the store and its threads, spawn's
#: resource tracker, the files Python opens while it spawns.
_STARTER_FILES = 24
#: Open files a rank holds besides one socket per peer: 13 measured (torch, the store,
#: the pipe to the driver), and a margin.
_RANK_FILES = 16


def _open_files_now() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def check_rank_count(dp_size: int, *, spawning: bool = True) -> int:
    """``dp_size`` if a round trip can run that many ranks here; refused before any starts.

    At most :data:`MAX_RANKS`, and every rank's sockets (one per peer) within the
    open-files limit.  ``spawning``: this process will start the ranks, so their
    memory (:data:`RANK_MEMORY` each) must fit in what is available, and the pipes
    to them within its own open-files limit.  Under ``torchrun`` the ranks are
    already running: only the count and their sockets are checked.

    Raises:
        CheckConfigError: not an int from 1 to :data:`MAX_RANKS`, or the ranks
            would not fit here; the message says what they need and what to do.
    """
    if isinstance(dp_size, bool) or not isinstance(dp_size, int) or dp_size < 1:
        raise CheckConfigError(f"dp_size={dp_size!r} must be an int >= 1")
    if dp_size > MAX_RANKS:
        raise CheckConfigError(
            f"{dp_size} ranks: the round trip runs at most {MAX_RANKS}, the largest DP size "
            "dpslice models; check with fewer ranks"
        )
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit != resource.RLIM_INFINITY:
        # The process that starts the ranks holds their pipes, which is more than a
        # rank's one socket per peer; under torchrun only the rank's count.
        per_rank, fixed = (
            (_STARTER_FILES_PER_RANK, _open_files_now() + _STARTER_FILES)
            if spawning
            else (1, _RANK_FILES)
        )
        needed = fixed + per_rank * dp_size
        if needed > limit:
            raise CheckConfigError(
                f"{dp_size} ranks need about {needed} open files, and the limit here is "
                f"{limit} (ulimit -n); raise it (ulimit -n {max(1024, needed)}) or run at "
                f"most {max(0, (limit - fixed) // per_rank)} ranks"
            )
    available = available_memory() if spawning else None
    if available is not None and dp_size * RANK_MEMORY > available:
        raise CheckConfigError(
            f"{dp_size} ranks need about {dp_size * RANK_MEMORY / 2**30:.1f} GiB of memory "
            f"({RANK_MEMORY // 2**20} MiB each: every rank is a process that imports torch), "
            f"and {available / 2**30:.1f} GiB is available here (MemAvailable in "
            f"/proc/meminfo); run at most {available // RANK_MEMORY} ranks, or free memory"
        )
    return dp_size


#: After the first rank fails, how long to listen for its peers before judging the root cause.
_FAILURE_GRACE_S = 1.0
#: How long stopping ranks may take to exit before being killed.
_STOP_GRACE_S = 15.0


def _check_positive(name: str, value: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)  # inf would reach the report's JSON, which is strict
        or not value > 0
    ):
        raise CheckConfigError(f"{name}={value!r} must be a finite number of seconds > 0")
    return float(value)


def _signal_name(exitcode: int | None) -> str | None:
    """The signal that killed a process, by name, or ``None`` if it exited."""
    if exitcode is None or exitcode >= 0:
        return None
    try:
        return signal.Signals(-exitcode).name
    except ValueError:
        return f"signal {-exitcode}"


def check_search_arguments(max_examples: int, timeout: float) -> float:
    """Validate a search's budget before anything starts; return the timeout as a float."""
    check_max_examples(max_examples)
    return _check_positive("timeout", timeout)


class RoundTripSession:
    """A process group of ``dp_size`` ranks that evaluates layouts, for any number of targets.

    Use it as a context manager.  :meth:`check` sends one layout to every
    rank; :meth:`round_trip` runs a whole Hypothesis search.  Each rank loads a
    target the first time a layout names it, so one group can check several
    targets in turn (a target that kills its rank takes the group with it).

    Args:
        dp_size: ranks to spawn (the DP size; one GPU per rank under NCCL).
        backend: ``"gloo"`` (CPU) or ``"nccl"`` (GPUs ``0..dp_size-1`` as visible).
        startup_timeout: seconds to spawn, join and warm up the group.
        layout_timeout: seconds every rank gets to answer one layout; also
            the collectives' own timeout inside the ranks.
        call_timeout: seconds one call of the target may take; a call that
            takes longer is the target's failure (:class:`TargetAbortedError`), not
            a stuck rank.  ``None``: only ``layout_timeout`` bounds it.

    Raises:
        CheckConfigError: bad arguments, too few GPUs for NCCL, or more ranks than
            fit here (:func:`check_rank_count`).
    """

    def __init__(
        self,
        *,
        dp_size: int,
        backend: str = "gloo",
        startup_timeout: float = STARTUP_ALLOWANCE + DEFAULT_CALL_TIMEOUT,
        layout_timeout: float = DEFAULT_LAYOUT_TIMEOUT,
        call_timeout: float | None = None,
    ) -> None:
        check_rank_count(dp_size)
        if backend not in BACKENDS:
            raise CheckConfigError(
                f"backend={backend!r}: choose 'gloo' (CPU) or 'nccl' (one GPU per rank)"
            )
        if backend == "nccl":
            gpus = torch.cuda.device_count()  # asks NVML; does not initialise CUDA here
            if not dist.is_nccl_available() or gpus < dp_size:
                raise CheckConfigError(
                    f"the NCCL round trip needs one GPU per rank: dp_size={dp_size}, but "
                    f"{gpus} GPU(s) are visible; lower dp_size or set CUDA_VISIBLE_DEVICES"
                )
        self.dp_size = dp_size
        self.backend = backend
        self.startup_timeout = _check_positive("startup_timeout", startup_timeout)
        self.layout_timeout = _check_positive("layout_timeout", layout_timeout)
        self.call_timeout = (
            None if call_timeout is None else _check_positive("call_timeout", call_timeout)
        )
        self.devices: tuple[str, ...] = ()
        self.startup_seconds = 0.0
        self.layouts_checked = 0
        self._processes: list[Any] = []
        self._conns: list[Connection] = []
        self._store: TCPStore | None = None
        self._pids: tuple[int, ...] = ()
        self._seq = 0
        self._target_name = "?"
        self._closed = False

    # -- life cycle ---------------------------------------------------------

    def __enter__(self) -> RoundTripSession:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def pids(self) -> tuple[int, ...]:
        """The ranks' process ids, in rank order (kept after they are reaped)."""
        return self._pids

    def start(self) -> None:
        """Spawn the ranks and wait until every one has joined and warmed up the group.

        Raises:
            RankFailedError: a rank raised or died while starting.
            RoundTripTimeoutError: the group did not start within ``startup_timeout``.
        """
        if self._pids or self._closed:
            raise CheckConfigError("a RoundTripSession starts once; make a new one")
        began = time.monotonic()
        self._store = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
        context = torch_mp.get_context("spawn")
        try:
            for rank in range(self.dp_size):
                ours, theirs = context.Pipe(duplex=True)
                process = context.Process(
                    target=spawned_worker,
                    args=(
                        rank,
                        self.dp_size,
                        self.backend,
                        ("127.0.0.1", self._store.port),
                        theirs,
                        os.getpid(),
                        self.startup_timeout,
                        self.layout_timeout,
                    ),
                    name=f"dpslice-rank-{rank}",
                    daemon=True,
                )
                process.start()
                theirs.close()
                self._processes.append(process)
                self._conns.append(ours)
                assert process.pid is not None
                self._pids += (process.pid,)
            ready = self._collect(
                "ready", None, began + self.startup_timeout, "startup", self.startup_timeout
            )
        except BaseException:
            self._kill_all()
            raise
        self.devices = tuple(str(ready[rank]) for rank in range(self.dp_size))
        self.startup_seconds = time.monotonic() - began

    def close(self) -> None:
        """Stop the ranks (each exits at once), reap them, close the store.

        Idempotent; ranks that do not exit within a grace period are killed.
        """
        if self._closed:
            return
        self._closed = True
        for conn in self._conns:
            with contextlib.suppress(OSError, ValueError):  # already dead; reaped below
                conn.send(("stop",))
        deadline = time.monotonic() + _STOP_GRACE_S
        for process in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))
        self._kill_all()

    def _kill_all(self) -> None:
        self._closed = True
        for process in self._processes:
            if process.is_alive():
                process.kill()
        for process in self._processes:
            process.join(10.0)  # reaps it: no zombie
        for conn in self._conns:
            conn.close()
        self._processes, self._conns = [], []
        self._store = None  # drops the listening socket

    # -- evaluating layouts -------------------------------------------------

    def check(self, layout: DPLayout, target: str | Target) -> tuple[Counterexample | None, ...]:
        """Every rank's counterexample on ``layout`` with ``target``, in rank order.

        ``None`` for a rank whose slice held exactly its own rows.

        Args:
            layout: a layout of ``dp_size`` ranks, not a capture layout.
            target: a loaded :class:`~dpslice.check.Target`, or its spec
                (``package.module:function`` or ``path/to/file.py:function``;
                load it first for a clear error: a rank that cannot load it
                fails the group).

        Raises:
            RankFailedError: a rank raised in the harness or died; the group is down.
            RoundTripTimeoutError: a rank did not answer in time; the group is down.
            TargetAbortedError: a rank's call of the target did not return within
                ``call_timeout``, or ended the rank's process; the group is down.
        """
        if self._closed or not self._processes:
            raise CheckConfigError("the session is not running: use it as a context manager")
        if not isinstance(layout, DPLayout) or layout.dp_size != self.dp_size:
            raise CheckConfigError(f"{layout!r} is not a layout of {self.dp_size} ranks")
        if layout.mode is Mode.GRAPH_CAPTURE:
            raise CheckConfigError("capture layouts have no CPU counts to round-trip")
        spec = resolve_spec(target if isinstance(target, str) else target.spec)
        self._seq += 1
        own_deadline = time.monotonic() + self.layout_timeout
        phase, budget = "layout", self.layout_timeout
        self._target_name = spec.rpartition(":")[2] if isinstance(target, str) else target.name
        for rank, conn in enumerate(self._conns):
            try:
                conn.send(("layout", self._seq, layout, spec))
            except (OSError, ValueError):
                self._fail({rank: self._silent_death(rank)}, layout)
        answers = self._collect("outcome", self._seq, own_deadline, phase, budget, layout)
        self.layouts_checked += 1
        return tuple(answers[rank] for rank in range(self.dp_size))

    def round_trip(
        self,
        target: str | Target,
        *,
        max_examples: int = DEFAULT_MAX_EXAMPLES,
        seed: int = 0,
        timeout: float = DEFAULT_RUN_TIMEOUT,
        max_count: int = 64,
    ) -> PropertyResult:
        """Search for a layout on which ``target`` does not recover a rank's own rows.

        The search is the check's (:func:`~dpslice.distributed.search.search_round_trip`):
        the result is the ``round_trip_rows`` property's, its counterexample
        shrunk, its examples the layouts the group evaluated.

        Args:
            target: a loaded :class:`~dpslice.check.Target`, or
                ``package.module:function`` or ``path/to/file.py:function``.
            max_examples: layouts to draw before a pass (shrinking comes on top).
            seed: the Hypothesis seed; the same seed draws the same layouts.
            timeout: seconds for the search, shrinking included.
            max_count: the largest token count of a rank.

        When ``timeout`` runs out the search stops between two layouts and the
        result stands on the layouts checked so far (its note says so); a call
        that aborts (:class:`TargetAbortedError`) is the result's counterexample,
        unshrunk, and the group is down.

        Raises:
            BadTargetError: the target cannot be loaded (checked before any layout).
            RankFailedError, RoundTripTimeoutError: as :meth:`check`; the group is down.
        """
        timeout = check_search_arguments(max_examples, timeout)
        loaded = load_target(resolve_spec(target)) if isinstance(target, str) else target
        began, checked_before = time.monotonic(), self.layouts_checked
        try:
            return search_round_trip(
                lambda layout: self.check(layout, loaded),
                loaded,
                dp_size=self.dp_size,
                max_examples=max_examples,
                seed=seed,
                max_count=max_count,
                timeout=timeout,
            )
        except TargetAbortedError as aborted:
            return aborted_round_trip(
                aborted.counterexample,
                examples=self.layouts_checked - checked_before,
                seconds=time.monotonic() - began,
            )

    def _collect(
        self,
        kind: str,
        seq: int | None,
        deadline: float,
        phase: str,
        budget: float,
        layout: DPLayout | None = None,
    ) -> dict[int, Any]:
        """Wait for one ``kind`` message from every rank, watching every rank's life."""
        answers: dict[int, Any] = {}
        # rank -> (when its call began, its arguments as shown)
        calling: dict[int, tuple[float, dict[str, object]]] = {}
        by_conn = {id(conn): rank for rank, conn in enumerate(self._conns)}
        by_sentinel = {process.sentinel: rank for rank, process in enumerate(self._processes)}
        while len(answers) < self.dp_size:
            now = time.monotonic()
            remaining = deadline - now
            pending = [rank for rank in range(self.dp_size) if rank not in answers]
            if self.call_timeout is not None and layout is not None:
                for rank, (began, call) in calling.items():
                    if rank not in answers and now - began >= self.call_timeout:
                        self._abort(layout, rank, call, hung(self.call_timeout, "the group"))
                    if rank not in answers:
                        remaining = min(remaining, began + self.call_timeout - now)
            if deadline - now <= 0:
                self._kill_all()
                raise RoundTripTimeoutError(phase, budget, pending, layout)
            watched: list[Any] = [self._conns[rank] for rank in pending]
            watched += list(by_sentinel)
            for ready in wait(watched, timeout=max(0.0, remaining)):
                rank = by_sentinel[ready] if isinstance(ready, int) else by_conn[id(ready)]
                message = self._receive(rank)
                if (message is None or message[0] == "error") and rank in calling:
                    assert layout is not None
                    self._target_ended(layout, rank, calling[rank][1], message)
                if message is None or message[0] == "error":
                    failures = {rank: message[2] if message else self._silent_death(rank)}
                    self._fail(failures, layout)
                if message[0] == "calling" and message[1] == seq:
                    calling[rank] = (time.monotonic(), message[2])
                if message[0] == kind and (seq is None or message[1] == seq):
                    answers[rank] = message[2]
                    calling.pop(rank, None)
        return answers

    def _target_ended(
        self,
        layout: DPLayout,
        rank: int,
        call: dict[str, object],
        message: tuple[Any, ...] | None,
    ) -> NoReturn:
        """A rank died, or raised past the target's call, while in the call: the target did it."""
        if message is not None:  # a BaseException (SystemExit, ...) the harness cannot judge
            text = str(message[2]).rstrip()
            last = (text.splitlines() or ["?"])[-1]
            outcome = AbortedCall(
                kind=OutcomeKind.INCIDENTAL,
                error=last.partition(":")[0],
                message=f"raised {last}, a BaseException that is no Exception (it would end "
                "an engine's process)",
            )
            self._abort(layout, rank, call, outcome)
        self._processes[rank].join(2.0)
        exitcode = self._processes[rank].exitcode
        signal_name = _signal_name(exitcode)
        self._abort(layout, rank, call, ended(exitcode, signal_name))

    def _abort(
        self, layout: DPLayout, rank: int, call: dict[str, object], outcome: AbortedCall
    ) -> NoReturn:
        """Kill the group and raise the call in flight as the target's counterexample."""
        counterexample = Counterexample(
            layout=layout,
            rank=rank,
            function=self._target_name,
            arguments=call,
            outcome=outcome,
            expected="the call returns, or raises an Exception, within the call timeout",
            why="the target did not come back from the call with a slice or an Exception",
        )
        self._kill_all()
        raise TargetAbortedError(counterexample)

    def _receive(self, rank: int) -> tuple[Any, ...] | None:
        """The rank's next message, or None if it died (pipe closed, or exited silently)."""
        conn = self._conns[rank]
        try:
            if conn.poll():
                message: tuple[Any, ...] = conn.recv()
                return message
        except (EOFError, OSError):
            return None
        return None if not self._processes[rank].is_alive() else ("pending",)

    def _last_words(self, rank: int) -> str:
        """The traceback a dead rank sent before exiting, or ``""`` if it sent none."""
        conn = self._conns[rank]
        with contextlib.suppress(EOFError, OSError):
            while conn.poll():
                message = conn.recv()
                if message[0] == "error":
                    return str(message[2])
        return self._silent_death(rank)

    def _silent_death(self, rank: int) -> str:
        """A rank that died without a traceback: wait for its exit code, which tells the
        rest, and return its last words, none (``""``)."""
        self._processes[rank].join(2.0)
        return ""

    def _fail(self, failures: dict[int, str], layout: DPLayout | None) -> NoReturn:
        """Listen briefly for the peers' failures, judge the root cause, kill all, raise."""
        grace = time.monotonic() + _FAILURE_GRACE_S
        while time.monotonic() < grace:
            quiet = [
                process.sentinel
                for rank, process in enumerate(self._processes)
                if rank not in failures
            ]
            if not quiet:
                break
            for ready in wait(quiet, timeout=max(0.0, grace - time.monotonic())):
                rank = next(r for r, p in enumerate(self._processes) if p.sentinel == ready)
                failures[rank] = self._last_words(rank)
        exitcodes = {rank: self._processes[rank].exitcode for rank in failures}
        # A rank that died without a word is the cause; its peers' collectives broke after it.
        silent = [rank for rank, text in failures.items() if not text]
        root = silent[0] if silent else next(iter(failures))
        others = [
            (rank, (text.strip().splitlines() or [f"exit code {exitcodes[rank]}"])[-1])
            for rank, text in failures.items()
            if rank != root
        ]
        self._kill_all()
        raise RankFailedError(
            root,
            exitcode=exitcodes[root],
            traceback_text=failures[root],
            layout=layout,
            others=others,
        )
