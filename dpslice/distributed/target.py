"""Load and call the implementation under test by an import string.

A minimal stand-in for ``dpslice.check.target`` (same convention), kept here
until that module lands: the spec is ``package.module:function`` or
``path/to/file.py:function``, a string so it crosses process boundaries; the
function is called with keyword arguments only, and only those its signature
names (every one of :data:`PARAMETERS` if it takes ``**kwargs``).  It returns
``(start, length)`` as ints or 0-dim integer tensors, or an object with
``.start`` and ``.length``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dpslice.distributed.errors import TargetLoadError

__all__ = [
    "PARAMETERS",
    "BadReturnError",
    "LoadedTarget",
    "call_target",
    "load_target",
    "resolve_spec",
]

#: Every keyword the harness can pass, in the order they are documented.
PARAMETERS: tuple[str, ...] = (
    "global_num_tokens_cpu",
    "global_num_tokens_gpu",
    "dp_rank",
    "dp_size",
    "can_run_graph",
    "graph_extent",
    "cuda_graph_batch",
    "num_tokens_per_bs",
)


class BadReturnError(TypeError):
    """The target returned something other than ``(start, length)`` of integers."""


@dataclass(frozen=True)
class LoadedTarget:
    """An implementation under test, with the keywords it will be passed."""

    spec: str
    function: Callable[..., object]
    keywords: tuple[str, ...]


def _split(spec: str) -> tuple[str, str]:
    module, sep, name = spec.rpartition(":")
    if not sep or not module or not name.isidentifier():
        raise TargetLoadError(
            f"target {spec!r} is not 'package.module:function' or 'path/to/file.py:function'"
        )
    return module, name


def resolve_spec(spec: str) -> str:
    """``spec`` with a file path made absolute, so a process started elsewhere finds it."""
    module, name = _split(spec)
    if module.endswith(".py"):
        return f"{Path(module).resolve()}:{name}"
    return spec


def _import(module: str) -> object:
    if not module.endswith(".py"):
        return importlib.import_module(module)
    path = Path(module).resolve()
    if not path.is_file():
        raise TargetLoadError(f"target file {str(path)!r} does not exist")
    # One module name per file path: loading the same file twice reuses it.
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    unique = f"_dpslice_target_{path.stem}_{digest}"
    if unique in sys.modules:
        return sys.modules[unique]
    spec = importlib.util.spec_from_file_location(unique, path)
    if spec is None or spec.loader is None:
        raise TargetLoadError(f"cannot load {str(path)!r} as a Python module")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[unique] = loaded
    spec.loader.exec_module(loaded)
    return loaded


def load_target(spec: str) -> LoadedTarget:
    """Import the function ``spec`` names and work out which keywords to pass it.

    Raises:
        TargetLoadError: the spec is malformed, the module or function is
            missing, or the function needs an argument the harness cannot give.
    """
    module_name, name = _split(spec)
    try:
        module = _import(module_name)
    except TargetLoadError:
        raise
    except Exception as error:
        raise TargetLoadError(
            f"importing {module_name!r} for target {spec!r} failed: {error!r}"
        ) from error
    function = getattr(module, name, None)
    if not callable(function):
        raise TargetLoadError(f"{module_name!r} has no callable {name!r} (target {spec!r})")
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError) as error:
        raise TargetLoadError(f"cannot read the signature of {spec!r}: {error}") from error
    params = signature.parameters.values()
    if any(param.kind is param.VAR_KEYWORD for param in params):
        return LoadedTarget(spec, function, PARAMETERS)
    for param in params:
        if param.kind is param.VAR_POSITIONAL or param.default is not param.empty:
            continue
        if param.kind is param.POSITIONAL_ONLY or param.name not in PARAMETERS:
            raise TargetLoadError(
                f"{spec} requires {param.name!r}, which the harness cannot pass: it calls by "
                f"keyword with only these names: {', '.join(PARAMETERS)}. Wrap the function "
                "in one that takes those"
            )
    by_keyword = {
        param.name
        for param in params
        if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)
    }
    keywords = tuple(name for name in PARAMETERS if name in by_keyword)
    return LoadedTarget(spec, function, keywords)


def _as_int(value: object, what: str) -> int:
    if type(value) is int:
        return value
    if hasattr(value, "dim") and hasattr(value, "dtype"):  # a torch.Tensor, not imported here
        import torch

        assert isinstance(value, torch.Tensor)
        if value.dim() == 0 and not value.dtype.is_floating_point and value.dtype != torch.bool:
            return int(value.item())
    raise BadReturnError(
        f"the returned {what} is {value!r} ({type(value).__name__}); "
        "expected an int or a 0-dim integer tensor"
    )


def call_target(target: LoadedTarget, arguments: Mapping[str, object]) -> tuple[int, int]:
    """Call ``target`` with the keywords it takes from ``arguments``; return ``(start, length)``.

    Raises:
        BadReturnError: the return value is not ``(start, length)`` of ints or
            0-dim integer tensors, nor an object with ``.start``/``.length``.
        Exception: whatever the target raises, unchanged.
    """
    result = target.function(**{name: arguments[name] for name in target.keywords})
    if hasattr(result, "start") and hasattr(result, "length"):
        start, length = result.start, result.length
    elif isinstance(result, tuple) and len(result) == 2:
        start, length = result
    else:
        raise BadReturnError(
            f"{target.spec} returned {result!r}; expected (start, length) or an object "
            "with .start and .length"
        )
    return _as_int(start, "start"), _as_int(length, "length")
