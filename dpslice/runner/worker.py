"""The worker process: run the jobs the supervisor sends, tell it every step.

It runs in a process group and session of its own, dies with its parent, and
adopts what it starts (:mod:`dpslice.isolation`), so whatever a job's target
does, the supervisor can kill all of it.  A job is a function named by import
path: this module imports nothing of the layers that send jobs.
"""

from __future__ import annotations

import faulthandler
import importlib
import mmap
import os
import pickle
import signal
import struct
import sys
import time
import traceback
import zlib
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from types import ModuleType
from typing import Any, NoReturn

from dpslice.isolation import become_subreaper, die_with_parent
from dpslice.runner.protocol import Broke, Done, Job, Loading, Note

__all__ = ["BOARD_HEADER", "CallRecorder", "Channel", "function", "main", "read_board"]

_PICKLE = pickle.HIGHEST_PROTOCOL

#: The call board's header: the call sequence (odd while a call is in flight), the
#: ``time.monotonic()`` it last changed at, the length of the call's record, which
#: follows the header, and the CRC-32 of those three: the parent reads the header
#: while the worker may be writing it, and a torn read must not pass for a state.
_FIELDS = struct.Struct("<QdQ")
BOARD_HEADER = 32


def _header(sequence: int, when: float, size: int) -> bytes:
    fields = _FIELDS.pack(sequence, when, size)
    return fields + zlib.crc32(fields).to_bytes(4, "little") + bytes(4)


def read_board(fd: int) -> tuple[int, float, int] | None:
    """The call board's header: sequence, time and record length; ``None`` if the
    worker was writing it as it was read (read again)."""
    header = os.pread(fd, BOARD_HEADER, 0)
    fields = header[: _FIELDS.size]
    if len(header) < BOARD_HEADER or zlib.crc32(fields) != int.from_bytes(header[24:28], "little"):
        return None
    sequence, when, size = _FIELDS.unpack(fields)
    return sequence, when, size


#: The call board's first size; a larger record grows it.
_BOARD_BYTES = 1 << 16


class Channel:
    """What the worker tells the supervisor: events on a pipe (a write that fails means
    the supervisor is gone: leave), and the calls of the target on the call board, a
    file both map, which the supervisor reads when it looks (no write per call)."""

    def __init__(self, fd: int, board: int) -> None:
        self.conn = Connection(fd, readable=False)
        self._modules: dict[str, ModuleType] = {}
        self._board_fd = board
        os.ftruncate(board, _BOARD_BYTES)
        self._board = mmap.mmap(board, _BOARD_BYTES)
        self._sequence = 0

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
        """Send ``event``, with the call sequence it follows."""
        self._send(self._sequence.to_bytes(8, "little") + self._dumps(event))

    def loading(self, spec: str) -> None:
        """The target's import starts now: the import timeout runs."""
        self.event(Loading(spec))

    def note(self, payload: object) -> None:
        """Tell the supervisor ``payload`` (the job's own event)."""
        self.event(Note(payload))

    def calling(self, record: object) -> None:
        """A call of the target starts: the call timeout runs; ``record`` is what the
        supervisor shows should the call never come back."""
        data = self._dumps(record)
        end = BOARD_HEADER + len(data)
        if end > len(self._board):
            os.ftruncate(self._board_fd, 2 * end)
            self._board = mmap.mmap(self._board_fd, 2 * end)
        self._board[BOARD_HEADER:end] = data  # before the header that announces it
        self._sequence += 1
        self._board[:BOARD_HEADER] = _header(self._sequence, time.monotonic(), len(data))

    def returned(self) -> None:
        """The call came back (with a value or an exception): its clock stops."""
        self._sequence += 1
        self._board[:BOARD_HEADER] = _header(self._sequence, time.monotonic(), 0)


class CallRecorder:
    """A :class:`~dpslice.check.calls.CallObserver` for a job: tells the channel of each
    call of the target, which the supervisor shows should it never return."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        #: The latest call (the one in flight, if any) and the calls so far.
        self.last: tuple[Any, Any, list[int]] | None = None
        self.calls = 0

    def calling(self, layout: Any, call: Any, gpu_counts: list[int]) -> None:
        self.last = (layout, call, gpu_counts)
        self.calls += 1
        self.channel.calling(self.last)

    def returned(self) -> None:
        self.channel.returned()


def function(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    function: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return function


def main(argv: Sequence[str], broke: str | None = None) -> NoReturn:
    """``argv``: the event pipe's fd, the call board's fd and the parent's pid;
    ``broke``: the traceback of
    the fork server's warm-up, which failed, to report instead of taking jobs."""
    fd, board, parent_pid = (int(arg) for arg in argv)
    die_with_parent(parent_pid)
    become_subreaper()  # what the target detaches stays below, for the parent to kill
    # The parent blocks these while it starts a worker; the target gets them as usual.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    for own in (fd, board):  # a subprocess of the target must not hold them open
        os.set_inheritable(own, False)
    faulthandler.enable()  # a crash in native code prints the Python stack to stderr
    channel = Channel(fd, board)
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
