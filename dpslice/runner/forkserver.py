"""The fork server: the one place that starts processes to run targets.

A worker needs Python, torch and the battery imported before its first job,
over a second of CPU each.  The fork server is a process that imports them
once and forks every worker from there: ``-j N`` and a round trip's ranks pay
one import, not N.  It never runs a target.  It lives in a session of its own,
dies with its parent, and keeps each worker it forked unreaped until the
supervisor has killed that worker's process group (the zombie keeps the group
id reserved).  Each worker runs :func:`dpslice.runner.worker.main` in a new
session of its own, dies with the server, and so with the supervisor.

One server serves the workers started with one environment; it ends with the
last of them (:meth:`ForkServer.release`).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import socket
import subprocess
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, NoReturn

from dpslice.errors import CheckBrokeError
from dpslice.isolation import STARTUP_ALLOWANCE, die_with_parent, kill_tree

__all__ = ["ForkServer", "serve"]

#: Seconds the server may take over a request other than a fork.
_ANSWER_S = 30.0
#: What the server sets in a worker's environment itself: it may differ between
#: the workers of one server (a run's own Hypothesis directory).
_PER_WORKER = ("HYPOTHESIS_STORAGE_DIRECTORY",)

_BOOT = (
    "import os, sys\n"
    "cwd = os.getcwd()\n"
    # dpslice's imports come from the installed packages, never from the working
    # directory (a local numpy.py); targets in it still load (appended).
    "sys.path[:] = [p for p in sys.path if p not in ('', cwd)] + [sys.argv[3], cwd]\n"
    "from dpslice.runner.forkserver import serve\n"
    "serve(sys.argv[1:3] + sys.argv[4:])\n"
)


class _Fork(NamedTuple):
    """Fork a worker with this environment, after calling ``warm`` (once per server)."""

    env: dict[str, str]
    warm: tuple[str, ...]


class _Peek(NamedTuple):
    """How worker ``pid`` ended (its exit status, or minus its signal), or ``None``
    while it runs; it stays unreaped."""

    pid: int


class _Reap(NamedTuple):
    """Reap worker ``pid``, which was killed."""

    pid: int


def _key(env: dict[str, str]) -> tuple[object, ...]:
    shared = frozenset((k, v) for k, v in env.items() if k not in _PER_WORKER)
    return (sys.executable, os.getcwd(), shared)


class ForkServer:
    """The supervisor's handle on one fork server."""

    @classmethod
    def for_env(cls, env: dict[str, str], warm: Sequence[str] = ()) -> ForkServer:
        """The running server for ``env``, started if there is none; a new one imports
        what ``warm`` names at once, before the first fork asks (a command line starts
        it first thing, so that the import runs beside its own start-up)."""
        key = _key(env)
        server = _RUNNING.get(key)
        if server is None or server.broken:
            server = _RUNNING[key] = cls(env, warm)
            server.key = key
        return server

    @classmethod
    def close_all(cls) -> None:
        for server in list(_RUNNING.values()):
            server.close()

    def __init__(self, env: dict[str, str], warm: Sequence[str] = ()) -> None:
        self.key: tuple[object, ...] = ()
        self.workers: set[int] = set()
        self.broken = False
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        root = str(Path(__file__).resolve().parents[2])
        # The server, and every worker it forks, starts with SIGINT and SIGTERM
        # blocked: a worker unblocks them for its target; the server keeps them
        # blocked, and only SIGKILL (close, or its parent's death) ends it.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(theirs.fileno()), str(os.getpid()), root, *warm],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=2,  # what a target prints goes to stderr: stdout is the report's
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            theirs.close()
        self._socket = ours

    def _ask(self, request: object, fds: Sequence[int] = (), timeout: float = _ANSWER_S) -> object:
        if self.broken:
            raise CheckBrokeError("the check's fork server has stopped; start the run again")
        try:
            self._socket.settimeout(timeout)
            socket.send_fds(self._socket, [pickle.dumps(request)], list(fds))
            answer = self._socket.recv(1 << 16)
        except BaseException as exc:
            # An answer still on its way would be read as the next request's.
            self.close()
            if isinstance(exc, (OSError, EOFError)):
                raise CheckBrokeError(
                    f"the check's fork server did not answer ({exc!r}); start the run again"
                ) from None
            raise
        if not answer:
            self.close()
            raise CheckBrokeError("the check's fork server ended; start the run again")
        return pickle.loads(answer)

    def fork(self, env: dict[str, str], warm: Sequence[str], fds: Sequence[int]) -> int:
        """Fork a worker with ``fds``: its event pipe, its job pipe and its call board;
        its pid.  The first fork also imports what ``warm`` names, within the
        start-up allowance."""
        pid = self._ask(_Fork(env, tuple(warm)), fds, STARTUP_ALLOWANCE)
        assert isinstance(pid, int)
        self.workers.add(pid)
        return pid

    def peek(self, pid: int) -> int | None:
        """Worker ``pid``'s exit status (minus the signal that killed it), or ``None``
        while it runs.  Once the server is gone its workers died with it (SIGKILL)."""
        with contextlib.suppress(CheckBrokeError):
            ending = self._ask(_Peek(pid))
            assert ending is None or isinstance(ending, int)
            return ending
        return -signal.SIGKILL

    def release(self, pid: int) -> None:
        """Reap worker ``pid``, which was killed; the server ends with its last worker."""
        self.workers.discard(pid)
        with contextlib.suppress(CheckBrokeError):
            self._ask(_Reap(pid))
        if self.broken:  # it outlived the server: reaped by the nearest subreaper
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        if not self.workers:
            self.close()

    def close(self) -> None:
        """Kill the server, and so every worker it forked; safe to repeat."""
        self.broken = True
        if _RUNNING.get(self.key) is self:
            del _RUNNING[self.key]
        self._socket.close()
        kill_tree(self.process.pid)
        with contextlib.suppress(OSError):
            self.process.wait()


