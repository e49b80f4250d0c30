"""Load the implementation under check (``package.module:function`` or
``path/to/file.py:function``) and the convention it is called with: keyword arguments
only, those of :data:`CONVENTION` its signature names (docs/check.md#calling-convention).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.machinery
import importlib.util
import inspect
import itertools
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from dpslice.contracts import DEFAULT_CONTRACT, PRESETS, Contract, CountsForm, resolve_contract
from dpslice.errors import BadTargetError, DeviceError, InvalidContractError

if TYPE_CHECKING:
    import torch

    from dpslice.layout import SliceCall

__all__ = [
    "CONTRACT_ATTRIBUTE",
    "CONVENTION",
    "DEVICES",
    "Target",
    "check_device",
    "check_spec",
    "is_file_spec",
    "load_against",
    "load_target",
    "resolve_spec",
    "spec_source",
    "target_from_callable",
]

#: Every keyword argument the check can pass, in the order calls are shown.
CONVENTION: tuple[str, ...] = (
    "global_num_tokens_cpu",
    "global_num_tokens_gpu",
    "dp_rank",
    "dp_size",
    "can_run_graph",
    "graph_extent",
    "cuda_graph_batch",
    "num_tokens_per_bs",
    "chunk_size",
    "chunk_index",
)

#: The function attribute through which a target names its contract.
CONTRACT_ATTRIBUTE = "__dpslice_contract__"

#: Where the check can build ``global_num_tokens_gpu``.
DEVICES: tuple[str, ...] = ("cpu", "cuda")

_SPEC_HINT = "name it as package.module:function or path/to/file.py:function"
_file_modules = itertools.count()


def check_device(device: str) -> str:
    """``device``; a :class:`DeviceError` if not in :data:`DEVICES` or a GPU is missing."""
    if device not in DEVICES:
        raise DeviceError(f"device={device!r}; choose one of {', '.join(DEVICES)}")
    if device == "cuda":
        from dpslice._numpy_notice import torch

        if not torch.cuda.is_available():
            raise DeviceError(
                f"device 'cuda' needs a CUDA GPU, and torch {torch.__version__} sees none "
                "here; check on the CPU (the default) or on a machine with a GPU"
            )
    return device


def _describe(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


@dataclass(frozen=True)
class Target:
    """A slice implementation, ready to be called with the convention.

    Attributes:
        spec: how it was named, reused in reproduce commands.
        name: the name shown in a rendered call.
        accepts: the convention's parameters it is passed.
        source_file: the file it is defined in, where failures are located.
        device: where ``global_num_tokens_gpu`` is built.
        contract: the call site it is judged as (see :mod:`dpslice.contracts`).
        contract_spec: what a reproduce command passes ``--contract``; ``None``: nothing.
        against: the implementation it is compared with (``--against OLD``), on the
            same device and contract; ``None`` if none.
    """

    spec: str
    function: Callable[..., object]
    name: str
    accepts: frozenset[str]
    source_file: str | None
    device: str = "cpu"
    contract: Contract = DEFAULT_CONTRACT
    contract_spec: str | None = None
    against: Target | None = None

    def reads(self, parameter: str) -> bool:
        """Whether the target is passed ``parameter``."""
        return parameter in self.accepts

    def judged_as(self, contract: str | Contract) -> Target:
        """This target, judged as ``contract`` (a preset's name, ``module:NAME`` or a
        :class:`~dpslice.contracts.Contract`; :class:`InvalidContractError` if none)."""
        resolved = resolve_contract(contract)
        judged = replace(self, contract=resolved, contract_spec=_contract_spec(resolved, contract))
        return judged if self.against is None else judged.compared_with(self.against)

    def compared_with(self, other: Target) -> Target:
        """This target with ``other`` as its :attr:`against`, on this target's device and
        judged as this target's contract, whatever ``other`` names itself."""
        other = replace(other, device=self.device, contract=self.contract, contract_spec=None)
        return replace(self, against=replace(other, against=None))

    def arguments(
        self, call: SliceCall, gpu_counts: Sequence[int] | torch.Tensor
    ) -> dict[str, object]:
        """The keyword arguments for ``call`` that the target names; ``gpu_counts`` fill
        the GPU count tensor on :attr:`device`, unless already a tensor (a rank's gathered
        counts), and built only when the target reads it."""
        counts: object = call.global_num_tokens_cpu
        if (
            self.contract.counts_form is CountsForm.INT32_CPU_TENSOR
            and isinstance(counts, list)
            and all(type(count) is int for count in counts)
        ):
            from dpslice._numpy_notice import torch

            # Host memory on purpose, whatever the device: that is where vLLM keeps it.
            counts = torch.tensor(counts, dtype=torch.int32)
        # Every name of the convention but the GPU tensor is a field of the call.
        values = {name: getattr(call, name) for name in self.accepts - {"global_num_tokens_gpu"}}
        values["global_num_tokens_cpu"] = counts
        if self.reads("global_num_tokens_gpu"):
            from dpslice._numpy_notice import torch

            values["global_num_tokens_gpu"] = (
                gpu_counts
                if isinstance(gpu_counts, torch.Tensor)
                else torch.tensor(list(gpu_counts), dtype=torch.int64, device=self.device)
            )
        return {name: values[name] for name in CONVENTION if name in self.accepts}


