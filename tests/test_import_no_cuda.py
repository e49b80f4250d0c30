"""Importing dpslice never initialises CUDA, and the pytest plugin never even imports torch.

Each check runs in a fresh interpreter (a spawned subprocess), so nothing
the test process already imported or initialised can hide a regression.
Where no GPU exists CUDA cannot initialise anyway, so the subprocess also
makes ``torch.cuda._lazy_init`` fail loudly: any import-time path into it
is caught on CPU CI too.
"""

from __future__ import annotations

from tests.processes import run_fresh

#: Every module a user may import; one interpreter imports them all (torch is slow to import).
MODULES = [
    "dpslice",
    "dpslice.specimens.tensor_path",
    "dpslice.sync",
    "dpslice.pytest_plugin",
]


def test_importing_does_not_initialise_cuda() -> None:
    result = run_fresh(
        f"""
        import importlib
        import torch

        def refuse(*args, **kwargs):
            raise SystemExit(f"CUDA was initialised while importing {{module}}")

        torch.cuda._lazy_init = refuse
        for module in {MODULES!r}:
            importlib.import_module(module)
        module = "nothing: building a guard"
        from dpslice.sync import no_sync
        no_sync("auto")
        assert not torch.cuda.is_initialized()
        print("clean")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "clean"


def test_loading_the_pytest_plugin_does_not_import_torch() -> None:
    """pytest loads the plugin in every run of every project with dpslice installed."""
    result = run_fresh(
        """
        import sys
        import dpslice.pytest_plugin
        print("torch" in sys.modules)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
