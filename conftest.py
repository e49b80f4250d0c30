"""Hypothesis profiles for the whole suite, picked by ``HYPOTHESIS_PROFILE``.

* ``dev`` (default locally): fast feedback.
* ``ci`` (default when ``CI`` is set): derandomized, no deadline, a fixed
  budget of 500 examples per property, failure blobs printed for reproduction.
* ``thorough``: ten times ``ci``, for a long run before a release.
* ``mutation`` (``tox -e mutation``): derandomized and without the example
  database, so every mutant meets the same examples and a verdict never
  depends on what an earlier run stored; a fifth of ``ci``'s budget, since
  each mutant reruns the properties that cover it.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# README.md and docs/*.md: every Python block and dpslice command runs (Sybil;
# tests/doc_examples.py says how); the blocks that run dpslice commands are `slow`.
from tests.doc_examples import pytest_collect_file, pytest_collection_modifyitems  # noqa: F401

CI_EXAMPLES = 500

settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci",
    max_examples=CI_EXAMPLES,
    derandomize=True,
    deadline=None,
    print_blob=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=10 * CI_EXAMPLES,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "mutation",
    max_examples=CI_EXAMPLES // 5,
    derandomize=True,
    deadline=None,
    database=None,
    # mutmut runs the suite several times in one process, so a test class's
    # method meets several instances of its class; that alone trips this check.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
