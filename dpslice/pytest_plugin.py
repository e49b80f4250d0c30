"""dpslice's pytest plugin, loaded through the ``pytest11`` entry point.

* Markers, registered in ``pytest_configure`` so downstream ``--strict-markers``
  runs pass: ``cuda`` (skipped cleanly where no CUDA device exists) and
  ``no_sync`` (the test body fails on a host-device sync).
* A ``no_sync`` fixture: requesting it guards the test body (the marker's
  mode if the test has one, else ``"auto"``), and it makes nested guards:
  ``with no_sync(mode="cpu", record=True) as guard:``.
* Opt-in repository rules, off unless a project's pytest configuration turns
  them on: every test under a directory named in ``dpslice_cuda_dirs``
  (default: none) must carry ``@pytest.mark.cuda``, detected at collection and
  an error at setup on every machine; with ``dpslice_strict_cuda = true``, a
  GPU run also fails any unmarked test that allocates CUDA memory (it would
  error or pass vacuously on CPU CI).

pytest loads this plugin in every run of every project that has dpslice
installed, so a project that uses neither marker nor the fixture sees no
change: nothing here imports torch at import time or initialises CUDA, and
no rule applies until configured.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from contextvars import ContextVar
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
#: Set by the ``no_sync`` fixture: the test asked for its body to be guarded.
_GUARD_BODY = pytest.StashKey[bool]()


def cuda_available() -> bool:
    """Whether a CUDA device can be used; never initialises CUDA itself."""
    import torch

    return bool(torch.cuda.is_available())


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "dpslice_cuda_dirs",
        "directory names whose tests must carry @pytest.mark.cuda (default: none, no check)",
        type="args",
        default=[],
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
    if marker.args:
        raise pytest.UsageError(
            f"@pytest.mark.no_sync takes keyword arguments only, e.g. "
            f"@pytest.mark.no_sync(mode='probe'); got {marker.args!r}"
        )
    try:
        return _make_guard(**marker.kwargs)
    except (TypeError, ValueError) as error:
        raise pytest.UsageError(f"@pytest.mark.no_sync{marker.kwargs!r}: {error}") from error


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    __tracebackhide__ = True
    strict = (
        bool(item.config.getini("dpslice_strict_cuda"))
        and item.get_closest_marker("cuda") is None
        and cuda_available()
    )
    before = _cuda_allocations() if strict else 0
    marker = item.get_closest_marker("no_sync")
    if marker is not None:
        with _guard_for(marker):
            result = yield
    elif item.stash.get(_GUARD_BODY, False):
        with _make_guard():
            result = yield
    else:
        result = yield
    if strict and _cuda_allocations() > before:
        pytest.fail(
            f"{item.nodeid} allocated CUDA memory without @pytest.mark.cuda; on CPU CI it "
            "would error, or pass without testing anything. Mark it cuda",
            pytrace=False,
        )
    return result


def _make_guard(mode: str = "auto", **options: Any) -> SyncGuard:
    from dpslice.sync import no_sync as make_guard

    return make_guard(mode, **options)  # type: ignore[arg-type]


class NoSyncFixture:
    """What the ``no_sync`` fixture gives: a guard factory that is also a guard.

    The test body is already guarded once the fixture is requested; inside
    it, ``with no_sync(mode="cpu", record=True) as guard:`` records a block,
    and ``with no_sync:`` opens a nested guard in the automatic mode.
    """

    def __init__(self) -> None:
        # Per context, so blocks opened by overlapping threads or asyncio
        # tasks close their own guard, not the one another task opened last.
        self._open: ContextVar[tuple[SyncGuard, ...]] = ContextVar("no_sync_fixture", default=())

    def __call__(self, mode: str = "auto", **options: Any) -> SyncGuard:
        return _make_guard(mode, **options)

    def __enter__(self) -> SyncGuard:
        guard = self()
        entered = guard.__enter__()
        self._open.set((*self._open.get(), guard))
        return entered

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        __tracebackhide__ = True
        *outer, guard = self._open.get()
        self._open.set(tuple(outer))
        guard.__exit__(exc_type, exc, tb)


@pytest.fixture
def no_sync(request: pytest.FixtureRequest) -> NoSyncFixture:
    """Fail the test on a host-device sync in its body; nest guards with ``no_sync(mode=...)``."""
    request.node.stash[_GUARD_BODY] = True
    return NoSyncFixture()
