"""The documents themselves: README.md, docs/*.md and the run logs in docs/data/.

Their examples run as tests through Sybil (``tests/doc_examples.py``); these
tests check what no example run can: the text holds no path of one machine,
every quoted ``dpslice check`` command sits in a block the doc tests run, and
no quoted report names a property the battery no longer has.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from dpslice.check.registry import registered
from dpslice.check.results import ROUND_TRIP_ROWS

ROOT = Path(__file__).resolve().parent.parent

#: README.md, docs/*.md and the text files under docs/data/ (logs, JSON).
DOCUMENTS = sorted(
    [
        ROOT / "README.md",
        *(ROOT / "docs").glob("*.md"),
        *(p for p in (ROOT / "docs" / "data").rglob("*") if p.suffix in {".log", ".json", ".md"}),
    ]
)

#: An absolute path that belongs to one machine: a home or work folder, a
#: temporary file, an installed package's folder.  Neutral placeholders
#: (``/path/to/...``, ``$OUT/...``, ``<tmpdir>/...``) and repository-relative
#: paths are what the documents use instead.
MACHINE_PATH = re.compile(
    r"""
    (?<![\w.~$])                     # a path's first slash, not the middle of a word
    (?:
        /(?:work|root|workspace|scratch|mnt|srv|nfs|lustre)/
      | /home/[^/\s]+/
      | /Users/[^/\s]+/
      | /private/
      | /tmp/\S                      # /tmp/obo.py, /tmp/tmp.XXXX, /tmp/pytest-of-...
      | /var/folders/
      | /(?:usr|opt)/\S*?(?:site|dist)-packages
      | /opt/conda/
    )
    | [A-Za-z]:\\Users\\             # C:\Users\...
    """,
    re.VERBOSE,
)


def machine_paths(text: str) -> list[str]:
    """Each ``line N: text`` of ``text`` that names a machine's absolute path."""
    return [
        f"line {number}: {line.strip()}"
        for number, line in enumerate(text.splitlines(), start=1)
        if MACHINE_PATH.search(line)
    ]


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_document_names_no_path_of_one_machine(path: Path) -> None:
    found = machine_paths(path.read_text(encoding="utf-8"))
    assert not found, (
        f"{path.relative_to(ROOT)} names absolute paths of one machine; use a path relative "
        "to the repository or a placeholder (/path/to/..., $OUT/...):\n  " + "\n  ".join(found)
    )


@pytest.mark.parametrize(
    "line",
    [
        "python3 -m venv /srv/ci/vllm-env/venv",
        "Saved benchmark data in: /scratch/dpslice/.benchmarks/x.json",
        "--json /root/out/ref_cuda.json",
        "dpslice check /tmp/obo.py:dp_local_slice",
        "dpslice check /tmp/tmp.jI6W3uhPHd/reference.py:f",
        "at /tmp/pytest-of-alice/pytest-3/test_x0/impl.py:3",
        "File /home/alice/project/impl.py",
        "/usr/lib/python3/dist-packages/torch/__init__.py",
        "/opt/venv/lib/python3.11/site-packages/torch/cuda/__init__.py",
        "C:\\Users\\alice\\impl.py",
    ],
)
def test_the_pattern_finds_a_machines_paths(line: str) -> None:
    assert machine_paths(line)


@pytest.mark.parametrize(
    "line",
    [
        "dpslice check tests/distributed_targets.py:f",
        "dpslice check /path/to/dpslice/tests/distributed_targets.py:f",
        "--json $OUT/ref_cuda.json",
        "dpslice check <tmpdir>/reference.py:dp_local_slice",
        "python3 -m venv ~/vllm-env && ~/vllm-env/bin/pip install torch",
        "at dpslice/check/calls.py:45",
        "tests/cuda/run_on_gpu.sh writes under ${OUT:-gpu-results}",
        "a 2-D length, r0[pad] r1[0], 64 MiB/s",
    ],
)
def test_the_pattern_leaves_relative_paths_and_placeholders(line: str) -> None:
    assert not machine_paths(line)


#: README.md and docs/*.md: the documents whose examples run (tests/doc_examples.py).
MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^```(?P<language>[\w-]*)\n(?P<body>.*?)^```", re.MULTILINE | re.DOTALL)
#: A shown command of dpslice: ``$ dpslice ...``, ``$ python -m dpslice ...``, ``$ time ...``.
_PROMPTED_DPSLICE = re.compile(r"^\$ (?:time )?(?:dpslice|python3? -m dpslice)\b", re.MULTILINE)
#: Where a report, or a command, names a property.
_NAMED_PROPERTY = re.compile(
    r"^(?P<row>[a-z][a-z0-9_]+) +(?:PASS|FAIL|WARN|N/A|ERROR) +\d"  # a verdict row
    r"|^(?:FAIL|WARN|ERROR) (?P<heading>[a-z][a-z0-9_]+)\b"  # a counterexample's heading
    r"|--property[ =](?P<option>[a-z][a-z0-9_]+)",  # a command's --property
    re.MULTILINE,
)


def _blocks(path: Path) -> list[tuple[int, str, str]]:
    """Each fenced block of ``path``: (line of its fence, language, body)."""
    text = path.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, m.start()) + 1, m["language"], m["body"])
        for m in _FENCE.finditer(text)
    ]


