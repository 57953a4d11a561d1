"""Retry with exponential back-off for transient object-store faults.

Kept separate from the backends so that the policy (what is transient, how long to
wait, when to give up) is one small, testable function. Retries are logged at debug
level: the caller reports the outcome once (one error line, not one per attempt).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

MAX_DELAY_S = 5.0


class RetriesExhausted(Exception):
    """A transient fault outlasted the retries (or the time budget).

    ``last`` is the final fault (also the ``__cause__``), ``attempts`` how many calls were
    made and ``elapsed_s`` how long they took, so the caller can say so in one line.
    """

    def __init__(self, last: Exception, attempts: int, elapsed_s: float) -> None:
        super().__init__(f"{attempts} attempts in {elapsed_s:.1f} s: {last}")
        self.last = last
        self.attempts = attempts
        self.elapsed_s = elapsed_s


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
    budget_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call ``func``; on a transient fault wait and call again, up to ``retries`` times.

    No retry starts once ``budget_s`` seconds (from the first call, counting the wait
    before it) would have passed, so a dead or stalled store fails in bounded time: at
    most about ``budget_s`` plus one timeout. A non-transient exception propagates at
    once, as it is; a transient one that outlasts the retries or the budget propagates
    as :class:`RetriesExhausted`.
    """
    delays = backoff_delays(retries, backoff_s)
    start = clock()
    for attempt in range(retries + 1):
        try:
            return func()
        except Exception as exc:
            if not is_transient(exc):
                raise
            elapsed = clock() - start
            last = attempt == retries
            if last or (budget_s is not None and elapsed + delays[attempt] > budget_s):
                raise RetriesExhausted(exc, attempt + 1, elapsed) from exc
            log.debug("%s failed (%s), retry %d/%d", what, exc, attempt + 1, retries)
            sleep(delays[attempt])
    raise AssertionError("unreachable")  # pragma: no cover
