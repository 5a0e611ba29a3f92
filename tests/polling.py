"""Waiting for another process to get somewhere: shared by the worker and chaos tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    what: str = "the condition",
    step: float = 0.05,
) -> Any:
    """Poll ``predicate`` until it is truthy; AssertionError naming ``what`` after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
