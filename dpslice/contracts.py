"""Contracts: what one call site hands its slice function, and which rows it owns.

A slice is right or wrong only for the call site it serves: ``dpslice check
--contract NAME`` judges a target in that site's states only.  docs/contracts.md
has the presets (:data:`PRESETS`) and the facts behind them.
"""

from __future__ import annotations

import enum
import importlib
import re
from dataclasses import dataclass, field, replace

from dpslice.errors import InvalidContractError
from dpslice.layout import DPLayout, Mode, Owns, RowSpan

__all__ = [
    "DEFAULT_CONTRACT",
    "MAX_CONTRACT_ROWS",
    "PRESETS",
    "SGLANG_CAPTURER",
    "SGLANG_GATHER",
    "VLLM_CHUNKED",
    "VLLM_DP",
    "BoundsUse",
    "Contract",
    "CountsForm",
    "GpuCounts",
    "resolve_contract",
]


class CountsForm(enum.Enum):
    """How the per-rank CPU counts reach the slice."""

    #: A Python list of ints (sglang's ``global_num_tokens_cpu``), ``None`` in capture.
    LIST = "list"
    #: A host-resident int32 tensor (vLLM's ``num_tokens_across_dp_cpu``).
    INT32_CPU_TENSOR = "int32_cpu_tensor"


class GpuCounts(enum.Enum):
    """What the device-side count tensor (``global_num_tokens_gpu``) holds."""

    #: The same counts as the CPU list (the dummy batch's during capture).
    LIVE = "live"
    #: In a decode-graph replay, every rank's whole block (the graph's static tensor).
    BLOCKS_IN_REPLAY = "blocks_in_replay"


class BoundsUse(enum.Enum):
    """Where the call site uses the bounds the slice returns."""

    #: ``buffer[start:start + length]`` on the host: tensor bounds sync there.
    HOST = "host"
    #: A kernel reads them on the device: only the call itself must not sync.
    DEVICE = "device"


_NAME = re.compile(r"[a-z0-9]+([-_.][a-z0-9]+)*")

#: The largest ``min_count``, attention-TP size and ``max_num_tokens_per_bs`` a
#: contract may name: the check builds every rank's rows of the buffers it draws,
#: and at this bound the largest is under 100,000 rows.
MAX_CONTRACT_ROWS = 1024


def _why_bounded(values: object) -> str:
    ints = [v for v in (values if isinstance(values, tuple) else (values,)) if type(v) is int]
    if not any(value > MAX_CONTRACT_ROWS for value in ints):
        return ""
    return (
        " (the check builds every rank's rows of the buffers it draws, and a larger value "
        "makes buffers it cannot build)"
    )


#: Modes in which a rank has counts to slice by: every mode but capture.
_COUNTED = frozenset(Mode) - {Mode.GRAPH_CAPTURE}


