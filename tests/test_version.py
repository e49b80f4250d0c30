"""The version is stated once and agrees everywhere it is read."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import dpslice

CHANGELOG = Path(__file__).resolve().parent.parent / "CHANGELOG.md"
# A released or upcoming version's heading: "## [0.1.0] - 2026-11-27".  The
# "## [Unreleased]" heading carries no version and is skipped.
VERSION_HEADING = re.compile(r"^## \[(\d+\.\d+\.\d+[^\]]*)\]", re.MULTILINE)


def changelog_versions() -> list[str]:
    return VERSION_HEADING.findall(CHANGELOG.read_text(encoding="utf-8"))


def test_changelog_latest_version_is_dpslice_version() -> None:
    """The newest version the changelog describes is the one the package reports."""
    versions = changelog_versions()
    assert versions, f"no '## [X.Y.Z]' heading in {CHANGELOG}"
    assert versions[0] == dpslice.__version__


def test_installed_metadata_version_is_dpslice_version() -> None:
    """The installed distribution's metadata agrees (a stale install fails here: reinstall)."""
    assert metadata.version("dpslice") == dpslice.__version__


def test_changelog_versions_are_unique_and_descending() -> None:
    """Each version appears once, newest first."""
    versions = changelog_versions()
    keys = [tuple(int(part) for part in re.findall(r"\d+", v)[:3]) for v in versions]
    assert keys == sorted(set(keys), reverse=True)