#: The servers running, by what their workers share (:func:`_key`).
_RUNNING: dict[tuple[object, ...], ForkServer] = {}


def _warm(path: str) -> str | None:
    """Call the function ``path`` names; the traceback if it raised."""
    from dpslice.runner.worker import function

    try:
        function(path)()
    except BaseException:
        return traceback.format_exc()
    return None


def _peek(pid: int) -> int | None:
    try:
        found = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return -signal.SIGKILL
    if found is None:
        return None
    if found.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
        return -found.si_status
    return found.si_status


def _become_worker(
    server: socket.socket, server_pid: int, request: _Fork, fds: list[int], broke: str | None
) -> NoReturn:
    try:
        server.close()
        os.setsid()  # its own session and group: kill_tree reaches all it starts
        events, jobs, board = fds
        os.dup2(jobs, 0)
        os.close(jobs)
        os.environ.clear()
        os.environ.update(request.env)
        configuration = sys.modules.get("hypothesis.configuration")
        if configuration is not None:  # read this worker's directory from its environment
            configuration.set_hypothesis_home_dir(None)
        from dpslice.runner.worker import main

        main([str(events), str(board), str(server_pid)], broke=broke)
    except BaseException:
        traceback.print_exc()  # before the worker could report anything itself
    finally:
        os._exit(1)


def serve(argv: Sequence[str]) -> NoReturn:
    """The server's loop: ``argv`` is its socket's fd, its parent's pid, and what to
    import before the first fork."""
    fd, parent_pid = int(argv[0]), int(argv[1])
    die_with_parent(parent_pid)
    me = os.getpid()
    # Should a warm-up ask torch about CUDA, NVML answers: the CUDA driver must never
    # start in this process, or it would not start in the workers forked from it.
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    server = socket.socket(fileno=fd)
    warmed = {path: _warm(path) for path in argv[2:]}
    while True:
        try:
            data, fds, _flags, _address = socket.recv_fds(server, 1 << 20, 3)
        except OSError:
            break
        if not data:
            break
        request = pickle.loads(data)
        answer: int | None = None
        if isinstance(request, _Fork):
            broke = None
            for path in request.warm:
                if path not in warmed:
                    warmed[path] = _warm(path)
                broke = broke or warmed[path]
            with warnings.catch_warnings():
                # Python 3.12 warns of forking a process with threads: the one here
                # is OpenBLAS's pool (numpy's, which torch imports), idle, and
                # OpenBLAS stops it around a fork; a worker starts its own.
                warnings.simplefilter("ignore", DeprecationWarning)
                answer = os.fork()
            if answer == 0:
                _become_worker(server, me, request, fds, broke)
            for passed in fds:
                os.close(passed)
        elif isinstance(request, _Peek):
            answer = _peek(request.pid)
        elif isinstance(request, _Reap):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(request.pid, 0)
        try:
            server.send(pickle.dumps(answer))
        except OSError:
            break
    os._exit(0)
