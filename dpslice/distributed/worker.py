"""The rank side of the round trip: join the process group, gather, judge.

:func:`join_group` and :func:`check_layout` serve runner workers (whose jobs are
:func:`join`, :func:`load` and :func:`evaluate`) and ``torchrun`` ranks alike.  Only the
gathers are collective, so a target that raises on one rank leaves the group in step.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any, NoReturn

import torch.distributed as dist
from torch._C._distributed_c10d import FileStore, Store

from dpslice._numpy_notice import torch
from dpslice.check.calls import CallObserver, LayoutCall
from dpslice.check.inflight import exited_at_import, portable_counterexample, portable_target
from dpslice.check.judge import judge_inputs, judge_rows
from dpslice.check.outcome import Outcome, call_target
from dpslice.check.registry import Counterexample
from dpslice.check.results import versions
from dpslice.check.rows import render_rows
from dpslice.check.target import Target, load_target
from dpslice.distributed.collectives import RowGatherer, gather_forward
from dpslice.distributed.consistency import counts_disagreement
from dpslice.distributed.driver import BACKENDS
from dpslice.distributed.errors import GatherMismatchError
from dpslice.errors import BadTargetError
from dpslice.layout import DPLayout
from dpslice.runner.worker import CallRecorder, Channel

_INIT_PARAMETERS = frozenset(inspect.signature(dist.init_process_group).parameters)


def warm() -> None:
    """Nothing: naming it makes the fork server import this module, and torch.distributed
    with it, once for every rank."""


def exit_rank(code: int) -> NoReturn:
    """End this rank's process with ``code``, leaving its process group as it is.

    Call it once every collective of the rank has completed.  The group is not
    destroyed: ``destroy_process_group`` deadlocked now and then in gloo's
    teardown (docs/distributed.md tells the story); the exit closes the sockets,
    frees the GPU memory, and skips two seconds of the interpreter's teardown.
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

    With ``store`` None the group is set up from the environment (``env://``), as
    under ``torchrun``.  Collectives time out after ``timeout_s``.
    """
    torch.set_num_threads(1)  # ranks share the cores; intra-op threads only contend
    timeout = timedelta(seconds=timeout_s)
    bound: dict[str, Any] = {}
    if BACKENDS[backend] == "cuda":
        # The harness gathers kilobytes: it never needs NVLink SHARP, whose
        # multicast objects can take a shared host's GPUs out of service.
        os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
        os.environ.setdefault("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        # Binding the group to its GPU (torch >= 2.3) makes NCCL set up its
        # communicator eagerly, in the start-up budget, not in the first layout's.
        if "device_id" in _INIT_PARAMETERS:
            bound["device_id"] = device
    else:
        device = torch.device("cpu")
    dist.init_process_group(
        backend, store=store, rank=rank, world_size=world_size, timeout=timeout, **bound
    )
    gatherer = RowGatherer()
    gatherer.probe(device)
    return device, gatherer


def device_name(device: torch.device) -> str:
    """A readable name of the device a rank gathers on."""
    if device.type == "cuda":
        return f"{device}: {torch.cuda.get_device_name(device)}"
    return str(device)


def check_layout(
    layout: DPLayout,
    rank: int,
    target: Target,
    gatherer: RowGatherer,
    device: torch.device,
    *,
    observer: CallObserver | None = None,
) -> Counterexample | None:
    """Rank ``rank``'s side of one round trip; every rank of the group must call it together.

    Gathers as the engine does, compares what the collectives produced with the layout
    model, then calls the target with the gathered counts and judges it with the
    battery's own judgement.  Returns ``None`` when the rank's slice holds exactly its
    own rows, else the counterexample, ready to cross to another process.  ``observer``
    is told of the call just before the target runs and once it is back.

    Raises:
        GatherMismatchError: the collectives did not produce what the layout model
            says the engine hands the slicer (the harness's failure, never the target's).
        Exception: a collective broke.
    """
    gathered = gather_forward(layout, rank, gatherer, device)
    call = layout.call(rank)
    cpu, gpu = gathered.global_num_tokens_cpu, gathered.global_num_tokens_gpu
    model = layout.gathered(rank, device=device)
    mismatch: str | None = None
    if any(row != gathered.peer_lists[0] for row in gathered.peer_lists):
        mismatch = f"the ranks derived different count lists: {gathered.peer_lists}"
    elif cpu != call.global_num_tokens_cpu:
        mismatch = (
            f"the gathered CPU counts {cpu} are not the {call.global_num_tokens_cpu} the "
            "layout model hands the slicer"
        )
    else:
        mismatch = counts_disagreement(cpu, gpu, dp_rank=rank)
    if mismatch is None and not torch.equal(gathered.buffer, model):
        mismatch = (
            f"the collectives' buffer {render_rows(gathered.buffer.cpu())} differs from the "
            f"layout model's {render_rows(model.cpu())}"
        )
    if mismatch is not None:
        raise GatherMismatchError(layout, rank, mismatch)

    # The counts this rank gathered, not the model's (equal, as checked above).
    call = replace(call, global_num_tokens_cpu=cpu)

    def invoke(target: Target, arguments: Mapping[str, object]) -> Outcome:
        if observer is None:
            return call_target(target, arguments)
        observer.calling(layout, call, list(cpu))
        outcome = call_target(target, arguments)  # a BaseException leaves it in flight
        observer.returned()
        return outcome

    arguments = target.arguments(call, gpu)
    called = LayoutCall(target, layout, call, invoke=invoke, arguments=arguments)
    found = judge_rows(called, gathered.buffer) or judge_inputs(called)
    return None if found is None else portable_counterexample(found)


#: This rank: its number, device and gatherer, and the targets it loaded.
_RANK: dict[str, Any] = {"targets": {}}


def join(
    channel: Channel, rank: int, world_size: int, backend: str, store: str, timeout_s: float
) -> str:
    """Join the group through the file ``store``; collectives time out after
    ``timeout_s``.  Returns the device's name."""
    device, gatherer = join_group(
        backend,
        rank,
        world_size,
        local_rank=rank,
        timeout_s=timeout_s,
        store=FileStore(store, world_size),
    )
    _RANK.update(rank=rank, device=device, gatherer=gatherer)
    return device_name(device)


def load(channel: Channel, spec: str) -> tuple[Target, dict[str, str]] | str:
    """Load the target as the round trip does; the target (without its function) and the
    versions, or why it cannot be checked."""
    from dpslice.distributed.round_trip import load_round_trip_target

    channel.loading(spec)
    try:
        target = load_round_trip_target(spec)
    except BadTargetError as exc:
        return " ".join(str(exc).split())
    except BaseException as exc:  # sys.exit() or the like at import: a bad target too
        return exited_at_import(spec, exc)
    _RANK["targets"][spec] = _RANK["targets"][target.spec] = target
    return portable_target(target), versions()


def evaluate(channel: Channel, layout: DPLayout, spec: str) -> Counterexample | None:
    """This rank's side of ``layout``: gather, call the target, judge its slice."""
    targets = _RANK["targets"]
    if spec not in targets:
        targets[spec] = load_target(spec)
    return check_layout(
        layout,
        _RANK["rank"],
        targets[spec],
        _RANK["gatherer"],
        _RANK["device"],
        observer=CallRecorder(channel),
    )
