"""Without sglang, naming an sglang adapter is a usage error with one line that says
how to install the engine: exit status 2, no traceback.  Runs with or without sglang
(the child process hides it)."""

from __future__ import annotations

import subprocess
import sys

# Runs the CLI in a child where no module under ``sglang`` can be imported.
_CHILD = """
import importlib.abc, sys

class HideSglang(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "sglang" or name.startswith("sglang."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, HideSglang())
from dpslice.cli import main
raise SystemExit(main(["check", "dpslice.engines.sglang:get_dp_local_slice_cpu"]))
"""


def test_check_without_sglang_exits_2_with_one_line_that_says_how_to_install() -> None:
    child = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=120, check=False
    )
    assert child.returncode == 2, child.stderr
    lines = child.stderr.strip().splitlines()
    assert len(lines) == 1, child.stderr
    assert lines[0].startswith("dpslice: error:")
    assert "sglang, which is not installed" in lines[0]
    assert "tox -e sglang" in lines[0]
    assert "requirements/sglang-engine.txt" in lines[0]
    assert "Traceback" not in child.stderr