def _accepted_parameters(function: Callable[..., object], spec: str) -> frozenset[str]:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError) as exc:
        raise BadTargetError(
            f"cannot read the signature of {spec} ({_describe(exc)}); "
            "wrap it in a Python function with keyword parameters from the convention"
        ) from None
    accepts: set[str] = set()
    for parameter in signature.parameters.values():
        required = parameter.default is inspect.Parameter.empty
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            accepts.update(CONVENTION)
        elif parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        elif parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
            if required or parameter.name in CONVENTION:
                raise BadTargetError(
                    f"{spec}: parameter {parameter.name!r} is positional-only, but the check "
                    "passes keyword arguments only; drop the '/' from its signature"
                )
        elif parameter.name in CONVENTION:
            accepts.add(parameter.name)
        elif required:
            raise BadTargetError(
                f"{spec}: required parameter {parameter.name!r} is not in the calling "
                f"convention ({', '.join(CONVENTION)}); give it a default or rename it"
            )
    return frozenset(accepts)


def _source_file(function: Callable[..., object]) -> str | None:
    code = getattr(inspect.unwrap(function), "__code__", None)
    filename = getattr(code, "co_filename", None)
    return os.path.abspath(filename) if isinstance(filename, str) else None


def _contract_spec(contract: Contract, given: str | Contract | None) -> str | None:
    """:attr:`Target.contract_spec` for ``contract``, asked for as ``given`` (``None``: named
    by the target)."""
    if PRESETS.get(contract.name) == contract:
        return None if contract == DEFAULT_CONTRACT else contract.name
    if given is None:
        return None
    if isinstance(given, str):
        return given
    # A Contract handed over in Python: only the module that defines it can name it.
    return f"<module>:<NAME of the {contract.name} contract>"


def _own_contract(function: Callable[..., object], spec: str) -> Contract:
    named = getattr(function, CONTRACT_ATTRIBUTE, None)
    if named is None:
        return DEFAULT_CONTRACT
    try:
        return resolve_contract(named)
    except InvalidContractError as exc:
        raise BadTargetError(f"{spec}: its {CONTRACT_ATTRIBUTE} is not usable ({exc})") from None


def _refuse_lazy(function: Callable[..., object], spec: str) -> None:
    inner = inspect.unwrap(function)
    # An instance whose class defines ``async def __call__`` is as lazy.
    called = None if inspect.isroutine(inner) else vars(type(inner)).get("__call__")
    for candidate in (inner, called):
        if candidate is None:
            continue
        if inspect.iscoroutinefunction(candidate) or inspect.isasyncgenfunction(candidate):
            raise BadTargetError(
                f"{spec} is an async function; the check calls it synchronously and would get "
                "a coroutine, not a slice: name a plain def (run the coroutine inside it)"
            )
        if inspect.isgeneratorfunction(candidate):
            raise BadTargetError(
                f"{spec} is a generator function; calling it returns a generator, not a "
                "slice: return (start, length) instead of yielding it"
            )


def target_from_callable(
    function: Callable[..., object],
    *,
    spec: str | None = None,
    device: str = "cpu",
    contract: str | Contract | None = None,
) -> Target:
    """Wrap a callable already in hand as a :class:`Target`; ``contract`` overrides the one
    it names in ``__dpslice_contract__`` (default: :data:`DEFAULT_CONTRACT`).

    Raises:
        BadTargetError: it is not callable or its signature breaks the convention.
        DeviceError, InvalidContractError: see :func:`check_device`, :meth:`Target.judged_as`.
    """
    check_device(device)
    name = getattr(function, "__qualname__", None) or getattr(function, "__name__", None)
    if spec is None:
        spec = f"{getattr(function, '__module__', '?')}:{name or type(function).__name__}"
    if not callable(function):
        raise BadTargetError(
            f"{spec} is a {type(function).__name__}, not callable; name a function"
        )
    _refuse_lazy(function, spec)
    own = _own_contract(function, spec) if contract is None else DEFAULT_CONTRACT
    target = Target(
        spec=spec,
        function=function,
        name=(name or "target").rpartition(".")[2],
        accepts=_accepted_parameters(function, spec),
        source_file=_source_file(function),
        device=device,
        contract=own,
        contract_spec=_contract_spec(own, None),
    )
    return target if contract is None else target.judged_as(contract)


