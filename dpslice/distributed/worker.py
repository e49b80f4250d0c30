"""The rank side of the round trip: join the process group, then answer layouts.

:func:`join_group` is shared by both ways of starting ranks: the spawned
workers of :class:`~dpslice.distributed.driver.RoundTripSession` (this
module's :func:`spawned_worker`) and ``torchrun``
(:mod:`dpslice.distributed.torchrun`).

Protocol of a spawned worker over its pipe to the driver::

    driver -> worker   ("layout", seq, DPLayout, target spec) | ("stop",)
    worker -> driver   ("ready", rank, device name)
                       | ("calling", seq, the call's arguments as the report shows them)
                       | ("outcome", seq, Counterexample or None)
                       | ("error", rank, traceback text)   (then it exits 1)
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import traceback
from collections.abc import Mapping
from datetime import timedelta
from functools import partial
from multiprocessing.connection import Connection
from typing import Any, NoReturn

import torch.distributed as dist
from torch._C._distributed_c10d import Store, TCPStore

from dpslice._numpy_notice import torch
from dpslice.check.target import Target, load_target
from dpslice.distributed.collectives import RowGatherer
from dpslice.distributed.rank_check import check_layout
from dpslice.isolation import die_with_parent

__all__ = ["BACKENDS", "device_name", "exit_rank", "join_group", "spawned_worker"]

#: The backends the harness runs on, and the device kind each gathers on.
BACKENDS = {"gloo": "cpu", "nccl": "cuda"}

_INIT_PARAMETERS = frozenset(inspect.signature(dist.init_process_group).parameters)


def exit_rank(code: int) -> NoReturn:
    """End this rank's process with ``code``, leaving its process group as it is.

    Call it once every collective of the rank has completed.  The group is not
    destroyed: ``~ProcessGroupGloo`` joins gloo's worker threads while holding
    the GIL, and a worker thread that drops the last reference to a finished
    collective's tensor waits for the GIL to free the tensor's Python object,
    so ``destroy_process_group`` deadlocked now and then (torch 2.4 and 2.6, up
    to one exit in three on a loaded machine; docs/distributed.md tells the story).
    The exit itself closes the sockets and frees the GPU memory, and skips the
    interpreter's teardown of torch, which takes about two seconds.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def join_group(
    backend: str,
    rank: int,
    world_size: int,
    *,
    local_rank: int,
    timeout_s: float,
    store: Store | None = None,
) -> tuple[torch.device, RowGatherer]:
    """Initialise this rank's process group and warm it up; return its device and gatherer.

    With ``store`` None the group is set up from the environment (``env://``:
    ``MASTER_ADDR``, ``MASTER_PORT``), as under ``torchrun``.  Collectives
    time out after ``timeout_s``.
    """
    torch.set_num_threads(1)  # ranks share the cores; intra-op threads only contend
    timeout = timedelta(seconds=timeout_s)
    if BACKENDS[backend] == "cuda":
        # The harness gathers kilobytes: it never needs NVLink SHARP, whose
        # multicast objects can take a shared host's GPUs out of service.
        os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
        os.environ.setdefault("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        # Binding the group to its GPU up front (torch >= 2.3) makes NCCL set up
        # its communicator eagerly, in the start-up budget, not in the first layout's.
        bound: dict[str, Any] = {"device_id": device} if "device_id" in _INIT_PARAMETERS else {}
        dist.init_process_group(
            backend, store=store, rank=rank, world_size=world_size, timeout=timeout, **bound
        )
    else:
        device = torch.device("cpu")
        dist.init_process_group(
            backend, store=store, rank=rank, world_size=world_size, timeout=timeout
        )
    gatherer = RowGatherer()
    gatherer.probe(device)
    return device, gatherer


def device_name(device: torch.device) -> str:
    """A readable name of the device a rank gathers on."""
    if device.type == "cuda":
        return f"{device}: {torch.cuda.get_device_name(device)}"
    return str(device)


def _calling(conn: Connection, seq: int, arguments: Mapping[str, object]) -> None:
    conn.send(("calling", seq, dict(arguments)))


def spawned_worker(
    rank: int,
    world_size: int,
    backend: str,
    store_address: tuple[str, int],
    conn: Connection,
    parent_pid: int,
    startup_timeout_s: float,
    timeout_s: float,
) -> None:
    """Entry point of one spawned rank: join the group, answer layouts until told to stop.

    Collectives time out after ``timeout_s`` (the driver's layout timeout);
    reaching the driver's store may take up to ``startup_timeout_s``.

    Any exception is sent to the driver as text and the process exits 1 at
    once, without tearing the group down: a peer may be blocked in a
    collective, and the driver kills the whole group anyway.
    """
    # A driver killed outright (SIGKILL, OOM) runs no cleanup; without this its
    # ranks would sit in a collective for the whole collective timeout.
    die_with_parent(parent_pid)
    targets: dict[str, Target] = {}
    try:
        host, port = store_address
        connect = timedelta(seconds=startup_timeout_s)
        store = TCPStore(host, port, is_master=False, timeout=connect)
        device, gatherer = join_group(
            backend, rank, world_size, local_rank=rank, timeout_s=timeout_s, store=store
        )
        conn.send(("ready", rank, device_name(device)))
        while True:
            message = conn.recv()
            if message[0] == "stop":
                break
            _, seq, layout, spec = message
            if spec not in targets:
                targets[spec] = load_target(spec)
            outcome = check_layout(
                layout,
                rank,
                targets[spec],
                gatherer,
                device,
                # The call in flight, for the driver to show if it never returns.
                on_call=partial(_calling, conn, seq),
            )
            conn.send(("outcome", seq, outcome))
    except BaseException:
        with contextlib.suppress(OSError, ValueError):  # else the driver is gone
            conn.send(("error", rank, traceback.format_exc()))
        exit_rank(1)
    conn.close()
    exit_rank(0)
