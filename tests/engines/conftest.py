"""Engine adapters need the engine installed; without it their tests skip, or fail in CI.

``DPSLICE_REQUIRE_ENGINE`` (a comma-separated list, such as ``sglang``) turns the
skip into an error for the engines it names: the engine stage of ``.ci/run`` sets
it, so a stage whose engine failed to install cannot pass by skipping everything.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def required_engines() -> frozenset[str]:
    """The engines whose absence is an error, not a skip."""
    value = os.environ.get("DPSLICE_REQUIRE_ENGINE", "")
    return frozenset(name.strip() for name in value.split(",") if name.strip())


def import_engine(engine: str) -> ModuleType:
    """``dpslice.engines.<engine>``, or a skip (a failure where the engine is required)."""
    try:
        return importlib.import_module(f"dpslice.engines.{engine}")
    except ImportError as exc:
        reason = f"{engine} adapters unavailable: {exc}"
        if engine in required_engines():
            pytest.fail(f"DPSLICE_REQUIRE_ENGINE={engine} but {reason}", pytrace=False)
        pytest.skip(reason)
