"""The worker process: run the jobs the supervisor sends, tell it every step.

It runs in a process group and session of its own, dies with its parent, and
adopts what it starts (:mod:`dpslice.isolation`), so whatever a job's target
does, the supervisor can kill all of it.  A job is a function named by import
path: this module imports nothing of the layers that send jobs.
"""

from __future__ import annotations

import faulthandler
import importlib
import os
import pickle
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from types import ModuleType
from typing import Any, NoReturn

from dpslice.isolation import become_subreaper, die_with_parent
from dpslice.runner.protocol import Broke, Done, Job, Loading, Note

__all__ = ["Channel", "function", "main"]

_PICKLE = pickle.HIGHEST_PROTOCOL


class Channel:
    """The pipe to the supervisor; a write that fails means the supervisor is gone: leave."""

    def __init__(self, fd: int) -> None:
        self.conn = Connection(fd, readable=False)
        self._modules: dict[str, ModuleType] = {}

    def keep_modules(self) -> None:
        """Remember dpslice's modules, which the records' classes live in: a target that
        removes them from ``sys.modules`` would make pickle import new classes."""
        self._modules = {
            name: module
            for name, module in sys.modules.items()
            if name == "dpslice" or name.startswith("dpslice.")
        }

    def _dumps(self, record: object) -> bytes:
        try:
            return pickle.dumps(record, _PICKLE)
        except pickle.PicklingError:
            sys.modules.update(self._modules)
            return pickle.dumps(record, _PICKLE)

    def _send(self, data: bytes) -> None:
        try:
            self.conn.send_bytes(data)
        except OSError:
            os._exit(1)

    def event(self, event: Loading | Note | Done | Broke) -> None:
        self._send(b"E" + self._dumps(event))

    def loading(self, spec: str) -> None:
        """The target's import starts now: the import timeout runs."""
        self.event(Loading(spec))

    def note(self, payload: object) -> None:
        """Tell the supervisor ``payload`` (the job's own event)."""
        self.event(Note(payload))

    def calling(self, record: object) -> None:
        """A call of the target starts: the call timeout runs; ``record`` is what the
        supervisor shows should the call never come back."""
        self._send(b"C" + self._dumps(record))

    def returned(self) -> None:
        """The call came back (with a value or an exception): its clock stops."""
        self._send(b"R")


def function(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    function: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return function


def main(argv: Sequence[str], broke: str | None = None) -> NoReturn:
    """``argv``: the event pipe's fd and the parent's pid; ``broke``: the traceback of
    the fork server's warm-up, which failed, to report instead of taking jobs."""
    fd, parent_pid = int(argv[0]), int(argv[1])
    die_with_parent(parent_pid)
    become_subreaper()  # what the target detaches stays below, for the parent to kill
    # The parent blocks these while it starts a worker; the target gets them as usual.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    os.set_inheritable(fd, False)  # a subprocess of the target must not hold the pipe open
    faulthandler.enable()  # a crash in native code prints the Python stack to stderr
    channel = Channel(fd)
    # Jobs come on what was stdin; the target's stdin is /dev/null, so that
    # nothing it reads (input(), a subprocess) takes the next job's bytes.
    jobs = os.fdopen(os.dup(0), "rb")
    os.set_inheritable(jobs.fileno(), False)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    if broke is not None:
        channel.event(Broke(broke))
        os._exit(1)
    try:
        while True:
            try:
                job: Job = pickle.load(jobs)
            except EOFError:
                break
            channel.event(Done(function(job.function)(channel, *job.args)))
    except BaseException as exc:
        try:
            text = traceback.format_exc()
        except Exception:  # an exception whose __str__ raises: its type says enough
            text = type(exc).__name__
        channel.event(Broke(text))
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    sys.stderr.flush()
    # Not a normal exit: threads the target started must not keep the process alive,
    # and a rank's process group must not be torn down (docs/distributed.md).
    os._exit(0)
