"""The one backoff rule of every retry loop (SendGrid, SMTP reconnects, HTTP feeds)."""

from __future__ import annotations

import random

MAX_DELAY = 60.0  # seconds: no wait between two attempts is longer (README, RETRY_BACKOFF)


def backoff_delay(
    attempt: int,
    base: float,
    cap: float = MAX_DELAY,
    retry_after: float | None = None,
    *,
    jitter: bool = True,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (0 for the first) before the next.

    What the server asked for (``retry_after``, e.g. a Retry-After header) when it said so,
    as it is: whether to wait that long at all is the caller's call. Else ``base`` doubled
    each attempt, times a random factor in [0.5, 1.5) so that many clients do not retry in
    step (``jitter``), and never more than ``cap``.
    """
    if retry_after is not None:
        return max(0.0, retry_after)
    delay = base * 2**attempt
    if jitter:
        delay *= random.uniform(0.5, 1.5)
    return min(cap, delay)
