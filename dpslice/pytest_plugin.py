"""dpslice's pytest plugin, loaded through the ``pytest11`` entry point.

Registers the ``cuda`` marker (so downstream ``--strict-markers`` runs pass)
and skips ``cuda`` tests cleanly where no CUDA device exists.
"""

from __future__ import annotations

import pytest

CUDA_MARKER = "cuda: the test needs a CUDA device; skipped cleanly where none exists"


def cuda_available() -> bool:
    """Whether a CUDA device can be used; never initialises CUDA itself."""
    import torch

    return bool(torch.cuda.is_available())


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", CUDA_MARKER)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("cuda") is not None and not cuda_available():
        pytest.skip("needs a CUDA device; none is available here")
