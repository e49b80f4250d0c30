"""Hypothesis profiles for the whole suite, picked by ``HYPOTHESIS_PROFILE``.

* ``dev`` (default locally): fast feedback.
* ``ci`` (default when ``CI`` is set): derandomized, no deadline, a fixed
  budget of 500 examples per property, failure blobs printed for reproduction.
* ``thorough``: ten times ``ci``, for a long run before a release.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

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
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