def property_names(text: str) -> set[str]:
    """The properties a quoted report or command in ``text`` names."""
    return {
        next(name for name in match.group("row", "heading", "option") if name)
        for match in _NAMED_PROPERTY.finditer(text)
    }


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_quoted_dpslice_command_is_in_a_block_the_doc_tests_run(path: Path) -> None:
    """A ``$ dpslice check`` in a ``text`` block would never run: its report could go stale."""
    wrong = [
        f"line {line}: a ```{language or '(no language)'} block"
        for line, language, body in _blocks(path)
        if language not in ("console", "sh") and _PROMPTED_DPSLICE.search(body)
    ]
    assert not wrong, (
        f"{path.relative_to(ROOT)} shows dpslice commands with a $ prompt outside a console "
        "block, where the doc tests do not run them; make each a ```console block:\n  "
        + "\n  ".join(wrong)
    )


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_quoted_report_names_only_current_properties(path: Path) -> None:
    current = {prop.name for prop in registered(compared=True)} | {ROUND_TRIP_ROWS}
    stale = {
        f"line {line}: {name}"
        for line, _, body in _blocks(path)
        for name in property_names(body) - current
    }
    assert not stale, (
        f"{path.relative_to(ROOT)} quotes properties that `dpslice check --list` does not "
        "list; rerun the command (scripts/doc_reports.py) or drop them:\n  "
        + "\n  ".join(sorted(stale))
    )


def test_property_names_are_read_from_rows_headings_and_options() -> None:
    report = """\
$ dpslice check impl.py:f --property sync_free
property                       verdict  examples      time
sum_len_rows                   PASS          500     0.49s
cuda_view                      N/A             0     0.00s  it compares CUDA views
FAIL skipped_gather_rows (hazard): With the all-gather skipped
WARN invalid_inputs_refused (hardening): A call with one defect
  reproduce  dpslice check impl.py:f --seed 1 --property=large_counts_exact
12 properties: 5 passed, 5 failed, 2 n/a, 0 errors
"""
    assert property_names(report) == {
        "sync_free",
        "sum_len_rows",
        "cuda_view",
        "skipped_gather_rows",
        "invalid_inputs_refused",
        "large_counts_exact",
    }


def test_the_readme_counts_the_kinds_its_minimal_slice_accepts() -> None:
    """The README's sentence on its capturer slice's WARN matches a run of the battery."""
    from dpslice.check import run_check

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"^```python\n(# my_engine_slice\.py\n.*?)^```", readme, re.M | re.S)
    assert block is not None, "README.md lost its minimal capturer slice"
    namespace: dict[str, object] = {}
    exec(block.group(1), namespace)
    report = run_check(
        namespace["local_slice"],  # type: ignore[arg-type]
        max_examples=50,
        seed=0,
        properties=["invalid_inputs_refused"],
    )
    accepted = len(report.result("invalid_inputs_refused").counterexamples)
    said = " ".join(readme.split())
    assert f"accepts the {accepted} others" in said, (
        f"the README's minimal slice accepts {accepted} kinds of defect; its sentence says "
        + said[said.index("WARNs on `invalid_inputs_refused`") :][:300]
    )


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_example_hides_its_set_up(path: Path) -> None:
    """Set-up only the doc tests see makes an example fail where a reader pastes it."""
    text = path.read_text(encoding="utf-8")
    hidden = [
        f"line {text.count(chr(10), 0, m.start()) + 1}"
        for m in re.finditer(r"<!--\s*invisible-code-block", text)
    ]
    assert not hidden, (
        f"{path.relative_to(ROOT)} hides set-up from its readers; show it in the example: "
        + ", ".join(hidden)
    )


def _doc_reports() -> Any:
    spec = importlib.util.spec_from_file_location("doc_reports", ROOT / "scripts/doc_reports.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


_NEW_REPORT = """\
dpslice check impl.py:f
seed 1  max examples 500  device cpu

property                       verdict  examples      time
sum_len_rows                   FAIL            3     0.01s
sync_free                      FAIL            5     0.02s

2 properties: 0 passed, 2 failed (hazards), 0 warned (hardening), 0 n/a, 0 errors; 8 layouts

FAIL sum_len_rows (hazard): Under SUM_LEN a rank's slice holds exactly the rows it owns.
  layout     DPLayout(counts=(0, 1))
  call       f(global_num_tokens_cpu=[0, 1], dp_rank=1)
  why        it covers no row of rank 1
  reproduce  dpslice check impl.py:f --seed 1 --max-examples 500 --property sum_len_rows

FAIL sync_free (hazard): Computing the slice never syncs the host.
  layout     DPLayout(counts=(0,))
  call       f(global_num_tokens_cpu=[0], dp_rank=0)
  why        the call synchronised the host
  reproduce  dpslice check impl.py:f --seed 1 --max-examples 500 --property sync_free

FAILED
""".splitlines()


def test_a_regenerated_report_keeps_the_parts_the_quote_showed() -> None:
    shown = """\
...
FAIL sync_free: an older statement
  call       f(global_num_tokens_cpu=[0], dp_rank=0)
  why        an older why
...
FAILED""".splitlines()
    assert _doc_reports().trimmed_like(_NEW_REPORT, shown) == [
        "...",
        "FAIL sync_free (hazard): Computing the slice never syncs the host.",
        "  call       f(global_num_tokens_cpu=[0], dp_rank=0)",
        "  why        the call synchronised the host",
        "",
        "FAILED",
    ]


def test_a_quote_without_an_ellipsis_is_replaced_whole() -> None:
    shown = ["property  verdict", "missing_graph_extent_explicit  FAIL  5  0.02s", "FAILED"]
    assert _doc_reports().trimmed_like(_NEW_REPORT, shown) == _NEW_REPORT
