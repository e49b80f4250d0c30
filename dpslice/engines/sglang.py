"""The installed sglang's own DP-local slice code, in ``dpslice check``'s calling convention.

Each adapter runs the engine's real function on a ``SimpleNamespace`` forward batch,
the engine's parallel-state lookups answering the drawn rank and DP size for that
call, and returns the ``(start, length)`` it computed; docs/engines.md has the table.
An adapter the installed release lacks raises :class:`~dpslice.errors.BadTargetError`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType, SimpleNamespace
from typing import Any

from dpslice.engines import import_engine_module
from dpslice.errors import BadTargetError

__all__ = [
    "INSTALL_HINT",
    "RELEASE",
    "available",
    "patched",
]

#: How to get an sglang that these adapters can import (docs/engines.md).
INSTALL_HINT = (
    "build the engine environment with `tox -e sglang`, or into this environment: "
    "pip install -r requirements/sglang-imports.txt && "
    "pip install --no-deps -r requirements/sglang-engine.txt"
)


def _import(name: str) -> ModuleType:
    return import_engine_module(
        name,
        engine="sglang",
        absent=f"dpslice.engines.sglang needs sglang, which is not installed; {INSTALL_HINT}",
        missing=lambda package: (
            f"sglang {importlib.metadata.version('sglang')} is installed, but importing {name} "
            f"needs {package!r}, which is missing; requirements/sglang-imports.txt lists "
            "what sglang's slice code imports (for the release in sglang-engine.txt)"
        ),
    )


_dp_attention: Any = _import("sglang.srt.layers.dp_attention")

#: The installed sglang release, as its package metadata says.
RELEASE: str = importlib.metadata.version("sglang")

#: Where each adapter's engine function appeared, for the message when it is missing.
_ADDED_BY = {
    "get_dp_local_slice_cpu": "added by sglang PR 24550, first released in 0.5.12",
    "get_dp_local_info": "present in every release dpslice knows",
}

# One lock for every patch: the lookups are module globals shared by all threads.
_PATCH_LOCK = threading.RLock()
_MISSING = object()


@contextmanager
def patched(module: ModuleType, **replacements: object) -> Iterator[None]:
    """Point ``module``'s names at ``replacements`` for the ``with`` block, then restore them.

    Only names the module already has are replaced: a release that lacks one
    raises ``AttributeError`` here instead of quietly growing a new global.
    """
    with _PATCH_LOCK:
        saved: dict[str, object] = {}
        try:
            for name, value in replacements.items():
                original = getattr(module, name, _MISSING)
                if original is _MISSING:
                    raise AttributeError(
                        f"sglang {RELEASE}: {module.__name__} has no {name} to point at the "
                        "drawn rank"
                    )
                saved[name] = original
                setattr(module, name, value)
            yield
        finally:
            for name, original in saved.items():
                setattr(module, name, original)


def _slot_lookups(dp_rank: int, dp_size: int) -> dict[str, object]:
    """The parallel-state lookups of the installed release, answering ``dp_rank``/``dp_size``."""
    if hasattr(_dp_attention, "dp_slot_in"):
        return {"dp_gather_width": lambda: dp_size, "dp_gather_slot": lambda: dp_rank}
    return {"get_attention_dp_rank": lambda: dp_rank}


_READS_WIDTH: bool = hasattr(_dp_attention, "dp_slot_in")


class _BoundsRecorder:
    """A device buffer that records the row bounds it is sliced with, and holds no rows."""

    def __init__(self) -> None:
        self.rows: slice | None = None

    def __getitem__(self, key: object) -> _BoundsRecorder:
        rows = key[0] if isinstance(key, tuple) else key
        if not isinstance(rows, slice):
            raise TypeError(f"the capturer indexed its device buffer with {key!r}, not a slice")
        self.rows = rows
        return self

    def cpu(self) -> _BoundsRecorder:
        return self

    def __setitem__(self, key: object, value: object) -> None:
        # The host cache the older capturer writes the slice into: nothing to keep.
        del key, value

    def bounds(self) -> tuple[Any, Any]:
        if self.rows is None:
            raise RuntimeError(f"sglang {RELEASE}: the capturer never sliced its device buffer")
        start, stop = self.rows.start, self.rows.stop
        # ``buffer[:n]`` has no start: the rows begin at 0.
        start = 0 if start is None else start
        return start, stop - start


def _define(name: str, contract: str, engine_function: Any, params: str, run: Any) -> None:
    """Define the adapter ``name``: keyword-only ``params``, each call ``run(**arguments)``.

    ``__wrapped__`` leads failure locations into the engine's source; ``__signature__``
    is the adapter's own, as the installed release takes it.
    """

    def adapter(**arguments: Any) -> Any:
        return run(**arguments)

    adapter.__name__ = adapter.__qualname__ = name
    adapter.__doc__ = f"sglang's {name}, its parallel-state lookups answering the drawn rank."
    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [inspect.Parameter(param, keyword, annotation="Any") for param in params.split()]
    adapter.__signature__ = inspect.Signature(parameters, return_annotation="Any")  # type: ignore[attr-defined]
    adapter.__wrapped__ = engine_function  # type: ignore[attr-defined]
    adapter.__dpslice_contract__ = contract  # type: ignore[attr-defined]
    globals()[name] = _adapters[name] = adapter


_adapters: dict[str, Callable[..., Any]] = {}
#: The ``dp_size`` parameter, where the installed release reads the gather's width.
_WIDTH = " dp_size" if _READS_WIDTH else ""


def _slice_cpu(
    *,
    global_num_tokens_cpu: Any,
    dp_rank: Any,
    can_run_graph: Any,
    cuda_graph_batch: Any,
    dp_size: Any = 0,
) -> Any:
    forward_batch = SimpleNamespace(global_num_tokens_cpu=global_num_tokens_cpu)
    with patched(_dp_attention, **_slot_lookups(dp_rank, dp_size)):
        return _dp_attention.get_dp_local_slice_cpu(forward_batch, can_run_graph, cuda_graph_batch)


def _local_info(*, global_num_tokens_gpu: Any, dp_rank: Any, dp_size: Any = 0) -> Any:
    forward_batch = SimpleNamespace(
        global_num_tokens_gpu=global_num_tokens_gpu,
        dp_local_start_pos=None,  # a fresh batch: the cache starts empty
        dp_local_num_tokens=None,
    )
    with patched(_dp_attention, **_slot_lookups(dp_rank, dp_size)):
        return _dp_attention.get_dp_local_info(forward_batch)


if hasattr(_dp_attention, "get_dp_local_slice_cpu"):
    _define(
        "get_dp_local_slice_cpu",
        "sglang-capturer",
        _dp_attention.get_dp_local_slice_cpu,
        f"global_num_tokens_cpu dp_rank{_WIDTH} can_run_graph cuda_graph_batch",
        _slice_cpu,
    )
_define(
    "get_dp_local_info",
    "sglang-gather",
    _dp_attention.get_dp_local_info,
    f"global_num_tokens_gpu dp_rank{_WIDTH}",
    _local_info,
)

# -- the routed-experts capturer's slice ----------------------------------------------


#: Why the capturer's slice is not available here, when it is not.
_capturer_missing = "the routed-experts capturer first shipped in 0.5.8"


def _capturer_module() -> tuple[ModuleType, str] | None:
    """The module holding the capturer's slice method, and its class, or ``None``."""
    global _capturer_missing
    for module_name, class_name in (
        ("sglang.srt.state_capturer.routed_experts", "RoutedExpertsCapturer"),
        ("sglang.srt.layers.moe.routed_experts_capturer", "_RoutedExpertsCapturerReal"),
    ):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                continue
            # The capturer imports sglang's model configs, which need transformers and
            # more than the slice functions do (requirements/sglang-capturer.txt).
            _capturer_missing = (
                f"importing {module_name} needs {exc.name!r}, which is missing; "
                "scripts/engine_releases.py builds an environment that has it"
            )
            return None
        if hasattr(module, class_name):
            return module, class_name
    return None


