"""The round trip's process group: ``dp_size`` runner workers, layouts in, outcomes out.

The ranks join through a file store in a directory of the session's own and take every
layout as a job (:mod:`dpslice.distributed.worker`); the runner's loop holds every
deadline.  On any failure every rank is killed (a rank blocked in a collective cannot be
asked to leave) and a typed error raised; nothing outlives :meth:`RoundTripSession.close`.
"""

from __future__ import annotations

import math
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, NoReturn

from dpslice.check.inflight import (
    aborted,
    aborted_counterexample,
    import_failed,
    stopped_text,
)
from dpslice.check.registry import Counterexample
from dpslice.check.results import PropertyResult, check_max_examples
from dpslice.check.target import Target, load_target, resolve_spec
from dpslice.distributed.errors import RankFailedError, RoundTripTimeoutError, TargetAbortedError
from dpslice.distributed.search import search_round_trip
from dpslice.errors import BadTargetError, CheckConfigError
from dpslice.isolation import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_IMPORT_TIMEOUT,
    DEFAULT_MAX_EXAMPLES,
    DEFAULT_RUN_TIMEOUT,
    GATHER_ALLOWANCE,
    RANK_IMPORTS,
    STARTUP_ALLOWANCE,
    available_memory,
    finite_seconds,
)
from dpslice.layout import DPLayout, Mode
from dpslice.runner import How, Job, Limit, Limits, Phase, Worker, follow
from dpslice.strategies import MAX_DP_SIZE

#: The backends the harness runs on, and the device kind each gathers on.
BACKENDS = {"gloo": "cpu", "nccl": "cuda"}


#: The most ranks a round trip runs: the largest DP size the layouts model.
MAX_RANKS = MAX_DP_SIZE
#: Host memory one rank takes, in bytes: the least (a gloo rank after a layout held
#: 235 MiB resident; docs/distributed.md#how-many-ranks).
RANK_MEMORY = 250 * 2**20
#: Open files the starting process holds per rank (its two pipes and its pidfd, with
#: a margin), and besides them.
_STARTER_FILES_PER_RANK, _STARTER_FILES = 5, 24
#: Open files a rank holds besides one socket per peer: 13 measured, and a margin.
_RANK_FILES = 16


def _open_files_now() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def check_rank_count(dp_size: int, *, spawning: bool = True) -> int:
    """``dp_size`` if a round trip can run that many ranks here: at most :data:`MAX_RANKS`,
    their sockets within the open-files limit and, when this process starts them
    (``spawning``; not under torchrun), their memory and pipes too.

    Raises:
        CheckConfigError: they would not fit; the message says what they need and what to do.
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
_JOBS = "dpslice.distributed.worker"


def _check_positive(name: str, value: float) -> float:
    if not finite_seconds(value) or not value > 0:
        raise CheckConfigError(f"{name}={value!r} must be a finite number of seconds > 0")
    return float(value)


def check_search_arguments(max_examples: int, timeout: float) -> float:
    """Validate a search's budget before anything starts; return the timeout as a float."""
    check_max_examples(max_examples)
    return _check_positive("timeout", timeout)