def is_file_spec(location: str) -> bool:
    """Whether the part of a spec before the colon names a file, not a module."""
    return location.endswith(".py") or "/" in location or os.sep in location


def resolve_spec(spec: str) -> str:
    """``spec`` with a file path made absolute, so a process started elsewhere finds it."""
    location, colon, path = spec.rpartition(":")
    if colon and location and is_file_spec(location):
        return f"{Path(location).resolve()}:{path}"
    return spec


def spec_source(spec: str) -> Path | None:
    """The file that defines ``spec``'s module, found without importing it (``sys.path``, then
    the working directory), or ``None``."""
    location = spec.rpartition(":")[0]
    if is_file_spec(location):
        return Path(location).resolve()
    cwd = os.getcwd()
    search = [entry for entry in sys.path if entry not in ("", cwd)] + [cwd]
    parts = location.split(".")
    found = None
    for depth in range(1, len(parts) + 1):
        found = importlib.machinery.PathFinder.find_spec(".".join(parts[:depth]), search)
        if found is None:
            return None
        search = list(found.submodule_search_locations or ())
    if found is None or not found.has_location or found.origin is None:
        return None
    return Path(found.origin).resolve()


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise BadTargetError(
                f"module {name!r} not found; check the spelling, install it, or run from "
                "the directory that holds it"
            ) from None
        raise BadTargetError(f"importing {name!r} failed: {_describe(exc)}") from None
    except Exception as exc:
        raise BadTargetError(f"importing {name!r} raised {_describe(exc)}") from None


def _load_file(location: str) -> ModuleType:
    path = Path(location)
    if not path.is_file():
        raise BadTargetError(f"file {location!r} not found")
    stem = re.sub(r"\W", "_", path.stem)
    module_name = f"_dpslice_target_{stem}_{next(_file_modules)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise BadTargetError(f"{location!r} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise BadTargetError(f"loading {location!r} raised {_describe(exc)}") from None
    return module


def _attribute(module: ModuleType, location: str, path: str) -> Any:
    value: Any = module
    # Python keeps identifiers in NFKC form: a name typed in another form finds them too.
    for part in unicodedata.normalize("NFKC", path).split("."):
        if not hasattr(value, part):
            names = [name for name in dir(value) if not name.startswith("_")]
            close = difflib.get_close_matches(part, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise BadTargetError(f"{location!r} has no attribute {part!r}{hint}")
        value = getattr(value, part)
    return value


def check_spec(spec: str, *, against: str | None = None) -> None:
    """Refuse, with :class:`BadTargetError` and without importing anything, a spec (or
    ``--against`` spec) that is no string, has no ``:function`` part or Python name after
    the colon, or names a missing file: a typo is an error before any worker starts."""
    if against is not None:
        check_spec(spec)
        try:
            check_spec(against)
        except BadTargetError as exc:
            raise BadTargetError(f"bad --against target {against}: {exc}") from None
        return
    if not isinstance(spec, str):
        raise BadTargetError(f"target {spec!r} is not a string; {_SPEC_HINT}")
    location, colon, path = spec.rpartition(":")
    if not colon or not location or not path:
        raise BadTargetError(f"target {spec!r} has no ':function' part; {_SPEC_HINT}")
    if not all(part.isidentifier() for part in path.split(".")):
        raise BadTargetError(f"{path!r} after the colon is not a Python name; {_SPEC_HINT}")
    if is_file_spec(location) and not Path(location).is_file():
        raise BadTargetError(f"file {location!r} not found")


def load_target(
    spec: str,
    *,
    device: str = "cpu",
    contract: str | Contract | None = None,
    against: str | None = None,
) -> Target:
    """Load ``package.module:function`` or ``path/to/file.py:function``; ``contract`` as for
    :func:`target_from_callable`, ``against`` as for :func:`load_against`.

    Raises:
        BadTargetError: the spec names no target, its module fails to import, or
            the function is not callable with the calling convention.
        DeviceError: see :func:`check_device` (checked before anything is imported).
    """
    check_device(device)
    check_spec(spec, against=against)
    location, _, path = spec.rpartition(":")
    module = _load_file(location) if is_file_spec(location) else _import_module(location)
    function = _attribute(module, location, path)
    target = target_from_callable(function, spec=spec, device=device, contract=contract)
    return target if against is None else load_against(against, target)


def load_against(against: str | Target | Callable[..., object], target: Target) -> Target:
    """``target`` compared with ``against`` (:meth:`Target.compared_with`), loaded as
    ``target`` was: on its device, judged as its contract."""
    try:
        if isinstance(against, str):
            against = load_target(against, device=target.device, contract=target.contract)
        elif not isinstance(against, Target):
            against = target_from_callable(against, device=target.device, contract=target.contract)
    except BadTargetError as exc:
        raise BadTargetError(f"bad --against target {against}: {exc}") from None
    return target.compared_with(against)
