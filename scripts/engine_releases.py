#!/usr/bin/env python3
"""Run ``dpslice check`` against several sglang releases' own code; write the table.

    python3 scripts/engine_releases.py                 # the releases in RELEASES
    python3 scripts/engine_releases.py 0.5.21 0.5.23   # just these

Builds (once, under ``--root``, default ``.engine-releases/``) one environment with
torch==2.13.0, the import-time packages (requirements/sglang-imports.txt and
requirements/sglang-capturer.txt) and dpslice, then for each release a directory
holding only that sglang wheel, installed with ``--no-deps``; a release runs with
its directory first on ``PYTHONPATH``, so every release sees the same torch and
packages and differs only in its own code.  Each adapter of
:mod:`dpslice.engines.sglang` is checked with ``--json``, under the contract it
names, with one seed; the table replaces the part of docs/engines.md between
the ``engine-releases`` markers.

sglang 0.5.20 and earlier import ``torchvision.io`` at start-up, and 0.5.23's
model configs (which the routed-experts capturer imports) ``torchvision.transforms``.
PyPI's torchvision wheels are CUDA builds whose extension cannot load next to
torch's CPU build, so the script puts a stand-in package on the path that
imports and raises on any use; the slice code never uses it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "engines.md"
BEGIN, END = "<!-- engine-releases:begin -->", "<!-- engine-releases:end -->"

#: One before sglang PR 24550 (0.5.10), the first and last with get_attention_dp_rank's
#: get_dp_local_slice_cpu (0.5.12, 0.5.20), the first with dp_slot_in (0.5.21), the newest.
RELEASES = ("0.5.10", "0.5.12", "0.5.20", "0.5.21", "0.5.23")
ADAPTERS = ("get_dp_local_slice_cpu", "get_dp_local_info", "routed_experts_capturer_slice")
SEED, EXAMPLES = 0, 300

_STANDIN = '''"""torchvision stand-in (scripts/engine_releases.py): importable, unusable."""

__version__ = "0.28.0"


class _Unavailable:
    def __init__(self, name):
        self._name = name

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"{self._name}: torchvision stand-in; the real package is absent")

    def __getattr__(self, name):
        return _Unavailable(f"{self._name}.{name}")

    def __mro_entries__(self, bases):
        return (object,)


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _Unavailable(f"{__name__}.{name}")
'''
_STANDIN_MODULES = (
    "",
    "io",
    "ops",
    "transforms",
    "transforms/functional",
    "transforms/v2",
    "transforms/v2/functional",
)


def _run(command: list[str], **kwargs: object) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, **kwargs)  # type: ignore[call-overload]


def build_base(root: Path) -> Path:
    """The shared environment: torch, the import-time packages, dpslice."""
    python = root / "base" / "bin" / "python"
    if python.exists():
        return python
    _run([sys.executable, "-m", "venv", str(root / "base")])
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    _run([*pip, "torch==2.13.0"])
    _run(
        [
            *pip,
            "-r",
            str(ROOT / "requirements" / "sglang-imports.txt"),
            "-r",
            str(ROOT / "requirements" / "sglang-capturer.txt"),
        ]
    )
    _run([*pip, "--no-deps", "-e", str(ROOT)])
    _run([*pip, "hypothesis"])
    return python


def build_standin(root: Path) -> Path:
    where = root / "standins"
    for module in _STANDIN_MODULES:
        package = where / "torchvision" / module
        package.mkdir(parents=True, exist_ok=True)
        (package / "__init__.py").write_text(_STANDIN)
    # transformers asks the package metadata for torchvision's version.
    meta = where / "torchvision-0.28.0.dist-info"
    meta.mkdir(exist_ok=True)
    (meta / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: torchvision\nVersion: 0.28.0\n"
        "Summary: stand-in written by dpslice scripts/engine_releases.py\n"
    )
    (meta / "top_level.txt").write_text("torchvision\n")
    return where


def _pinned_transformers(target: Path) -> str | None:
    """The ``transformers==X`` the release's own metadata pins, if any."""
    for metadata in target.glob("sglang-*.dist-info/METADATA"):
        for line in metadata.read_text().splitlines():
            found = re.fullmatch(r"Requires-Dist: (transformers==[\w.]+)\s*", line)
            if found:
                return found.group(1)
    return None


