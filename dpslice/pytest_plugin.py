"""dpslice's pytest plugin, loaded through the ``pytest11`` entry point.

* The battery as tests: ``pytest --dpslice-target TARGET``, or
  ``test_slice = check_properties(TARGET)`` in a test module, collects one test
  per property, run through the check's supervised worker.
* The ``cuda`` and ``no_sync`` markers, unless the project declares its own,
  and the ``no_sync`` fixture.
* Opt-in rules: ``dpslice_cuda_dirs`` and ``dpslice_strict_cuda``.

It loads in every pytest run where dpslice is installed, so importing it
imports no torch, initialises no CUDA, and applies no rule until configured.
"""

from __future__ import annotations

import os
import secrets
import warnings
from collections.abc import Callable, Generator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pytest

from dpslice.isolation import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_IMPORT_TIMEOUT,
    DEFAULT_MAX_EXAMPLES,
    check_call_timeout,
)

if TYPE_CHECKING:
    from dpslice.supervision.supervisor import Workers
    from dpslice.sync import SyncGuard

__all__ = [
    "CUDA_MARKER",
    "NO_SYNC_MARKER",
    "BatteryOptions",
    "HardeningWarning",
    "NoSyncFixture",
    "check_properties",
    "cuda_available",
    "no_sync",
]

CUDA_MARKER = "cuda: the test needs a CUDA device; skipped cleanly where none exists"
NO_SYNC_MARKER = (
    "no_sync(mode='auto'): fail the test if its body synchronises the host with a CUDA "
    "device; mode is 'auto' (CUDA mode on a GPU, CPU-only mode elsewhere), 'cuda', "
    "'probe' or 'cpu'"
)
_MISSING_CUDA_MARKER = pytest.StashKey[str]()
#: The test requested the ``no_sync`` fixture: its body is guarded.
_GUARD_BODY = pytest.StashKey[bool]()
#: The markers the project declares itself: dpslice leaves them alone.
_PROJECT_MARKERS = pytest.StashKey[frozenset[str]]()
#: Targets that could not be loaded, with why: their other tests fail at once.
_BAD_TARGETS = pytest.StashKey[dict[str, str]]()
#: The options of ``pytest --dpslice-target``, when given.
_BATTERY = pytest.StashKey["BatteryOptions"]()
_SEED = pytest.StashKey[int]()
_WORKERS = pytest.StashKey["Workers"]()


def cuda_available() -> bool:
    """Whether a CUDA device can be used; never initialises CUDA itself."""
    from dpslice._numpy_notice import torch

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
    from dpslice.check.options import (
        SHARED,
        call_seconds,
        contract_name,
        positive_int,
        seed_number,
    )

    group = parser.getgroup("dpslice", "dpslice: the property battery as tests")
    group.addoption(
        "--dpslice-target",
        metavar="TARGET",
        help="collect one test per property of `dpslice check TARGET` "
        "(package.module:function or path/to/file.py:function)",
    )
    # As dpslice check's, but BatteryOptions checks the values (a usage error that says so).
    plain = {positive_int: int, seed_number: int, call_seconds: float, contract_name: str}
    for name, keywords in SHARED.items():
        if "type" in keywords:
            keywords = {**keywords, "type": plain[keywords["type"]]}
        group.addoption(f"--dpslice-{name}", **keywords)


@pytest.hookimpl(trylast=True)  # after the project's conftest files declared theirs
def pytest_configure(config: pytest.Config) -> None:
    lines: list[str] = config.getini("markers")
    declared = {line.split(":")[0].split("(")[0].strip() for line in lines}
    config.stash[_PROJECT_MARKERS] = frozenset(declared & {"cuda", "no_sync"})
    if "cuda" not in declared:
        config.addinivalue_line("markers", CUDA_MARKER)
    if "no_sync" not in declared:
        config.addinivalue_line("markers", NO_SYNC_MARKER)
    spec = config.getoption("dpslice_target", None)
    if spec is not None:
        config.stash[_BATTERY] = BatteryOptions.from_config(config, spec)


def _marker(item: pytest.Item, name: str) -> pytest.Mark | None:
    """The item's marker ``name``, unless the project declared a marker of that name."""
    if name in item.config.stash.get(_PROJECT_MARKERS, frozenset()):
        return None
    return item.get_closest_marker(name)


