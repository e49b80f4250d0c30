"""Hypothesis profiles for the CUDA suite.

``cuda``: at least 2,000 examples for each equivalence property (the
acceptance bar of docs/cuda.md), derandomized when the run is; set
``DPSLICE_CUDA_EXAMPLES`` to change it.  ``cuda_small``: for properties whose
examples capture CUDA graphs or probe the stream, costlier per example.
Both inherit the profile the root conftest loaded (``ci`` under CI).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

CUDA_EXAMPLES = int(os.environ.get("DPSLICE_CUDA_EXAMPLES", "2000"))

settings.register_profile(
    "cuda",
    parent=settings(),
    max_examples=CUDA_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "cuda_small",
    parent=settings.get_profile("cuda"),
    max_examples=max(1, CUDA_EXAMPLES // 10),
)