class RoundTripSession:
    """A process group of ``dp_size`` ranks that evaluates layouts, for any number of targets.

    Use it as a context manager.  Each rank loads a target the first time a layout
    names it (or :meth:`load` loads it).

    Args:
        backend: ``"gloo"`` (CPU) or ``"nccl"`` (GPUs ``0..dp_size-1`` as visible).
        startup_timeout: seconds to start, join and warm up the group.
        layout_timeout: seconds every rank gets to answer one layout; also
            the collectives' own timeout inside the ranks.
        call_timeout: seconds one call of the target may take; a call that
            takes longer is the target's failure (:class:`TargetAbortedError`), not
            a stuck rank.  ``None``: only ``layout_timeout`` bounds it.
        env: the ranks' environment (this process's by default); ``tick`` is called
            about every 0.25 s while the session waits for its ranks.

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
        layout_timeout: float | None = None,
        call_timeout: float | None = None,
        env: dict[str, str] | None = None,
        tick: Callable[[], None] | None = None,
    ) -> None:
        check_rank_count(dp_size)
        if backend not in BACKENDS:
            raise CheckConfigError(
                f"backend={backend!r}: choose 'gloo' (CPU) or 'nccl' (one GPU per rank)"
            )
        if backend == "nccl":
            import torch.distributed as dist

            from dpslice._numpy_notice import torch

            gpus = torch.cuda.device_count()  # asks NVML; does not initialise CUDA here
            if not dist.is_nccl_available() or gpus < dp_size:
                raise CheckConfigError(
                    f"the NCCL round trip needs one GPU per rank: dp_size={dp_size}, but "
                    f"{gpus} GPU(s) are visible; lower dp_size or set CUDA_VISIBLE_DEVICES"
                )
        if layout_timeout is None:
            call = DEFAULT_CALL_TIMEOUT if call_timeout is None else call_timeout
            layout_timeout = call + GATHER_ALLOWANCE
        self.dp_size = dp_size
        self.backend = backend
        self.startup_timeout = _check_positive("startup_timeout", startup_timeout)
        self.layout_timeout = _check_positive("layout_timeout", layout_timeout)
        self.call_timeout = (
            None if call_timeout is None else _check_positive("call_timeout", call_timeout)
        )
        self.env = env
        self.tick = tick
        self.devices: tuple[str, ...] = ()
        self.startup_seconds = 0.0
        self.layouts_checked = 0
        #: The ranks' process ids, in rank order (kept after they are stopped).
        self.pids: tuple[int, ...] = ()
        self._ranks: list[Worker] = []
        self._directory: str | None = None
        self._loaded: dict[str, Target] = {}
        self._closed = False

    def __enter__(self) -> RoundTripSession:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the ranks and wait until every one has joined and warmed up the group.

        Raises:
            RankFailedError, RoundTripTimeoutError: the group did not start.
        """
        if self.pids or self._closed:
            raise CheckConfigError("a RoundTripSession starts once; make a new one")
        began = time.monotonic()
        self._directory = tempfile.mkdtemp(prefix="dpslice-group-")
        store = os.path.join(self._directory, "store")
        limits = Limits(start=self.startup_timeout, job=self.startup_timeout)
        try:
            env = self.env if self.env is not None else dict(os.environ)
            for rank in range(self.dp_size):
                self._ranks.append(Worker(env, warm=RANK_IMPORTS))
                self.pids += (self._ranks[-1].pid,)
                args = (rank, self.dp_size, self.backend, store, self.layout_timeout)
                self._ranks[-1].give(Job(f"{_JOBS}:join", args), limits)
            self.devices = tuple(self._collect("startup", self.startup_timeout))
        except BaseException:
            self.close()
            raise
        self.startup_seconds = time.monotonic() - began

    def close(self) -> None:
        """Stop every rank and what it started, and remove the group's store.  Idempotent."""
        self._closed = True
        for rank in self._ranks:
            rank.stop()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def load(
        self, spec: str, import_timeout: float = DEFAULT_IMPORT_TIMEOUT
    ) -> tuple[Target, dict[str, str]]:
        """Load the target on every rank: the target as rank 0 loaded it (without its
        function) and the versions the ranks run with.

        Raises:
            BadTargetError: it cannot be loaded, or its import hung, ended a rank or
                raised a ``BaseException``.
        """
        self._running()
        limits = Limits(start=STARTUP_ALLOWANCE, load=import_timeout, work=math.inf)
        for rank in self._ranks:
            rank.give(Job(f"{_JOBS}:load", (spec,)), limits)
        loaded = self._collect("startup", import_timeout, spec=spec)[0]
        if isinstance(loaded, str):
            raise BadTargetError(loaded)
        target, versions = loaded
        self._loaded[target.spec] = target
        return target, versions

    def check(self, layout: DPLayout, target: str | Target) -> tuple[Counterexample | None, ...]:
        """Every rank's counterexample on ``layout`` with ``target`` (``None``: its slice held
        exactly its own rows), in rank order.  A rank that cannot load ``target``, given
        as a spec, fails the group: load it first for a clear error.

        Raises:
            RankFailedError: a rank raised in the harness or died; the group is down.
            RoundTripTimeoutError: a rank did not answer in time; the group is down.
            TargetAbortedError: a rank's call of the target did not return within
                ``call_timeout``, or ended the rank's process; the group is down.
        """
        self._running()
        if not isinstance(layout, DPLayout) or layout.dp_size != self.dp_size:
            raise CheckConfigError(f"{layout!r} is not a layout of {self.dp_size} ranks")
        if layout.mode is Mode.GRAPH_CAPTURE:
            raise CheckConfigError("capture layouts have no CPU counts to round-trip")
        if isinstance(target, str):
            spec = resolve_spec(target)
            target = self._loaded.get(spec) or load_target(spec)
        limits = Limits(
            start=math.inf,
            call=self.call_timeout or math.inf,
            work=math.inf,
            job=self.layout_timeout,
        )
        for rank in self._ranks:
            rank.give(Job(f"{_JOBS}:evaluate", (layout, target.spec)), limits)
        found = self._collect("layout", self.layout_timeout, layout=layout, target=target)
        self.layouts_checked += 1
        return tuple(found)

    def round_trip(
        self,
        target: str | Target,
        *,
        max_examples: int = DEFAULT_MAX_EXAMPLES,
        seed: int = 0,
        timeout: float = DEFAULT_RUN_TIMEOUT,
        max_count: int = 64,
    ) -> PropertyResult:
        """Search for a layout on which ``target`` does not recover a rank's own rows: the
        ``round_trip_rows`` property's result
        (:func:`~dpslice.distributed.search.search_round_trip`).

        Raises:
            BadTargetError: the target cannot be loaded (checked before any layout).
            RankFailedError, RoundTripTimeoutError: as :meth:`check`; the group is down.
        """
        timeout = check_search_arguments(max_examples, timeout)
        loaded = load_target(resolve_spec(target)) if isinstance(target, str) else target
        return search_round_trip(
            lambda layout: self.check(layout, loaded),
            loaded,
            dp_size=self.dp_size,
            max_examples=max_examples,
            seed=seed,
            max_count=max_count,
            timeout=timeout,
        )

    def _running(self) -> None:
        if self._closed or not self._ranks:
            raise CheckConfigError("the session is not running: use it as a context manager")

    def _collect(
        self,
        phase: str,
        budget: float,
        *,
        layout: DPLayout | None = None,
        target: Target | None = None,
        spec: str | None = None,
    ) -> list[Any]:
        """Every rank's answer to its job, in rank order; any failure kills every rank."""
        answers: dict[int, Any] = {}
        while len(answers) < self.dp_size:
            for worker in follow(self._ranks, tick=self.tick):
                rank = self._ranks.index(worker)
                if worker.stopped is None:
                    answers[rank] = worker.value
                    continue
                stopped = worker.stopped
                if stopped.phase is Phase.LOADING and spec is not None:
                    self.close()
                    raise import_failed(spec, stopped_text(stopped))
                if (
                    stopped.record is not None
                    and target is not None
                    and (stopped.how is not How.HUNG or stopped.limit is Limit.CALL)
                ):
                    outcome = aborted(stopped, "the group")
                    shown_as = replace(target, device=BACKENDS[self.backend])
                    found = aborted_counterexample(shown_as, stopped.record, outcome)
                    self.close()
                    raise TargetAbortedError(found)
                if stopped.how is How.HUNG:
                    pending = [other for other in range(self.dp_size) if other not in answers]
                    self.close()
                    raise RoundTripTimeoutError(phase, budget, pending, layout)
                self._fail(rank, layout)
        return [answers[rank] for rank in range(self.dp_size)]

    def _fail(self, first: int, layout: DPLayout | None) -> NoReturn:
        """Listen briefly for the peers' failures, judge the root cause, kill all, raise."""
        grace = time.monotonic() + _FAILURE_GRACE_S
        while time.monotonic() < grace and any(rank.busy for rank in self._ranks):
            follow(self._ranks, until=grace)
        texts = {
            number: rank.stopped.broke.text if rank.stopped.broke else ""
            for number, rank in enumerate(self._ranks)
            if rank.stopped is not None and rank.stopped.how is not How.HUNG
        }
        # A rank that died without a word is the cause; its peers' collectives broke after it.
        silent = [number for number, text in texts.items() if not text]
        root = silent[0] if silent else first
        others = [
            (number, (text.strip().splitlines() or ["died"])[-1])
            for number, text in texts.items()
            if number != root
        ]
        ending = self._ranks[root].ending()
        self.close()
        raise RankFailedError(
            root,
            exitcode=ending.returncode,
            traceback_text=texts.get(root, ""),
            layout=layout,
            others=others,
        )
