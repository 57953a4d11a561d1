"""Retry with exponential back-off for transient object-store faults.

Kept separate from the backends so that the policy (what is transient, how long to
wait) is one small, testable function.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

MAX_DELAY_S = 5.0


def backoff_delays(retries: int, first_s: float) -> list[float]:
    """The waits before retry 1..``retries``: first_s, 2*first_s, 4*first_s, ... (capped)."""
    return [min(first_s * 2**i, MAX_DELAY_S) for i in range(retries)]


def call_with_retries(
    func: Callable[[], T],
    *,
    retries: int,
    backoff_s: float,
    is_transient: Callable[[BaseException], bool],
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``func``; on a transient fault wait and call again, up to ``retries`` times.

    A non-transient exception propagates at once; the last transient one propagates
    after the final attempt (the caller translates it into a store error).
    """
    delays = backoff_delays(retries, backoff_s)
    for attempt in range(retries + 1):
        try:
            return func()
        except Exception as exc:
            if attempt == retries or not is_transient(exc):
                raise
            log.warning("%s failed (%s), retry %d/%d", what, exc, attempt + 1, retries)
            sleep(delays[attempt])
    raise AssertionError("unreachable")  # pragma: no cover
