"""dpslice's pytest plugin, loaded through the ``pytest11`` entry point.

* Markers, registered in ``pytest_configure`` so downstream ``--strict-markers``
  runs pass: ``cuda`` (skipped cleanly where no CUDA device exists) and
  ``no_sync`` (the test body fails on a host-device sync).
* A ``no_sync`` fixture: ``with no_sync:`` or ``with no_sync(mode="probe"):``.
* A guard against CUDA tests passing vacuously on CPU CI: every test under a
  directory named in the ``dpslice_cuda_dirs`` ini option (default ``cuda``)
  must carry ``@pytest.mark.cuda``; one that does not is detected at
  collection and errors at setup, on every machine.  With
  ``dpslice_strict_cuda = true``, a GPU run also fails any unmarked test that
  allocates CUDA memory (it would error or pass vacuously on CPU CI).

Nothing here imports torch at import time or initialises CUDA: pytest loads
this plugin in every run of every project that has dpslice installed.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from dpslice.sync import SyncGuard

__all__ = ["CUDA_MARKER", "NO_SYNC_MARKER", "NoSyncFixture", "cuda_available", "no_sync"]

CUDA_MARKER = "cuda: the test needs a CUDA device; skipped cleanly where none exists"
NO_SYNC_MARKER = (
    "no_sync(mode='auto'): fail the test if its body synchronises the host with a CUDA "
    "device; mode is 'auto' (CUDA mode on a GPU, CPU-only mode elsewhere), 'cuda', "
    "'probe' or 'cpu'"
)
_MISSING_CUDA_MARKER = pytest.StashKey[str]()


def cuda_available() -> bool:
    """Whether a CUDA device can be used; never initialises CUDA itself."""
    import torch

    return bool(torch.cuda.is_available())


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "dpslice_cuda_dirs",
        "directory names whose tests must carry @pytest.mark.cuda (empty: no check)",
        type="args",
        default=["cuda"],
    )
    parser.addini(
        "dpslice_strict_cuda",
        "on a GPU, fail unmarked tests that allocate CUDA memory",
        type="bool",
        default=False,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", CUDA_MARKER)
    config.addinivalue_line("markers", NO_SYNC_MARKER)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker("no_sync")
        if marker is not None:
            _guard_for(marker)  # a malformed marker is a usage error, found before any test runs
    cuda_dirs = set(config.getini("dpslice_cuda_dirs"))
    if not cuda_dirs:
        return
    for item in items:
        path = Path(item.path)
        # Relative to the rootdir, so a checkout that itself sits in a folder
        # named "cuda" does not mark every test.
        if path.is_relative_to(config.rootpath):
            path = path.relative_to(config.rootpath)
        folders = set(path.parent.parts)
        named = sorted(folders & cuda_dirs)
        if named and item.get_closest_marker("cuda") is None:
            item.stash[_MISSING_CUDA_MARKER] = (
                f"{item.nodeid} lives under a '{named[0]}/' directory but lacks "
                "@pytest.mark.cuda: on a machine without a GPU it would run instead of being "
                "skipped, and could pass without testing anything. Add the marker (or "
                "pytestmark = pytest.mark.cuda for the module)"
            )


def pytest_runtest_setup(item: pytest.Item) -> None:
    missing = item.stash.get(_MISSING_CUDA_MARKER, None)
    if missing is not None:
        pytest.fail(missing, pytrace=False)
    if item.get_closest_marker("cuda") is not None and not cuda_available():
        pytest.skip("needs a CUDA device; none is available here")


def _cuda_allocations() -> int:
    """Cumulative CUDA allocations so far, 0 if CUDA was never initialised."""
    import torch

    is_initialized: Callable[[], bool] = torch.cuda.is_initialized  # untyped in torch
    if not is_initialized():
        return 0
    return sum(
        int(torch.cuda.memory_stats(device).get("allocation.all.allocated", 0))
        for device in range(torch.cuda.device_count())
    )


def _guard_for(marker: pytest.Mark) -> SyncGuard:
    from dpslice.sync import no_sync as make_guard

    if marker.args:
        raise pytest.UsageError(
            f"@pytest.mark.no_sync takes keyword arguments only, e.g. "
            f"@pytest.mark.no_sync(mode='probe'); got {marker.args!r}"
        )
    try:
        return make_guard(**marker.kwargs)
    except (TypeError, ValueError) as error:
        raise pytest.UsageError(f"@pytest.mark.no_sync{marker.kwargs!r}: {error}") from error


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    strict = (
        bool(item.config.getini("dpslice_strict_cuda"))
        and item.get_closest_marker("cuda") is None
        and cuda_available()
    )
    before = _cuda_allocations() if strict else 0
    marker = item.get_closest_marker("no_sync")
    if marker is None:
        result = yield
    else:
        with _guard_for(marker):
            result = yield
    if strict and _cuda_allocations() > before:
        pytest.fail(
            f"{item.nodeid} allocated CUDA memory without @pytest.mark.cuda; on CPU CI it "
            "would error, or pass without testing anything. Mark it cuda",
            pytrace=False,
        )
    return result


class NoSyncFixture:
    """What the ``no_sync`` fixture gives: a guard factory that is also a guard.

    ``with no_sync:`` guards in the automatic mode; ``with no_sync(mode="probe"):``
    picks one.  Both nest.
    """

    def __init__(self) -> None:
        self._open: list[SyncGuard] = []

    def __call__(self, mode: str = "auto", **options: Any) -> SyncGuard:
        from dpslice.sync import no_sync as make_guard

        return make_guard(mode, **options)  # type: ignore[arg-type]

    def __enter__(self) -> SyncGuard:
        guard = self()
        self._open.append(guard)
        return guard.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        __tracebackhide__ = True
        self._open.pop().__exit__(exc_type, exc, tb)


@pytest.fixture
def no_sync() -> NoSyncFixture:
    """Fail a block on a host-device sync: ``with no_sync:`` or ``with no_sync(mode=...):``."""
    return NoSyncFixture()