def build_release(root: Path, python: Path, release: str) -> Path:
    """A directory with only this release's wheel, and the transformers it pins.

    The capturer imports sglang's model configs, which register names with
    transformers; a newer transformers than the release's pin can already own
    them (sglang 0.5.12 and transformers 5.24: 'qwen3_asr' is already used).
    Installed with its requirements: each transformers pins its tokenizers.
    """
    target = root / f"sglang-{release}"
    pip = [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target)]
    if not (target / "sglang").is_dir():
        _run([*pip, f"sglang=={release}"])
    transformers = _pinned_transformers(target)
    if transformers and not (target / "transformers").is_dir():
        _run(
            [str(python), "-m", "pip", "install", "--quiet", "--target", str(target), transformers]
        )
    return target


def check(
    python: Path, paths: list[Path], adapter: str, out: Path
) -> tuple[dict[str, object] | None, str]:
    """The JSON report of one check, or ``None`` and the one-line reason it could not run."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(path) for path in paths))
    env.pop("CI", None)
    command = [
        str(python),
        "-m",
        "dpslice",
        "check",
        f"dpslice.engines.sglang:{adapter}",
        "--seed",
        str(SEED),
        "--max-examples",
        str(EXAMPLES),
        "--json",
        str(out),
    ]
    # Importing sglang (and transformers, for the capturer) takes seconds to tens of
    # seconds on a small machine: more than a check's default per-call budget.
    help_text = subprocess.run(
        [str(python), "-m", "dpslice", "check", "--help"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    # On a loaded 2-core machine one call can outlast the default; the flags differ
    # between dpslice trees, so pass only those this one has.
    if "one call of the target" in help_text:
        command += ["--timeout", "120"]
    if "--import-timeout" in help_text:
        command += ["--import-timeout", "600"]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode in (0, 1) and out.exists():
        return json.loads(out.read_text()), ""
    lines = (done.stderr or done.stdout).strip().splitlines()
    return None, (lines[-1] if lines else f"exit {done.returncode}")


# Where each kind of failure comes from: whether the engine reaches that state,
# and the upstream record.
_CAPTURE = (
    "where the slice runs with None counts (PR 24550 review, #26684); 0.5.23 calls the "
    "capturer after the forward, not during graph capture"
)
_PREFILL = "yes: a prefill-graph forward before any decode replay (`bs` None); #30712, #31100"
_SYNC = "yes: every forward that captures routed experts; #24514, fixed by PR 24550"
_SKIPPED = "with the all-gather skipped on more than one DP rank; fixed by `dp_slot_in` (0.5.21)"
_SPEC = "yes: EAGLE/MTP decode-graph replay (`num_tokens_per_bs` > 1); no upstream fix found"


def _cause(prop: str, counterexample: dict[str, object]) -> str:
    outcome = counterexample["outcome"]
    assert isinstance(outcome, dict)
    text = f"{outcome.get('error')}: {outcome.get('message')}"
    layout = str(counterexample["layout"])
    if "num_tokens_per_bs=" in layout and outcome.get("kind") == "returned":
        return _SPEC
    if prop == "capture_phase_explicit" or ("'NoneType'" in text and "int' and" not in text):
        return _CAPTURE
    if "for *: 'int' and 'NoneType'" in text:
        return _PREFILL
    if prop == "sync_free":
        return _SYNC
    if outcome.get("error") == "IndexError" and "gather_skipped=True" in layout:
        return _SKIPPED
    return "see the counterexample"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: list[tuple[str, str, dict[str, object] | None, str]]) -> str:
    lines = [
        "| release | function | contract | hazards failed | hardening | other properties |",
        "|---|---|---|---|---|---|",
    ]
    details: list[str] = []
    for release, adapter, report, reason in rows:
        if report is None:
            lines.append(f"| {release} | `{adapter}` | - | not run: {_cell(reason)} | | |")
            continue
        props = report["properties"]
        assert isinstance(props, list)
        failed = [p for p in props if p["verdict"] in ("FAIL", "ERROR")]
        warned = [p["name"] for p in props if p["verdict"] == "WARN"]
        passed = sum(p["verdict"] == "PASS" for p in props)
        na = sum(p["verdict"] == "N/A" for p in props)
        fails = ", ".join(
            f"`{p['name']}`" + (" (ERROR)" if p["verdict"] == "ERROR" else "") for p in failed
        )
        lines.append(
            f"| {release} | `{adapter}` | {report['contract']} | {fails or 'none'} | "
            f"{'WARN ' + ', '.join(warned) if warned else 'PASS'} | {passed} PASS, {na} N/A |"
        )
        for prop in failed:
            ce = prop.get("counterexample")
            if prop["verdict"] == "ERROR" or not ce:
                details.append(
                    f"| {release} | `{adapter}` | `{prop['name']}` | ERROR: "
                    f"{_cell(str(prop.get('note')))} | | |"
                )
                continue
            outcome = ce["outcome"]
            shown = outcome["text"]
            location = outcome.get("location")
            if location:
                shown = shown.replace(f" at {location}", f" at {Path(location).name}")
            details.append(
                f"| {release} | `{adapter}` | `{prop['name']}` | `{_cell(ce['layout'])}`, "
                f"rank {ce['rank']} | {_cell(shown)} | {_cell(_cause(prop['name'], ce))} |"
            )
    out = "\n".join(lines)
    if details:
        out += (
            "\n\nEach FAIL's shrunk counterexample:\n\n"
            "| release | function | property | layout, rank | outcome "
            "| engine reaches it? upstream |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(details)
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("releases", nargs="*", default=list(RELEASES))
    parser.add_argument("--root", type=Path, default=ROOT / ".engine-releases")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument(
        "--from-reports",
        action="store_true",
        help="rebuild the table from the JSON reports of the last run under --root",
    )
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    rows: list[tuple[str, str, dict[str, object] | None, str]] = []
    versions: dict[str, object] = {}
    reasons = root / "reports" / "not-run.json"
    if args.from_reports:
        not_run = json.loads(reasons.read_text())
        for release in args.releases:
            for adapter in ADAPTERS:
                out = root / "reports" / f"{release}-{adapter}.json"
                report = json.loads(out.read_text()) if out.exists() else None
                if report is not None:
                    versions = report.get("versions", versions)
                rows.append((release, adapter, report, not_run.get(f"{release} {adapter}", "")))
        took = float(not_run.get("seconds", 0))
    else:
        python = build_base(root)
        standin = build_standin(root)
        not_run = {}
        for release in args.releases:
            target = build_release(root, python, release)
            for adapter in ADAPTERS:
                out = root / "reports" / f"{release}-{adapter}.json"
                out.parent.mkdir(exist_ok=True)
                out.unlink(missing_ok=True)
                report, reason = check(python, [target, standin], adapter, out)
                print(f"{release} {adapter}: {'ran' if report else reason}", flush=True)
                if report is not None:
                    versions = report.get("versions", versions)  # type: ignore[assignment]
                else:
                    not_run[f"{release} {adapter}"] = reason
                rows.append((release, adapter, report, reason))
        took = time.monotonic() - started
        reasons.write_text(json.dumps({**not_run, "seconds": round(took)}))
    body = table(rows)
    stamp = (
        f"Produced by `python3 scripts/engine_releases.py {' '.join(args.releases)}` "
        f"(seed {SEED}, {EXAMPLES} examples a property) in {took:.0f} s; "
        f"versions: {', '.join(f'{k} {v}' for k, v in versions.items())}."
    )
    section = f"{BEGIN}\n{stamp}\n\n{body}\n{END}"
    if args.no_write:
        print(section)
        return 0
    text = DOC.read_text() if DOC.exists() else f"{BEGIN}\n{END}\n"
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    DOC.write_text(pattern.sub(lambda _: section, text))
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