@pytest.hookimpl(tryfirst=True)  # before -k and -m deselect: the battery's tests are selectable
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    battery = config.stash.get(_BATTERY, None)
    if battery is not None:
        items.extend(TargetNode.collect_battery(session, battery.target))
    cuda_dirs = set(config.getini("dpslice_cuda_dirs"))
    for item in items:
        marker = _marker(item, "no_sync")
        if marker is not None:
            _guard_for(marker)  # a malformed marker is a usage error, found before any test runs
        path = Path(item.path)  # from the rootdir: a checkout inside a "cuda/" is not marked
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
    if _marker(item, "cuda") is not None and not cuda_available():
        pytest.skip("needs a CUDA device; none is available here")


# -- the property battery as tests ---------------------------------------------


class HardeningWarning(UserWarning):
    """A hardening property's WARN: the target accepts an input no engine produces
    (a failure under ``--dpslice-strict`` or ``strict=True``)."""


@dataclass(frozen=True)
class BatteryOptions:
    """How the battery's tests check ``target``: ``dpslice check``'s options and defaults."""

    target: str
    contract: str | None = None
    against: str | None = None
    strict: bool = False
    device: str = "cpu"
    max_examples: int = DEFAULT_MAX_EXAMPLES
    seed: int | None = None
    timeout: float = DEFAULT_CALL_TIMEOUT

    def __post_init__(self) -> None:
        from dpslice.check.results import check_max_examples, check_seed
        from dpslice.check.target import check_device, check_spec

        check_spec(self.target, against=self.against)
        check_device(self.device)
        if self.seed is not None:
            check_seed(self.seed)
        check_max_examples(self.max_examples)
        check_call_timeout(self.timeout)

    @classmethod
    def from_config(cls, config: pytest.Config, target: str) -> BatteryOptions:
        """The options of ``pytest --dpslice-target``; a bad one is a usage error."""
        from dpslice.check.options import SHARED
        from dpslice.errors import CheckError

        keys = [name.replace("-", "_") for name in SHARED]
        given = {key: config.getoption(f"dpslice_{key}") for key in keys}
        try:
            return cls(target, **{key: value for key, value in given.items() if value is not None})
        except (CheckError, ValueError) as exc:  # BadTargetError, DeviceError
            raise pytest.UsageError(f"--dpslice-target {target}: {exc}") from None


def _property_names(compared: bool) -> tuple[str, ...]:
    from dpslice.check.registry import registered

    return tuple(prop.name for prop in registered(compared=compared))


def _run_property_test(config: pytest.Config, options: BatteryOptions, name: str) -> None:
    """Check one property of ``options.target``: a FAIL or ERROR fails the test, N/A skips."""
    __tracebackhide__ = True
    from dpslice.check.options import load_options
    from dpslice.check.report import render_result
    from dpslice.check.results import Verdict
    from dpslice.errors import BadTargetError
    from dpslice.supervision.supervisor import BatterySupervisor

    bad = config.stash.setdefault(_BAD_TARGETS, {})
    key = options.target if options.against is None else f"{options.target} {options.against}"
    if key in bad:
        pytest.fail(bad[key], pytrace=False)
    # One random seed per pytest process, as ``dpslice check`` picks one per run.
    seed = config.stash.setdefault(_SEED, secrets.randbelow(2**32))
    supervisor = BatterySupervisor(
        options.target,
        device=options.device,
        properties=(name,),
        max_examples=options.max_examples,
        seed=seed if options.seed is None else options.seed,
        timeout=options.timeout,
        import_timeout=DEFAULT_IMPORT_TIMEOUT,
        load_options=load_options(options.contract, options.against),
        strict=options.strict,
        workers=_workers(config),
    )
    try:
        report = supervisor.run()
    except BadTargetError as exc:
        bad[key] = (
            f"dpslice: {exc}"
            if str(exc).startswith("bad --against target")
            else f"dpslice: bad target {options.target}: {exc}"
        )
        pytest.fail(bad[key], pytrace=False)
    (result,) = report.results
    if result.verdict is Verdict.NOT_APPLICABLE:
        pytest.skip(f"{name}: {result.note}")
    if result.verdict in (Verdict.FAIL, Verdict.ERROR, Verdict.WARN):
        text = render_result(report, result).rstrip("\n")
        if result.verdict is Verdict.WARN:
            warnings.warn(HardeningWarning(text), stacklevel=1)
        else:
            pytest.fail(text, pytrace=False)