@dataclass(frozen=True)
class Contract:
    """One call site of a DP-local slice: the states it is reached in and what it needs.

    Attributes:
        name: lower-case words joined by ``-``, ``_`` or ``.``.
        summary: the call site in one line.
        modes: the engine states the call site is reached in.
        skipped_gather: the all-gather can be skipped there (a one-entry count list).
        owns: the rows the rank's slice must cover.
        counts_form: how the CPU counts arrive.
        gpu_counts: what the device-side count tensor holds.
        bounds_used_on: where the returned bounds are used.
        min_count: the fewest tokens a rank ever gathers (vLLM pads an idle rank to a
            one-token dummy batch, so 1).
        attn_tp_sizes: the attention-TP sizes counts are rounded to.
        max_num_tokens_per_bs: the most rows per request of a decode graph (above 1
            under speculative decoding).  These three are at most :data:`MAX_CONTRACT_ROWS`.

    Raises:
        InvalidContractError: a field has the wrong type or an impossible value.
    """

    name: str
    summary: str
    modes: frozenset[Mode]
    skipped_gather: bool = False
    owns: Owns = Owns.REAL_ROWS
    counts_form: CountsForm = CountsForm.LIST
    gpu_counts: GpuCounts = GpuCounts.LIVE
    bounds_used_on: BoundsUse = BoundsUse.HOST
    min_count: int = 0
    attn_tp_sizes: tuple[int, ...] = (1, 2, 4)
    max_num_tokens_per_bs: int = 8
    #: The modes with counts to slice by, in :class:`Mode` order (derived).
    counted_modes: tuple[Mode, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise InvalidContractError(
                f"contract name {self.name!r}: use lower-case words joined by '-', e.g. "
                "'my-engine-capturer'"
            )
        if not isinstance(self.summary, str) or not self.summary or "\n" in self.summary:
            raise InvalidContractError(f"contract {self.name}: the summary must be one line")
        if not isinstance(self.modes, frozenset) or not self.modes:
            raise InvalidContractError(
                f"contract {self.name}: modes must be a non-empty frozenset of dpslice.Mode, "
                "e.g. frozenset({Mode.SUM_LEN})"
            )
        if not all(isinstance(mode, Mode) for mode in self.modes):
            raise InvalidContractError(f"contract {self.name}: every mode must be a dpslice.Mode")
        for name, kind in (
            ("owns", Owns),
            ("counts_form", CountsForm),
            ("gpu_counts", GpuCounts),
            ("bounds_used_on", BoundsUse),
        ):
            if not isinstance(getattr(self, name), kind):
                raise InvalidContractError(
                    f"contract {self.name}: {name} must be a dpslice.contracts.{kind.__name__}"
                )
        if type(self.skipped_gather) is not bool:
            raise InvalidContractError(f"contract {self.name}: skipped_gather must be a bool")
        if self.skipped_gather and not self.modes & _COUNTED:
            raise InvalidContractError(
                f"contract {self.name}: a skipped gather needs a mode with counts (not only "
                "capture)"
            )
        for name, minimum in (("min_count", 0), ("max_num_tokens_per_bs", 1)):
            value = getattr(self, name)
            if type(value) is not int or not minimum <= value <= MAX_CONTRACT_ROWS:
                raise InvalidContractError(
                    f"contract {self.name}: {name} must be an int from {minimum} to "
                    f"{MAX_CONTRACT_ROWS}, not {value!r}{_why_bounded(value)}"
                )
        sizes = self.attn_tp_sizes
        if (
            not isinstance(sizes, tuple)
            or not sizes
            or not all(type(size) is int and 1 <= size <= MAX_CONTRACT_ROWS for size in sizes)
        ):
            raise InvalidContractError(
                f"contract {self.name}: attn_tp_sizes must be a non-empty tuple of ints from 1 "
                f"to {MAX_CONTRACT_ROWS}, not {sizes!r}{_why_bounded(sizes)}"
            )
        counted = tuple(mode for mode in Mode if mode in self.modes and mode in _COUNTED)
        object.__setattr__(self, "counted_modes", counted)

    def reaches(self, mode: Mode) -> bool:
        return mode in self.modes

    def device_counts(self, layout: DPLayout, dp_rank: int) -> list[int]:
        """The per-rank counts the device-side count tensor holds on ``dp_rank``."""
        if self.gpu_counts is GpuCounts.BLOCKS_IN_REPLAY and layout.mode is Mode.GRAPH_REPLAY:
            return layout.block_counts(dp_rank)
        return layout.gpu_counts(dp_rank)

    def span(self, layout: DPLayout, dp_rank: int) -> RowSpan:
        """Where the rows ``dp_rank`` owns sit in its gathered buffer."""
        return layout.span(dp_rank, self.owns)

    def describe(self) -> str:
        """One line per fact, for ``--list-contracts`` and reports."""
        modes = ", ".join(mode.name for mode in Mode if mode in self.modes)
        skipped = " + skipped gathers" if self.skipped_gather else ""
        return (
            f"states: {modes}{skipped}; owns {self.owns.name}; counts as "
            f"{self.counts_form.value}; device counts {self.gpu_counts.value}; bounds used "
            f"on the {self.bounds_used_on.value}"
        )


_SGLANG_STATES = frozenset(
    {Mode.SUM_LEN, Mode.MAX_LEN, Mode.GRAPH_REPLAY, Mode.PREFILL_GRAPH, Mode.GRAPH_CAPTURE}
)

#: sglang's routed-experts and indexer capturers (the slice of sglang PR 24550).
SGLANG_CAPTURER = Contract(
    name="sglang-capturer",
    summary="sglang's routed-experts / indexer capturer: the rank's real rows, sliced on the host",
    modes=_SGLANG_STATES,
    skipped_gather=True,
)

#: ``get_dp_local_info``-style gather and scatter: whole blocks, bounds read on the device.
SGLANG_GATHER = Contract(
    name="sglang-gather",
    summary="sglang's get_dp_local_info gather/scatter: the whole padded block, bounds on device",
    modes=_SGLANG_STATES,
    owns=Owns.PADDED_BLOCK,
    gpu_counts=GpuCounts.BLOCKS_IN_REPLAY,
    bounds_used_on=BoundsUse.DEVICE,
)

#: vLLM's DP metadata and its all-to-all combine: an int32 CPU count tensor.
VLLM_DP = Contract(
    name="vllm-dp",
    summary="vLLM's DPMetadata / combine slice: int32 CPU counts, the whole padded block",
    modes=frozenset({Mode.SUM_LEN, Mode.MAX_LEN}),
    owns=Owns.PADDED_BLOCK,
    counts_form=CountsForm.INT32_CPU_TENSOR,
    min_count=1,
    attn_tp_sizes=(1,),
    max_num_tokens_per_bs=1,
)

#: vLLM's DP chunking: one gathered buffer per chunk of ``max_num_tokens_per_dp_rank``.
VLLM_CHUNKED = replace(
    VLLM_DP,
    name="vllm-chunked",
    summary="vLLM's chunked DP: one gathered buffer per chunk, int32 CPU counts of the forward",
    modes=frozenset({Mode.DP_CHUNK}),
)

#: The presets by name, in the order ``--list-contracts`` prints them.
PRESETS: dict[str, Contract] = {
    contract.name: contract for contract in (SGLANG_CAPTURER, SGLANG_GATHER, VLLM_DP, VLLM_CHUNKED)
}

#: What a target is judged by unless it or the user names another contract.
DEFAULT_CONTRACT = SGLANG_CAPTURER


def _own_name(contract: Contract, named: str | None = None) -> Contract:
    """``contract``, unless it takes a preset's name without being that preset."""
    if contract.name in PRESETS and PRESETS[contract.name] != contract:
        which = f"contract {named}" if named else "a contract of your own"
        raise InvalidContractError(
            f"{which} is named {contract.name!r}, as a preset is, but differs from it; give "
            "it a name of its own (reports name the contract a target was judged by)"
        )
    return contract


def _failed_import(contract: str, module_name: str, exc: BaseException) -> InvalidContractError:
    message = " ".join(str(exc).split())
    raised = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return InvalidContractError(
        f"contract {contract}: importing {module_name!r} raised {raised}; fix that module, "
        "or name another contract"
    )


def resolve_contract(contract: str | Contract) -> Contract:
    """A preset's name, ``module:NAME`` of a :class:`Contract`, or a contract itself.

    Raises:
        InvalidContractError: no such preset, the module or attribute is missing,
            the module's import raised, it is not a :class:`Contract`, or it takes
            a preset's name without being that preset.
    """
    if isinstance(contract, Contract):
        return _own_name(contract)
    if not isinstance(contract, str):
        raise InvalidContractError(f"contract {contract!r} is neither a name nor a Contract")
    if contract in PRESETS:
        return PRESETS[contract]
    module_name, colon, attribute = contract.partition(":")
    if not colon:
        raise InvalidContractError(
            f"no contract named {contract!r}; choose from {', '.join(PRESETS)} or name your "
            "own as module:NAME"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module_name + ".").startswith(exc.name + "."):
            raise _failed_import(contract, module_name, exc) from None
        raise InvalidContractError(
            f"contract {contract}: cannot import {module_name!r} ({exc}); check the spelling, "
            "or run from the directory that holds it"
        ) from None
    except (Exception, SystemExit) as exc:  # the module's own code: the contract's fault
        raise _failed_import(contract, module_name, exc) from None
    value = getattr(module, attribute, None)
    if not isinstance(value, Contract):
        found = "missing" if value is None else f"a {type(value).__name__}"
        raise InvalidContractError(
            f"contract {contract}: {module_name}.{attribute} is {found}, "
            "not a dpslice.contracts.Contract"
        )
    return _own_name(value, contract)