_capturer = _capturer_module()

if _capturer is not None:
    from dpslice._numpy_notice import torch

    _capturer_mod, _capturer_class_name = _capturer
    _capturer_class: Any = getattr(_capturer_mod, _capturer_class_name)
    # DP attention on, and (0.5.12 on) not a DeepEP backend, which never slices by rank.
    _capturer_lookups: dict[str, object] = {"is_dp_attention_enabled": lambda: True}
    if hasattr(_capturer_mod, "_is_scattered_a2a_backend"):
        _capturer_lookups["_is_scattered_a2a_backend"] = lambda: False
    _takes_cpu_counts = hasattr(_capturer_class, "_get_local_slice")  # 0.5.12 on
    _capturer_method = "_get_local_slice" if _takes_cpu_counts else "_sync_fwd_experts_buffer_DtoH"
    _EMPTY_LOCATIONS = torch.empty(0, dtype=torch.int64)

    def _run_capturer(
        *,
        dp_rank: Any,
        can_run_graph: Any,
        cuda_graph_batch: Any,
        global_num_tokens_cpu: Any = None,
        global_num_tokens_gpu: Any = None,
        dp_size: Any = 0,
    ) -> Any:
        capturer = object.__new__(_capturer_class)
        device_buffer = _BoundsRecorder()
        capturer.device_cache = SimpleNamespace(buffer=device_buffer)
        capturer.host_cache = SimpleNamespace(buffer=_BoundsRecorder())
        capturer.topk_size = capturer.num_experts_per_tok = 1
        forward_batch = SimpleNamespace(
            global_num_tokens_cpu=global_num_tokens_cpu,
            global_num_tokens_gpu=global_num_tokens_gpu,
            dp_local_start_pos=None,
            dp_local_num_tokens=None,
            # Rows the older capturer copies to the host; its slice does not depend on them.
            out_cache_loc=_EMPTY_LOCATIONS,
        )
        lookups = _slot_lookups(dp_rank, dp_size)
        with (
            patched(_dp_attention, **lookups),
            patched(
                _capturer_mod,
                **_capturer_lookups,
                **{name: value for name, value in lookups.items() if hasattr(_capturer_mod, name)},
            ),
        ):
            getattr(capturer, _capturer_method)(
                forward_batch=forward_batch,
                can_run_graph=can_run_graph,
                cuda_graph_batch=cuda_graph_batch,
            )
        return device_buffer.bounds()

    _define(
        "routed_experts_capturer_slice",
        "sglang-capturer",
        getattr(_capturer_class, _capturer_method),
        # Before PR 24550 the capturer took its bounds from get_dp_local_info.
        f"global_num_tokens_cpu dp_rank{_WIDTH} can_run_graph cuda_graph_batch"
        if _takes_cpu_counts
        else "global_num_tokens_gpu dp_rank can_run_graph cuda_graph_batch",
        _run_capturer,
    )


def available() -> dict[str, Callable[..., Any]]:
    """The adapters the installed release supports, by name."""
    return dict(_adapters)


def __getattr__(name: str) -> Any:
    if name == "routed_experts_capturer_slice":
        raise BadTargetError(f"sglang {RELEASE}: no {name} here ({_capturer_missing})")
    if name in _ADDED_BY:
        raise BadTargetError(f"sglang {RELEASE} has no {name} ({_ADDED_BY[name]})")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