def _workers(config: pytest.Config) -> Workers:
    """This pytest process's workers, kept from test to test."""
    if _WORKERS not in config.stash:
        import shutil
        import tempfile

        from dpslice.supervision.supervisor import Workers

        env = dict(os.environ)
        if "HYPOTHESIS_STORAGE_DIRECTORY" not in env:  # not the project's .hypothesis/
            storage = tempfile.mkdtemp(prefix="dpslice-hypothesis-")
            env["HYPOTHESIS_STORAGE_DIRECTORY"] = storage
            config.add_cleanup(lambda: shutil.rmtree(storage, ignore_errors=True))
        workers = Workers(env)
        config.add_cleanup(workers.close)
        config.stash[_WORKERS] = workers
    return config.stash[_WORKERS]


class PropertyItem(pytest.Item):
    """One property of the battery against the target of ``pytest --dpslice-target``."""

    def runtest(self) -> None:
        __tracebackhide__ = True
        _run_property_test(self.config, self.config.stash[_BATTERY], self.name)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        target = self.config.stash[_BATTERY].target
        return self.path, None, f"dpslice check {target} --property {self.name}"


class TargetNode(pytest.Collector):
    """The battery's tests of one target, one :class:`PropertyItem` per property."""

    @classmethod
    def collect_battery(cls, session: pytest.Session, target: str) -> list[pytest.Item]:
        """Collect the battery's tests as pytest collects a file's, reported and counted."""
        name = f"dpslice-check/{target}"
        # Named from the root: under the session its id would begin with "::".
        node = cls.from_parent(session, name=name, path=session.path, nodeid=name)
        report = session.ihook.pytest_make_collect_report(collector=node)
        session.ihook.pytest_collectreport(report=report)
        return [item for item in report.result if isinstance(item, pytest.Item)]

    def collect(self) -> list[pytest.Item | pytest.Collector]:
        compared = self.config.stash[_BATTERY].against is not None
        return [PropertyItem.from_parent(self, name=name) for name in _property_names(compared)]


def check_properties(
    target: str,
    *,
    contract: str | None = None,
    strict: bool = False,
    device: str = "cpu",
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    seed: int | None = None,
    timeout: float = DEFAULT_CALL_TIMEOUT,
    against: str | None = None,
) -> Callable[..., None]:
    """A test function, parametrized by property, that runs the battery against ``target``:
    ``test_local_slice = check_properties("my_engine/dp.py:local_slice")``, with
    ``dpslice check``'s options and defaults.

    Raises:
        BadTargetError: ``target`` cannot name a target, at import of the test module.
        DeviceError: an unknown device.
        ValueError: ``max_examples`` below 1 or ``timeout`` not above 0.
    """
    options = BatteryOptions(**locals())

    @pytest.mark.parametrize("dpslice_property", _property_names(against is not None))
    def test_property(dpslice_property: str, request: pytest.FixtureRequest) -> None:
        __tracebackhide__ = True
        _run_property_test(request.config, options, dpslice_property)

    return test_property


# -- sync guards and CUDA rules ------------------------------------------------


def _cuda_allocations() -> int:
    """CUDA allocations so far, 0 if CUDA was never initialised."""
    from dpslice._numpy_notice import torch

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
    marker = _marker(item, "no_sync")
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

    # A whole test is guarded: its own reads of its results count only on device memory.
    options.setdefault("read_back", False)
    return make_guard(mode, **options)  # type: ignore[arg-type]


class NoSyncFixture:
    """What the ``no_sync`` fixture gives: a guard factory (``no_sync(mode="cpu")``) that is
    also a guard in the automatic mode (``with no_sync:``)."""

    def __init__(self) -> None:
        # Per context: overlapping threads or tasks each close their own guard.
        self._open: ContextVar[tuple[SyncGuard, ...]] = ContextVar("no_sync_fixture", default=())

    __call__ = staticmethod(_make_guard)

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
