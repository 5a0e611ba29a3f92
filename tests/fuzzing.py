"""Hypothesis settings shared by the fuzz sweeps (tests/test_fuzz_*.py)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

SCALE = max(1, int(os.environ.get("HASTE_FUZZ_SCALE", "1")))
"""Multiplies every sweep's example count (HASTE_FUZZ_SCALE=15 for a long local sweep)."""


def fuzz(examples: int, *also_suppress: HealthCheck) -> settings:
    """Settings of one property: ``examples`` x HASTE_FUZZ_SCALE, no deadline (the machine
    is shared), derandomized on CI so that a red build is reproducible."""
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        derandomize=bool(os.environ.get("CI")),
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.function_scoped_fixture,
            *also_suppress,
        ],
    )
