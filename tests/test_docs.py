"""The documents themselves: README.md, docs/ (the guide, the reference, the records) and
the run logs in docs/data/.

Their examples run as tests through Sybil (``tests/doc_examples.py``), which also
reruns every quoted report; these tests check what no example run can: the text
holds no path of one machine, every quoted ``dpslice check`` command sits in a
block the doc tests run, no quoted report names a property the battery no longer
has, every page is short enough to read and every link lands, the docs tell users
to import only the public face of ``dpslice.check``, the records are linked from
one index, and the tables that quote a program's output are that output.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import dpslice.check
from dpslice.check.registry import registered
from dpslice.check.results import ROUND_TRIP_ROWS
from tests.doc_examples import doc_reports

ROOT = Path(__file__).resolve().parent.parent

#: README.md, the pages under docs/ and the text files under docs/data/ (logs, JSON).
DOCUMENTS = sorted(
    [
        ROOT / "README.md",
        *(ROOT / "docs").rglob("*.md"),
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
    assert doc_reports.trimmed_like(_NEW_REPORT, shown) == [
        "...",
        "FAIL sync_free (hazard): Computing the slice never syncs the host.",
        "  call       f(global_num_tokens_cpu=[0], dp_rank=0)",
        "  why        the call synchronised the host",
        "",
        "FAILED",
    ]


def test_a_quote_without_an_ellipsis_is_replaced_whole() -> None:
    shown = ["property  verdict", "missing_graph_extent_explicit  FAIL  5  0.02s", "FAILED"]
    assert doc_reports.trimmed_like(_NEW_REPORT, shown) == _NEW_REPORT


def test_what_differs_between_two_runs_is_masked_and_nothing_else() -> None:
    first = [
        "sum_len_rows                   PASS          500     0.41s",
        "graph_replay_rows              FAIL          104     0.17s",
        "14 properties: 12 passed, 0 failed; 6,010 layouts checked in 4.3 s (1,412 layouts/s)",
        "round trip: 2 ranks gather through gloo on cpu (start-up 2.7 s)",
        "real\t0m5.510s",
        "dpslice: error: device 'cuda' needs a CUDA GPU, and torch 2.13.0+cpu sees none here",
        '  "seconds": 0.105,',
        '  "versions": {"dpslice": "0.1.0", "torch": "2.13.0+cpu", "hypothesis": "6.170.29"},',
    ]
    second = [
        "sum_len_rows                   PASS          500     0.63s",
        "graph_replay_rows              FAIL           98     0.08s",
        "14 properties: 12 passed, 0 failed; 6,011 layouts checked in 3.0 s (2,035 layouts/s)",
        "round trip: 2 ranks gather through gloo on cpu (start-up 4.1 s)",
        "real\t0m6.476s",
        "dpslice: error: device 'cuda' needs a CUDA GPU, and torch 2.15.0+cpu sees none here",
        '  "seconds": 0.127,',
        '  "versions": {"dpslice": "0.2.0", "torch": "2.15.0+cpu", "hypothesis": "6.171.0"},',
    ]
    assert doc_reports.masked(first) == doc_reports.masked(second)
    for line, old, new in [
        ("graph_replay_rows              FAIL          104     0.17s", "FAIL", "PASS"),
        ("  layout     DPLayout(counts=(0, 1))", "(0, 1)", "(1, 0)"),
        ("  reproduce  dpslice check f.py:f --seed 1 --max-examples 500", "500", "300"),
        ("seed 1  max examples 500  device cpu", "seed 1", "seed 2"),
        ('        "rank": 0,', "0", "1"),
    ]:
        assert doc_reports.masked([line]) != doc_reports.masked([line.replace(old, new)]), line


def test_a_json_report_is_rendered_one_line_where_it_fits_and_trimmed_like_its_quote() -> None:
    document = {"schema": "s", "totals": {"a": 1, "b": 2}, "long": ["x" * 60, "y" * 60], "cx": [1]}
    shown = {"schema": "s", "totals": {}, "long": [], "cx": "..."}
    assert doc_reports.render_json(doc_reports.trimmed_json(document, shown)) == [
        "{",
        '  "schema": "s",',
        '  "totals": {"a": 1, "b": 2},',
        '  "long": [',
        f'    "{"x" * 60}",',
        f'    "{"y" * 60}"',
        "  ],",
        '  "cx": "..."',
        "}",
    ]


# -- pages, links and the records ------------------------------------------------------

#: The user guide and the reference: what a user reads to use dpslice.  The records
#: (docs/records/) are not among them: they keep what runs gave, and nothing reruns them.
USER_DOCS = MARKDOWN
RECORDS = ROOT / "docs" / "records"
#: Every page a reader may open: the user docs, the records, the changelog.
PAGES = sorted({*USER_DOCS, *(ROOT / "docs").rglob("*.md"), ROOT / "CHANGELOG.md"})

#: The longest page, in lines: past it a page is a record or two pages.
MAX_PAGE_LINES = 500


@pytest.mark.parametrize(
    "path",
    [page for page in PAGES if page.name != "CHANGELOG.md"],  # it grows with every release
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_a_page_stays_under_500_lines(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").count("\n")
    assert lines < MAX_PAGE_LINES, (
        f"{path.relative_to(ROOT)} has {lines} lines; split it (a guide and a reference), or "
        "move what runs gave to docs/records/"
    )


_CODE = re.compile(r"^```.*?^```|`[^`\n]*`", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"!?\[[^\]\n]*\]\((?P<target>[^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6} +(?P<title>.+?) *#*$", re.MULTILINE)


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown page."""
    seen: dict[str, int] = {}
    found = set()
    for match in _HEADING.finditer(_FENCE.sub("", text)):  # not a code block's comments
        slug = re.sub(r"[^\w\- ]", "", match["title"].strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def broken_links(path: Path) -> list[str]:
    """Each relative link of ``path`` whose file, or anchor in it, does not exist."""
    text = path.read_text(encoding="utf-8")
    broken = []
    for match in _LINK.finditer(_CODE.sub("", text)):
        target = match["target"]
        if re.match(r"[a-z][a-z+.-]*:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and anchor not in anchors(resolved.read_text(encoding="utf-8")):
            broken.append(f"{target}: no heading of {resolved.name} has that anchor")
    return broken


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_lands(path: Path) -> None:
    broken = broken_links(path)
    assert not broken, f"{path.relative_to(ROOT)} links to nothing:\n  " + "\n  ".join(broken)


def test_a_link_check_finds_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## The round trip: `--distributed N`\n")
    page.write_text(
        "# Page\n\n## Sync freedom (`sync_free`)\n\n"
        "[a](other.md#the-round-trip---distributed-n) [b](#sync-freedom-sync_free) "
        "[c](https://example.org/x.md#y) `[d](nowhere.md)`\n"
        "[e](missing.md) [f](other.md#no-such-heading) [g](#nor-here)\n"
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "other.md#no-such-heading: no heading of other.md has that anchor",
        "#nor-here: no heading of page.md has that anchor",
    ]


def test_every_record_and_data_file_is_linked_from_the_records_index() -> None:
    index = RECORDS / "README.md"
    linked = {
        (index.parent / m["target"].partition("#")[0]).resolve()
        for m in _LINK.finditer(index.read_text(encoding="utf-8"))
    }
    kept = {
        *(p for p in RECORDS.glob("*.md") if p != index),
        *(p for p in (ROOT / "docs" / "data").iterdir() if p.is_file()),
    }
    missing = sorted(str(p.relative_to(ROOT)) for p in kept if p.resolve() not in linked)
    assert not missing, "docs/records/README.md does not link to:\n  " + "\n  ".join(missing)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(docs/records/README.md)" in readme, "the README does not link to the records"


# -- the public face of dpslice.check -------------------------------------------------

_PUBLIC = set(dpslice.check.__all__)
#: ``dpslice.check.NAME`` in prose or code: NAME must be the package's to name.
_CHECK_NAME = re.compile(r"\bdpslice\.check\.(?P<name>[A-Za-z_]\w*)")


def _python_blocks(path: Path) -> list[tuple[int, str]]:
    return [(line, body) for line, language, body in _blocks(path) if language == "python"]


def imports(source: str) -> list[tuple[str, tuple[str, ...]]]:
    """Each ``(module, names)`` a block imports from dpslice (names empty for ``import M``)."""
    found: list[tuple[str, tuple[str, ...]]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dpslice"):
            found.append((node.module or "", tuple(alias.name for alias in node.names)))
        elif isinstance(node, ast.Import):
            found += [(a.name, ()) for a in node.names if a.name.startswith("dpslice")]
    return found


@pytest.mark.parametrize("path", USER_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_docs_name_only_the_public_face_of_dpslice_check(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    private = sorted(
        {
            f"line {text.count(chr(10), 0, m.start()) + 1}: dpslice.check.{m['name']}"
            for m in _CHECK_NAME.finditer(text)
            if m["name"] not in _PUBLIC
        }
    )
    assert not private, (
        f"{path.relative_to(ROOT)} names what dpslice.check does not export (its __all__); "
        "export it and document it in docs/check-reference.md, or stop naming it:\n  "
        + "\n  ".join(private)
    )


@pytest.mark.parametrize("path", USER_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_documented_import_takes_what_its_module_exports(path: Path) -> None:
    wrong = []
    for line, body in _python_blocks(path):
        for module, names in imports(body):
            where = f"line {line}: {module}"
            if _CHECK_NAME.fullmatch(module):
                wrong.append(f"{where} is private: import from dpslice.check")
                continue
            exported = set(getattr(importlib.import_module(module), "__all__", ()))
            wrong += [f"{where} does not export {name}" for name in names if name not in exported]
    assert not wrong, f"{path.relative_to(ROOT)}:\n  " + "\n  ".join(wrong)


def test_imports_are_read_from_blocks() -> None:
    source = "import torch\nimport dpslice.sync\nfrom dpslice.check import run_check, Verdict\n"
    assert imports(source) == [("dpslice.sync", ()), ("dpslice.check", ("run_check", "Verdict"))]
    assert _CHECK_NAME.fullmatch("dpslice.check.report")
    assert not _CHECK_NAME.fullmatch("dpslice.check")


def test_every_public_name_of_dpslice_check_is_documented_in_the_reference() -> None:
    reference = (ROOT / "docs" / "check-reference.md").read_text(encoding="utf-8")
    section = reference[reference.index("## The Python API") :]
    missing = [name for name in sorted(_PUBLIC) if not re.search(rf"`{name}\b", section)]
    assert not missing, "docs/check-reference.md's Python API does not document " + ", ".join(
        missing
    )


# -- tables that quote a program's output --------------------------------------------


def test_the_seeded_bugs_table_is_the_seeded_bug_tests_list() -> None:
    from tests.test_check_seeded_bugs import MUTATIONS

    reference = (ROOT / "docs" / "check-reference.md").read_text(encoding="utf-8")
    section = reference[reference.index("## Seeded bugs") :]
    rows = re.findall(r"^\| .*? \| `([a-z-]+)` \| `([a-z_]+)` \| (FAIL|WARN) \|$", section, re.M)
    tested = [(name, m.caught_by, m.verdict.value) for name, m in MUTATIONS.items()]
    assert rows == tested


def _guard_table() -> list[str]:
    text = (ROOT / "docs" / "sync.md").read_text(encoding="utf-8")
    begin, end = "<!-- sync-catalog:begin -->\n", "<!-- sync-catalog:end -->"
    return text[text.index(begin) + len(begin) : text.index(end)].splitlines()


def _columns(table: list[str]) -> dict[str, list[str]]:
    """A Markdown table's cells by heading, and its ``- heading: score`` lines."""
    rows = [
        [cell.strip() for cell in line.strip("|").split(" | ")]
        for line in table
        if line.startswith("| ")
    ]
    headings, *cells = rows
    columns = {heading: [row[n] for row in cells] for n, heading in enumerate(headings)}
    for line in table:
        if line.startswith("- "):
            heading, _, score = line[2:].partition(": ")
            columns[heading].append(score)
    return columns


def test_the_guard_tables_cpu_column_is_what_the_catalogue_measures_here() -> None:
    from benchmarks.sync_catalog import measure_table, render_markdown

    shown = _columns(_guard_table())
    measured = _columns(render_markdown(measure_table(["cpu_on_cpu"])).splitlines())
    assert set(measured) == {"op", "code", "syncs", "CPU-only mode, CPU tensors"}
    for heading, cells in measured.items():
        assert shown[heading][: len(cells)] == cells, heading


@pytest.mark.cuda
def test_the_guard_table_is_what_the_catalogue_measures_on_a_gpu() -> None:
    from benchmarks.sync_catalog import measure_table, render_markdown

    assert _guard_table() == render_markdown(measure_table()).splitlines()
